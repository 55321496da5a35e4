"""Zero-shot audit on planted embeddings: seed 003's figures by hand, by its own code, and sklearn's."""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn import metrics as skm

from fairjax.clip import prompts
from fairjax.clip import zero_shot
from fairjax.data import schema
from fairjax.metrics import group_report as report_lib

D = 12
E = np.eye(D)
SCALE = math.log(100.0)
# How visible gender is in each race's images: Asian faces are planted hard to read.
STRENGTH = np.array([1.0, 1.0, 0.35, 1.0, 0.8])


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _planted(n_per_cell=30, seed=0):
  """Images along e0 (male) or e1 (female), weaker for Asian, all sharing a 'face' direction e2 and a
  race direction e3+r. The male/female prompt leans on e2 (a male bias), man/woman barely."""
  rng = np.random.default_rng(seed)
  race = np.repeat(np.arange(5), 2 * n_per_cell)
  gender = np.tile(np.repeat([0, 1], n_per_cell), 5)
  signal = STRENGTH[race][:, None] * np.where(gender[:, None] == 0, E[0], E[1])
  images = signal + 0.8 * E[2] + 0.5 * E[3 + race] + rng.normal(0, 0.25, (race.size, D))
  sets = {
      "male/female": np.stack([_unit(E[0] + 1.0 * E[2]), _unit(E[1])]),
      "man/woman": np.stack([_unit(E[0] + 0.2 * E[2]), _unit(E[1] + 0.1 * E[2])]),
      "race": _unit(E[3:8] + 0.3 * E[2]),
  }
  return images, gender, race, sets


def _audit(*args, **kwargs):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    return zero_shot.evaluate(*args, **kwargs)


@pytest.fixture(scope="module")
def planted():
  """The audit with race reports only: each grouping's shapes cost their own compilations."""
  images, gender, race, sets = _planted()
  return images, gender, race, sets, _audit(images, gender, race, sets, SCALE, groupings=("race",))


@pytest.fixture(scope="module")
def planted_full():
  images, gender, race, sets = _planted()
  return images, gender, race, sets, _audit(images, gender, race, sets, SCALE)


def _seed003(p_female, gender, race):
  """Seed 003's analysis code, transcribed (its grid, strict '>', np.mean of sklearn's F per class)."""
  out = {}
  pred = (p_female > 0.5).astype(int)
  out["predicted_male"] = np.mean(pred == 0)
  fmax, threshold = 0, None
  for th in np.arange(0.05, 1, 0.05):
    _, _, f, _ = skm.precision_recall_fscore_support(gender, p_female > th, zero_division=0)
    if np.mean(f) > fmax:
      fmax, threshold = np.mean(f), th
  out["fmax"], out["threshold"] = fmax, threshold
  out["accuracy_best"] = np.mean((p_female > threshold) == gender)
  out["accuracy_half"] = np.mean((p_female > 0.5) == gender)
  pred = (p_female > threshold).astype(int)
  race_error = race[gender != pred]
  unique, counts = np.unique(race_error, return_counts=True)
  out["error_share"] = {schema.RACES[u]: c / len(race_error) for u, c in zip(unique, counts)}
  out["confusion"] = {ur: skm.confusion_matrix(gender[race == ur], pred[race == ur], labels=[0, 1])
                      for ur in np.unique(race)}
  return out


def test_probabilities_are_the_softmax_of_scaled_cosines(planted):
  images, _, _, sets, result = planted
  for name in ("male/female", "man/woman"):
    expected = softmax(100.0 * _unit(images) @ _unit(sets[name]).T, axis=1)[:, 1]
    np.testing.assert_allclose(result.gender[name].p_female, expected, atol=1e-5)
  ensemble = (result.gender["male/female"].p_female + result.gender["man/woman"].p_female) / 2
  np.testing.assert_allclose(result.gender["ensemble"].p_female, ensemble, atol=1e-7)
  assert result.gender["ensemble"].members == ("male/female", "man/woman")
  race = softmax(100.0 * _unit(images) @ _unit(sets["race"]).T, axis=1)
  np.testing.assert_allclose(result.race["race"].probabilities, race, atol=1e-5)


@pytest.mark.parametrize("name", ["male/female", "man/woman", "ensemble"])
def test_gender_figures_are_seed_003s(planted, name):
  _, gender, race, _, result = planted
  audit = result.gender[name]
  ref = _seed003(audit.p_female, gender, race)
  assert audit.default.predicted_share["male"] == pytest.approx(ref["predicted_male"])
  assert audit.true_share["male"] == pytest.approx(0.5)
  assert audit.best.threshold == pytest.approx(ref["threshold"])
  assert audit.sweep["best_macro_f1"]["macro_f1"] == pytest.approx(ref["fmax"], abs=1e-6)
  assert audit.best.accuracy == pytest.approx(ref["accuracy_best"])
  assert audit.sweep["best_macro_f1"]["accuracy_there"] == pytest.approx(ref["accuracy_best"])
  assert audit.default.accuracy == pytest.approx(ref["accuracy_half"])
  shares = {r: v for r, v in audit.best.error_share_by_race.items() if v}
  assert shares == pytest.approx(ref["error_share"])
  for r, matrix in ref["confusion"].items():
    np.testing.assert_array_equal(audit.best.confusion_by_race[r], matrix)
  recall = skm.recall_score(gender, audit.p_female > 0.5, average=None)
  assert list(audit.default.accuracy_by_gender.values()) == pytest.approx(recall)
  assert audit.default.macro_accuracy == pytest.approx(recall.mean())


def test_sweep_macro_f_is_sklearns_at_every_threshold(planted):
  _, gender, _, _, result = planted
  audit = result.gender["male/female"]
  sweep = audit.sweep
  np.testing.assert_allclose(sweep["thresholds"], np.round(np.arange(0.05, 0.951, 0.05), 2), atol=1e-6)
  for t, f, acc in zip(sweep["thresholds"], sweep["macro_f1"], sweep["accuracy"]):
    predicted = audit.p_female > np.float32(t)
    expected = skm.f1_score(gender, predicted, average="macro", zero_division=0)
    assert f == pytest.approx(expected, abs=1e-6), t
    assert acc == pytest.approx(skm.accuracy_score(gender, predicted), abs=1e-6), t


def test_planted_bias_shows(planted):
  _, _, _, _, result = planted
  strong, mild = result.gender["male/female"], result.gender["man/woman"]
  assert strong.biased_towards == "male"
  assert strong.default.predicted_share["male"] > 0.58 > 0.52 > mild.default.predicted_share["male"]
  assert strong.best.threshold < 0.5  # female needs less than half the probability, as in seed 003
  assert strong.best.accuracy > strong.default.accuracy
  # The faces whose gender is hard to read make most of the errors.
  assert max(strong.default.error_share_by_race, key=strong.default.error_share_by_race.get) == "Asian"
  rates = strong.default.error_rate_by_race
  assert rates["Asian"] == max(rates.values())


@pytest.mark.slow
def test_group_reports_by_race_gender_and_intersection(planted_full):
  _, gender, race, _, result = planted_full
  point = result.gender["male/female"].default
  predicted = (result.gender["male/female"].p_female > 0.5).astype(int)
  assert set(point.reports) == {"race", "gender", "race_x_gender"}
  by_race = point.reports["race"].by_group.set_index("race")
  for r, name in enumerate(schema.RACES):
    rows = race == r
    assert by_race.loc[name, "selection_rate"] == pytest.approx(predicted[rows].mean())
    assert by_race.loc[name, "tpr"] == pytest.approx(predicted[rows & (gender == 1)].mean())
    assert by_race.loc[name, "fpr"] == pytest.approx(predicted[rows & (gender == 0)].mean())
  selection = by_race["selection_rate"].to_numpy()
  assert point.disparate_impact_pairs["Black/White"] == pytest.approx(selection[1] / selection[0])
  assert point.disparate_impact_pairs["White/Asian"] == pytest.approx(selection[0] / selection[2])
  summary = point.reports["race"].summary
  assert summary["equal_opportunity_difference"] == pytest.approx(np.ptp(by_race["tpr"]), abs=1e-6)
  assert summary["differences"]["fpr"] == pytest.approx(np.ptp(by_race["fpr"]), abs=1e-6)
  assert summary["privileged_group"] == "race=White"  # the largest (all are equal: the first)
  assert point.reports["gender"].summary["privileged_group"] == "gender=male"
  assert len(point.reports["race_x_gender"].by_group) == 10
  table = result.by_group("male/female")
  assert list(table.columns[:5]) == ["operating_point", "threshold", "grouping", "race", "gender"]
  assert len(table) == 2 * (5 + 2 + 10)


def test_race_figures_are_sklearns(planted):
  _, gender, race, _, result = planted
  audit = result.race["race"]
  predicted = audit.probabilities.argmax(1)
  assert audit.accuracy == pytest.approx(skm.accuracy_score(race, predicted))
  assert audit.macro_accuracy == pytest.approx(skm.balanced_accuracy_score(race, predicted), abs=1e-6)
  assert audit.macro_f1 == pytest.approx(skm.f1_score(race, predicted, average="macro"), abs=1e-6)
  recall = skm.recall_score(race, predicted, average=None)
  assert list(audit.accuracy_by_race.values()) == pytest.approx(recall, abs=1e-6)
  assert audit.accuracy_ratio["Indian/White"] == pytest.approx(recall[3] / recall[0], abs=1e-6)
  np.testing.assert_array_equal(audit.confusion, skm.confusion_matrix(race, predicted))
  for g in range(2):
    rows = gender == g
    np.testing.assert_array_equal(audit.confusion_by_gender[g],
                                  skm.confusion_matrix(race[rows], predicted[rows], labels=range(5)))
  assert audit.reports["race"].summary["task"] == "multiclass"


def _hand_images(p_female):
  """Unit images in the plane of e0 (male prompt) and e1 (female) with the given P(female) at scale 100."""
  margin = np.log(np.asarray(p_female) / (1 - np.asarray(p_female))) / 100.0  # sin(phi) - cos(phi)
  phi = np.pi / 4 + np.arcsin(margin / np.sqrt(2))
  return np.cos(phi)[:, None] * E[0] + np.sin(phi)[:, None] * E[1]


def test_four_images_by_hand():
  images = _hand_images([0.12, 0.62, 0.72, 0.33])
  gender, race = np.array([0, 0, 1, 1]), np.array([0, 1, 2, 2])
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    result = zero_shot.evaluate(images, gender, race, {"set": E[:2]}, SCALE, groupings=("race",))
  audit = result.gender["set"]
  np.testing.assert_allclose(audit.p_female, [0.12, 0.62, 0.72, 0.33], atol=1e-5)
  # At 0.5: [m, f, f, m] against [m, m, f, f].
  assert audit.default.predicted_share == {"male": 0.5, "female": 0.5}
  assert audit.default.accuracy == 0.5
  assert audit.default.error_share_by_race == {"White": 0.0, "Black": 0.5, "Asian": 0.5, "Indian": 0.0,
                                               "Others": 0.0}
  assert audit.default.error_rate_by_race == {"White": 0.0, "Black": 1.0, "Asian": 0.5, "Indian": None,
                                              "Others": None}
  # 0.15 ... 0.30 and 0.75 ... 0.95 both give 3 of 4 right with macro F (2/3 + 4/5) / 2; the lowest wins.
  assert audit.best.threshold == pytest.approx(0.15)
  assert audit.sweep["best_macro_f1"]["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2, abs=1e-6)
  assert audit.best.accuracy == 0.75
  assert audit.best.error_share_by_race["Black"] == 1.0
  np.testing.assert_array_equal(audit.best.confusion_by_race[:3], [[[1, 0], [0, 0]], [[0, 1], [0, 0]],
                                                                   [[0, 0], [0, 2]]])


def test_equal_probabilities_are_male_at_half_as_seed_003s_strict_threshold():
  images = np.concatenate([_hand_images([0.2, 0.8]), E[2:3]])  # the third is equidistant: P = 0.5
  gender, race = np.array([0, 1, 1]), np.array([0, 0, 0])
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    result = zero_shot.evaluate(images, gender, race, {"set": E[:2]}, SCALE, ensembles={}, groupings=("race",))
  audit = result.gender["set"]
  assert audit.p_female[2] == 0.5
  assert audit.default.predicted_share["male"] == pytest.approx(2 / 3)
  at_half = audit.sweep["thresholds"].index(0.5)
  assert audit.sweep["accuracy"][at_half] == pytest.approx(2 / 3)  # the sweep is strict too
  assert audit.sweep["accuracy"][at_half - 1] == pytest.approx(1.0)  # 0.45: female


def test_unknown_labels_are_skipped_and_counted():
  images, gender, race, sets = _planted(n_per_cell=4)
  gender[:3], race[5:7] = -1, -1
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    result = zero_shot.evaluate(images, gender, race, {"man/woman": sets["man/woman"]}, SCALE,
                             groupings=("race",))
  assert result.num_examples == len(images) - 5
  assert result.skipped == {"unknown_gender": 3, "unknown_race": 2}
  assert result.gender["man/woman"].p_female.shape == (len(images) - 5,)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(images=np.where(np.arange(a["images"].size).reshape(a["images"].shape) == 7, np.nan,
                                        a["images"])), "not finite"),
    (lambda a: a["gender"].__setitem__(0, 2), "gender codes must be"),
    (lambda a: a["race"].__setitem__(0, 5), "race codes must be"),
    (lambda a: a.update(gender=a["gender"][:-1]), "one per image"),
    (lambda a: a.update(gender=a["gender"] + 0.5), "integer codes"),
    (lambda a: a.update(logit_scale=100.0), "not its exponential"),
    (lambda a: a.update(logit_scale=np.nan), "finite"),
    (lambda a: a.update(prompts={"three": np.ones((3, D))}), r"\[2, D\]"),
    (lambda a: a.update(prompts={"narrow": np.ones((2, D - 1))}), "dimension"),
    (lambda a: a.update(prompts={}), "no prompt sets"),
    (lambda a: a.update(ensembles={"mixed": ["man/woman", "race"]}), "mixes"),
    (lambda a: a.update(ensembles={"e": ["nope"]}), "unknown"),
    (lambda a: a.update(thresholds=[0.0, 0.5]), "strictly between"),
    (lambda a: a.update(groupings=("gender",)), "include race"),
])
def test_bad_input_is_a_clear_error(change, message):
  images, gender, race, sets = _planted(n_per_cell=2)
  arguments = {"images": images, "gender": gender, "race": race, "prompts": sets, "logit_scale": SCALE,
               "ensembles": None, "thresholds": report_lib.DEFAULT_THRESHOLDS, "groupings": ("race",)}
  change(arguments)
  with pytest.raises(ValueError, match=message):
    zero_shot.evaluate(arguments["images"], arguments["gender"], arguments["race"], arguments["prompts"],
                    arguments["logit_scale"], ensembles=arguments["ensembles"],
                    thresholds=arguments["thresholds"], groupings=arguments["groupings"])


def test_prompt_sets_are_encoded_once_and_averaged():
  calls = []
  vocabulary = {}

  def encode(texts):
    calls.append(list(texts))
    rng = np.random.default_rng(len(vocabulary))
    return np.stack([vocabulary.setdefault(t, rng.normal(size=D) * (1 + len(vocabulary))) for t in texts])

  sets = {**prompts.seed003_sets(), **prompts.templated_gender_sets(), "race": prompts.race_set()}
  sets["again"] = sets["male/female"]
  embedded = prompts.embed_prompt_sets(sets, encode)
  assert len(calls) == 1 and len(calls[0]) == len(set(calls[0]))
  assert sets["man/woman"].texts == (("man",), ("woman",))
  np.testing.assert_allclose(embedded["male/female"][0], _unit(vocabulary["male"]), atol=1e-6)
  texts = sets["boy/girl, templated"].texts[1]
  assert texts[0] == "a photo of a girl."
  mean = np.mean([_unit(vocabulary[t]) for t in texts], axis=0)
  np.testing.assert_allclose(embedded["boy/girl, templated"][1], _unit(mean), atol=1e-6)
  assert embedded["race"].shape == (5, D)
  np.testing.assert_allclose(np.linalg.norm(embedded["race"], axis=1), 1.0, atol=1e-6)


def test_prompt_set_errors():
  with pytest.raises(ValueError, match="which has 2"):
    prompts.PromptSet("x", "gender", (("a",),))
  with pytest.raises(ValueError, match="attribute"):
    prompts.PromptSet("x", "age", (("a",), ("b",)))
  with pytest.raises(ValueError, match="non-empty"):
    prompts.PromptSet("x", "gender", (("a",), ("",)))
  with pytest.raises(ValueError, match="returned shape"):
    prompts.embed_prompt_sets(prompts.seed003_sets(), lambda texts: np.ones((1, D)))
  with pytest.raises(ValueError, match="non-finite"):
    prompts.embed_texts(["a", "b"], lambda texts: np.full((2, D), np.nan))
  assert len(prompts.gender_pairs()) == len(prompts.neutral_queries()) == len(prompts.NEUTRAL_TRAITS)


@pytest.mark.slow
def test_written_files(planted_full, tmp_path):
  *_, result = planted_full
  names = result.save(str(tmp_path / "zero_shot"))
  for expected in ("summary.json", "results.md", "error_share_by_race.png", "male_female/by_group.csv",
                   "male_female/threshold_sweep.png", "male_female/confusion_by_race_at_best.png",
                   "ensemble/by_group.csv", "race/confusion_by_gender.png", "race/by_group.csv"):
    assert expected in names
  summary = json.loads((tmp_path / "zero_shot" / "summary.json").read_text())
  best = result.gender["male/female"].best
  assert summary["gender"]["male/female"]["at_best"]["threshold"] == best.threshold
  assert summary["seed_003"]["man/woman"]["best_threshold"] == 0.3
  text = (tmp_path / "zero_shot" / "results.md").read_text()
  assert "| male/female (seed 003) | 66.30 % | 52.20 % | 0.2 | 0.9603 | 0.9604 | 0.8503 |" in text
  mine = result.gender["male/female"]
  assert f"| male/female | {100 * mine.default.predicted_share['male']:.2f} % | 50.00 % |" in text
  assert "| seed 000 §7.3 |  | 0.6803 | 0.6769 |" in text
  table = pd.read_csv(tmp_path / "zero_shot" / "male_female" / "by_group.csv")
  assert {"selection_rate", "tpr", "fpr", "disparate_impact"} <= set(table.columns)
