"""Evaluation sums against numpy on known outputs, masking, mapping invariance, and their summary."""

import math
import warnings

import flax.linen as nn
import jax
import numpy as np
import optax
import pandas as pd
import pytest

from fairjax.data import groups
from fairjax.metrics import regression
from fairjax.metrics import group_report as report_lib
from fairjax.models import forward as forward_lib
from fairjax.models import heads as heads_lib
from fairjax.models import registry
from fairjax.models.heads import HeadSpec
from fairjax.train import evaluate
from fairjax.train import step as step_lib
from fairjax.train.state import TrainState

AGE_BINS = heads_lib.binned_head("age_group", 0, 100, 20, label_key="age")
HEADS = (HeadSpec("gender", "binary"), HeadSpec("race", "multiclass", num_outputs=5),
         HeadSpec("age", "regression", loss_weight=0.01), AGE_BINS)
WIDTH = sum(spec.num_outputs for spec in HEADS)


class Echo(nn.Module):
  """Raw outputs read straight off the input pixels, so that a test decides every prediction."""

  heads: tuple

  @nn.compact
  def __call__(self, x, train=False):
    flat = x.reshape(x.shape[0], -1) * self.param("scale", nn.initializers.ones, ())
    outputs, start = {"embedding": flat}, 0
    for spec in self.heads:
      y = flat[:, start:start + spec.num_outputs]
      start += spec.num_outputs
      outputs[spec.name] = y[:, 0] if spec.num_outputs == 1 else y
    return outputs


def _state(model, variables):
  params = {"model": variables["params"]}
  model_state = {k: v for k, v in variables.items() if k != "params"}
  return TrainState.create(params=params, model_state=model_state, tx=optax.sgd(0.1), objective_state={},
                           rng=jax.random.key(1))


def _echo(heads=HEADS):
  model = Echo(heads)
  return model, _state(model, model.init(jax.random.key(0), np.zeros((1, 1, 1, WIDTH), np.float32)))


def _identity(batch):
  return batch["image"]


def _batch(size=24, padding=4, seed=0):
  rng = np.random.default_rng(seed)
  raw = rng.normal(0, 2, (size, WIDTH)).astype(np.float32)
  raw[:, 6] = rng.uniform(0, 80, size)  # the age regression output
  return {
      "image": raw.reshape(size, 1, 1, WIDTH),
      "age": rng.integers(-1, 95, size).astype(np.int32),
      "gender": rng.integers(-1, 2, size).astype(np.int32),
      "race": rng.integers(-1, 5, size).astype(np.int32),
      "mask": np.arange(size) < size - padding,
  }


def _np_counts(truth, pred, groups, valid, num_groups, num_classes):
  counts = np.zeros((num_groups, num_classes, num_classes), np.int64)
  ok = valid & (truth >= 0) & (groups >= 0)
  np.add.at(counts, (groups[ok], truth[ok], pred[ok]), 1)
  return counts


def _np_regression(truth, pred, groups, valid, num_groups):
  sums = np.zeros((num_groups, 4))
  ok = valid & (truth >= 0) & (groups >= 0)
  for g, error in zip(groups[ok], pred[ok] - truth[ok]):
    sums[g] += [1, error, abs(error), error * error]
  return sums


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _expected_sums(batch):
  """The evaluator's sums, computed row by row in numpy from the Echo outputs."""
  raw = batch["image"].reshape(len(batch["mask"]), WIDTH).astype(np.float64)
  mask, gender, race, age = batch["mask"], batch["gender"], batch["race"], batch["age"]
  codes = {"race": race, "gender": gender,
           "race_x_gender": np.where((race >= 0) & (gender >= 0), race * 2 + gender, -1)}
  sizes = {"race": 5, "gender": 2, "race_x_gender": 10}
  logit, race_logits, age_value, bin_logits = raw[:, 0], raw[:, 1:6], raw[:, 6], raw[:, 7:12]
  age_bin = np.where(age >= 0, np.clip(age // 20, 0, 4), -1)
  bin_value = _softmax(bin_logits) @ AGE_BINS.centers
  losses = {
      "gender": (np.logaddexp(0, logit) - gender * logit, gender),
      "race": (-np.log(_softmax(race_logits)[np.arange(len(race)), np.clip(race, 0, 4)]), race),
      "age": ((age_value - age) ** 2, age),
      "age_group": (-np.log(_softmax(bin_logits)[np.arange(len(age)), np.clip(age_bin, 0, 4)]), age),
  }
  out = {}
  for name, (per_example, labels) in losses.items():
    valid = mask & (labels >= 0)
    out[name] = {"loss": np.array([per_example[valid].sum(), valid.sum()])}
  classified = {"gender": (gender, (logit > 0).astype(int), 2), "race": (race, race_logits.argmax(-1), 5),
                "age_group": (age_bin, bin_logits.argmax(-1), 5)}
  for name, (truth, pred, classes) in classified.items():
    out[name]["confusion"] = {"overall": _np_counts(truth, pred, np.zeros_like(truth), mask, 1, classes)[0]}
    for grouping, code in codes.items():
      out[name]["confusion"][grouping] = _np_counts(truth, pred, code, mask, sizes[grouping], classes)
  for name, value in (("age", age_value), ("age_group", bin_value)):
    out[name]["regression"] = {"overall": _np_regression(age, value, np.zeros_like(age), mask, 1)[0]}
    for grouping, code in codes.items():
      out[name]["regression"][grouping] = _np_regression(age, value, code, mask, sizes[grouping])
  return out


def _assert_sums_equal(got, expected, rtol=1e-5):
  assert jax.tree.structure(jax.tree.map(np.asarray, got)) == jax.tree.structure(expected)

  def check(a, b):
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.integer):
      np.testing.assert_array_equal(a, b)
    else:
      np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-3)

  jax.tree.map(check, got, expected)


def test_sums_match_numpy_on_known_outputs():
  model, state = _echo()
  batch = _batch()
  evaluator = evaluate.make_evaluator(model, images_fn=_identity)
  sums = jax.jit(lambda s, b: evaluator(s, b, model.apply))(state, batch)
  _assert_sums_equal(sums, _expected_sums(batch))


def test_padding_rows_count_nowhere():
  model, state = _echo()
  evaluator = jax.jit(lambda s, b: evaluate.make_evaluator(model, images_fn=_identity)(s, b, model.apply))
  clean = _batch(size=20, padding=0, seed=1)
  garbage = _batch(size=6, padding=6, seed=2)
  padded = {k: np.concatenate([clean[k], garbage[k]]) for k in clean}
  # Counts exactly; float sums up to the order of summation over a longer batch.
  _assert_sums_equal(evaluator(state, padded), jax.tree.map(np.asarray, evaluator(state, clean)), rtol=1e-6)


def test_unknown_labels_count_only_where_they_are_not_needed():
  model, state = _echo()
  raw = np.zeros((4, WIDTH), np.float32)
  batch = {"image": raw.reshape(4, 1, 1, WIDTH),
           "gender": np.array([0, -1, 1, 1], np.int32),
           "race": np.array([1, 2, -1, 0], np.int32),
           "age": np.array([30, 40, -1, 50], np.int32),
           "mask": np.array([True, True, True, False])}
  sums = evaluate.make_evaluator(model, images_fn=_identity)(state, batch, model.apply)
  total = lambda a: int(np.asarray(a).sum())
  gender, race = sums["gender"]["confusion"], sums["race"]["confusion"]
  assert float(sums["gender"]["loss"][1]) == 2 and float(sums["race"]["loss"][1]) == 2
  assert total(gender["overall"]) == 2          # rows 0 and 2
  assert total(gender["gender"]) == 2
  assert total(gender["race"]) == 1             # row 2's race is unknown
  assert total(gender["race_x_gender"]) == 1
  assert total(race["overall"]) == 2            # rows 0 and 1
  assert total(race["race"]) == 2
  assert total(race["gender"]) == 1             # row 1's gender is unknown
  np.testing.assert_array_equal(np.asarray(race["race_x_gender"]).sum((1, 2)),
                                [0, 0, 1, 0, 0, 0, 0, 0, 0, 0])  # race 1 x male = 2
  age = sums["age"]["regression"]
  assert float(age["overall"][0]) == 2 and float(sums["age"]["loss"][1]) == 2  # row 2's age is unknown
  assert float(age["gender"][:, 0].sum()) == 1


def test_pmap_and_shard_map_on_four_devices_give_the_one_device_sums():
  assert len(jax.devices()) >= 4, "tests/conftest.py sets four fake CPU devices"
  model, state = _echo()
  batch = _batch(size=16, padding=3, seed=3)
  step = step_lib.make_eval_step(evaluate.make_evaluator(model, images_fn=_identity), model.apply)
  results = []
  for n in (1, 4):
    devices = jax.devices()[:n]
    by_shard_map = step_lib.shard_map_step(step, step_lib.data_mesh(devices), donate_state=False)
    results.append(by_shard_map(state, batch))
    by_pmap = jax.pmap(step, axis_name=step_lib.AXIS, devices=devices)
    replicated, split = step_lib.replicate(state, n), step_lib.split_batch(batch, n)
    results.append(step_lib.unreplicate(by_pmap(replicated, split)))
  expected = _expected_sums(batch)
  for sums in results:
    _assert_sums_equal(sums, expected)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), sums, results[0])


def test_summarise_reports_bin_accuracy_and_age_error_of_a_binned_head():
  model, state = _echo()
  batch = _batch(size=40, padding=5, seed=4)
  sums = evaluate.make_evaluator(model, images_fn=_identity)(state, batch, model.apply)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    result = evaluate.summarise(model, sums)
  expected = _expected_sums(batch)
  bins = expected["age_group"]["confusion"]["overall"]
  assert result.metrics["age_group/accuracy"] == pytest.approx(np.trace(bins) / bins.sum(), rel=1e-6)
  count, _, absolute, _ = expected["age_group"]["regression"]["overall"]
  assert result.metrics["age_group/mae"] == pytest.approx(absolute / count, rel=1e-5)
  count, _, absolute, _ = expected["age"]["regression"]["overall"]
  assert result.metrics["age/mae"] == pytest.approx(absolute / count, rel=1e-5)
  head_loss = {name: value["loss"][0] / value["loss"][1] for name, value in expected.items()}
  assert result.metrics["loss"] == pytest.approx(
      sum(spec.loss_weight * head_loss[spec.name] for spec in HEADS), rel=1e-5)
  # The binned head has both views: a regression report under its name, classification under _bins.
  assert result.reports[("age_group", "race")].summary["task"] == "regression"
  assert result.reports[("age_group_bins", "race")].summary["task"] == "multiclass"
  assert result.class_names["age_group_bins"] == ["0-20", "20-40", "40-60", "60-80", "80-100"]
  assert result.class_names["race"] == ["White", "Black", "Asian", "Indian", "Others"]
  assert result.class_names["gender"] == ["male", "female"]
  for grouping in groups.DEFAULT_GROUPINGS:
    for name in evaluate.CLASSIFICATION_DISPARITIES:
      assert f"gender/{grouping}/{name}" in result.metrics
      assert f"age_group/{grouping}/{name}" in result.metrics
    for name in evaluate.REGRESSION_DISPARITIES:
      assert f"age/{grouping}/{name}" in result.metrics
      assert f"age_group/{grouping}/{name}" in result.metrics
  assert "age/accuracy" not in result.metrics


def _gender_model():
  return Echo((HeadSpec("gender", "binary"), HeadSpec("age", "regression")))


def _hand_sums():
  race = np.zeros((5, 2, 2), np.int32)
  race[0] = [[40, 10], [5, 45]]   # White: accuracy .85, TPR .9, FPR .2, selection .55
  race[1] = [[20, 5], [10, 15]]   # Black: accuracy .7, TPR .6, FPR .2, selection .4
  race[2] = [[10, 0], [0, 10]]    # Asian: accuracy 1, TPR 1, FPR 0, selection .5
  # Indian: no examples.
  race[4] = [[3, 1], [0, 0]]      # Others: no positives; accuracy .75, FPR .25, selection .25
  gender = np.zeros((2, 2, 2), np.int32)
  gender[0] = [[70, 15], [0, 0]]  # male: every one a negative of "female"
  gender[1] = [[0, 0], [15, 60]]
  overall = race.sum(0) + np.array([[1, 0], [0, 0]], np.int32)  # one row of unknown race
  age_gender = np.array([[2, -4, 6, 20], [0, 0, 0, 0]], np.float32)  # male MAE 3; no female ages
  age_race = np.zeros((5, 4), np.float32)
  age_race[0] = [2, -4, 6, 20]
  return {"gender": {"loss": np.array([69.0, 150.0], np.float32),
                     "confusion": {"overall": overall, "race": race, "gender": gender}},
          "age": {"loss": np.array([20.0, 2.0], np.float32),
                  "regression": {"overall": age_gender.sum(0), "gender": age_gender, "race": age_race}}}


def test_summarise_against_hand_computed_figures():
  with pytest.warns(report_lib.FairnessWarning) as caught:
    result = evaluate.summarise(_gender_model(), _hand_sums())
  m = result.metrics
  assert m["gender/loss"] == pytest.approx(69 / 150)
  assert m["age/loss"] == pytest.approx(10.0)
  assert m["loss"] == pytest.approx(69 / 150 + 10.0)
  assert m["gender/accuracy"] == pytest.approx(144 / 175, rel=1e-6)  # overall counts: 174 + 1 rows
  assert m["gender/race/equal_opportunity_difference"] == pytest.approx(0.4, rel=1e-5)
  assert m["gender/race/equalized_odds_difference"] == pytest.approx(0.4, rel=1e-5)   # max(.4, .25)
  assert m["gender/race/demographic_parity_difference"] == pytest.approx(0.3, rel=1e-5)
  assert m["gender/race/disparate_impact"] == pytest.approx(0.25 / 0.55, rel=1e-5)
  assert m["gender/race/accuracy_gap"] == pytest.approx(0.3, rel=1e-5)
  assert m["gender/race/worst_group_accuracy"] == pytest.approx(0.7, rel=1e-6)
  # Largest race group (White) is privileged; seed 000's DI takes a correct prediction as the outcome.
  assert m["gender/race/disparate_impact_correct"] == pytest.approx(0.7 / 0.85, rel=1e-5)
  # Gender grouping: men privileged (seed 000 §6.1.5); each group holds one true class, so TPR and FPR
  # each exist in one group only and the odds gaps are undefined, not zero.
  assert m["gender/gender/disparate_impact_correct"] == pytest.approx((60 / 75) / (70 / 85), rel=1e-5)
  assert math.isnan(m["gender/gender/equalized_odds_difference"])
  assert math.isnan(m["gender/gender/equal_opportunity_difference"])
  assert m["age/mae"] == pytest.approx(3.0)
  assert m["age/gender/worst_group_mae"] == pytest.approx(3.0)
  assert math.isnan(m["age/gender/mae_gap"])
  messages = [str(w.message) for w in caught]
  assert "gender/race: race=Indian: no examples; all its rates are NaN" in messages
  assert "age/gender: gender=female: no examples; its errors are NaN" in messages
  assert any(m.startswith("gender/gender: gender=male: no positive examples") for m in messages)
  assert set(result.warnings) == set(messages)
  report = result.reports[("gender", "race")]
  assert report.summary["privileged_group"] == "race=White"
  assert list(report.by_group["race"]) == list(groups.group_keys("race")["race"])
  np.testing.assert_array_equal(result.confusion[("gender", "race")],
                                _hand_sums()["gender"]["confusion"]["race"])
  assert result.group_labels["race"] == ["White", "Black", "Asian", "Indian", "Others"]


def test_privileged_by_name_or_index_and_bad_names():
  sums = _hand_sums()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    by_name = evaluate.summarise(_gender_model(), sums, privileged={"race": "Black", "gender": "female"})
    by_index = evaluate.summarise(_gender_model(), sums, privileged={"race": 1, "gender": 1})
    with pytest.raises(ValueError, match="not a race group"):
      evaluate.summarise(_gender_model(), sums, privileged={"race": "Martian"})
  assert by_name.metrics == pytest.approx(by_index.metrics, nan_ok=True)
  assert by_name.metrics["gender/race/disparate_impact_correct"] == pytest.approx(0.75 / 0.7, rel=1e-5)
  assert by_name.metrics["gender/gender/disparate_impact_correct"] == pytest.approx((70 / 85) / (60 / 75),
                                                                                    rel=1e-5)
  assert by_name.reports[("gender", "race")].summary["privileged_group"] == "race=Black"


def test_empty_evaluation_gives_nan_and_warnings_not_errors_or_zeros():
  model, state = _echo()
  batch = _batch(size=8, padding=8)
  sums = evaluate.make_evaluator(model, images_fn=_identity)(state, batch, model.apply)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", report_lib.FairnessWarning)
    result = evaluate.summarise(model, sums)
  messages = [str(w.message) for w in caught if w.category is report_lib.FairnessWarning]
  assert "gender: no labelled examples; its loss is NaN and left out of 'loss'" in messages
  assert "age: no labelled examples; its errors are NaN" in messages
  assert all(math.isnan(v) for v in result.metrics.values()), {
      k: v for k, v in result.metrics.items() if not math.isnan(v)}


def test_regression_report_from_sums_is_the_audits_regression_report():
  rng = np.random.default_rng(5)
  y_true = rng.uniform(0, 90, 200).astype(np.float32)
  y_pred = (y_true + rng.normal(0, 8, 200)).astype(np.float32)
  group_ids = rng.integers(0, 4, 200).astype(np.int32)  # Others (4) stays empty
  keys = groups.group_keys("race")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    expected = report_lib.regression_report(y_true, y_pred, group_ids, group_keys=keys)
    got = evaluate.regression_report_from_sums(
        regression.regression_sums(y_true, y_pred, group_ids, num_groups=5), group_keys=keys)
  pd.testing.assert_frame_equal(got.by_group, expected.by_group)
  assert got.summary == expected.summary
  assert got.summary["warnings"] == ["race=Others: no examples; its errors are NaN"]


def test_unknown_grouping_and_colliding_bin_view_are_rejected():
  model, _ = _echo()
  with pytest.raises(ValueError, match="unknown grouping"):
    evaluate.make_evaluator(model, images_fn=_identity, groupings=("age",))
  with pytest.raises(ValueError, match="collides"):
    evaluate.make_evaluator(Echo((AGE_BINS, HeadSpec("age_group_bins", "binary"))), images_fn=_identity)


def test_multi_head_seed_model_gives_age_error_and_race_gender_confusion():
  model = registry.get_model("utk_demographic_cnn", input_shape=(48, 48, 3))
  state = _state(model, registry.init_variables(model, jax.random.key(0)))
  rng = np.random.default_rng(6)
  size = 8
  batch = {"image": rng.integers(0, 256, (size, 48, 48, 3)).astype(np.uint8),
           "age": rng.integers(1, 90, size).astype(np.int32),
           "gender": rng.integers(0, 2, size).astype(np.int32),
           "race": rng.integers(0, 5, size).astype(np.int32),
           "mask": np.arange(size) < 6}
  evaluator = evaluate.make_evaluator(model, images_fn=forward_lib.model_images)
  step = step_lib.make_eval_step(evaluator, model.apply)
  run = step_lib.shard_map_step(step, step_lib.data_mesh(jax.devices()[:4]), donate_state=False)
  sums = run(state, batch)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    result = evaluate.summarise(model, sums)
  outputs = model.apply({"params": state.params["model"]}, forward_lib.model_images(batch), train=False)
  keep = batch["mask"]
  expected_mae = np.abs(np.asarray(outputs["age"])[keep] - batch["age"][keep]).mean()
  assert result.metrics["age/mae"] == pytest.approx(expected_mae, rel=1e-4)
  race = np.asarray(sums["race"]["confusion"]["race"])
  assert race.shape == (5, 5, 5) and race.sum() == 6
  np.testing.assert_array_equal(race.sum(2)[np.arange(5), np.arange(5)],
                                np.bincount(batch["race"][keep], minlength=5))
  predicted_race = np.asarray(outputs["race"]).argmax(-1)[keep]
  np.testing.assert_array_equal(race.sum((0, 1)), np.bincount(predicted_race, minlength=5))
  assert np.asarray(sums["gender"]["confusion"]["race_x_gender"]).shape == (10, 2, 2)
  for key in ("gender/accuracy", "race/macro_f1", "gender/gender/disparate_impact_correct",
              "race/race_x_gender/equalized_odds_difference", "age/race/mae_gap"):
    assert key in result.metrics
  assert set(result.reports) == {(h, g) for h in ("age", "gender", "race")
                                 for g in groups.DEFAULT_GROUPINGS}


def test_a_multilabel_head_read_through_class_groups_reports_as_a_classifier():
  # Seed 002: an ADS over (Man, Woman, Boy, Girl) read as gender (male = Man or Boy), trained on multi-hot
  # labels under another key. Six rows, worked out by hand; race 0 (White) and 1 (Black).
  people = HeadSpec("gender", "multilabel_softmax", num_outputs=4, label_key="people",
                    class_groups=((0, 2), (1, 3)), class_key="gender")
  model = Echo((people,))
  state = _state(model, model.init(jax.random.key(0), np.zeros((1, 1, 1, 4), np.float32)))
  logits = np.array([[3, 0, 0, 0],     # Man   -> male,   a man:    right   (White)
                     [0, 0, 0, 2],     # Girl  -> female, a man:    wrong   (Black)
                     [0, 1, 0, .5],    # Woman -> female, a woman:  right   (White)
                     [0, 0, 2, 1],     # Boy   -> male,   a girl:   wrong   (Black)
                     [1, 0, 0, 0],     # gender unknown: counts in no confusion
                     [0, 5, 0, 0]],    # a padding row: counts nowhere
                    np.float32)
  targets = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
  batch = {"image": logits.reshape(6, 1, 1, 4), "people": targets.astype(np.int32),
           "gender": np.array([0, 0, 1, 1, -1, 0], np.int32), "race": np.array([0, 1, 0, 1, 0, 1], np.int32),
           "age": np.full(6, 30, np.int32), "mask": np.array([True] * 5 + [False])}
  sums = evaluate.make_evaluator(model, images_fn=_identity)(state, batch, model.apply)
  confusion = sums["gender"]["confusion"]
  np.testing.assert_array_equal(confusion["overall"], [[1, 1], [1, 1]])  # [true gender, predicted]
  race = np.zeros((5, 2, 2), np.int64)
  race[0] = [[1, 0], [0, 1]]
  race[1] = [[0, 1], [1, 0]]
  np.testing.assert_array_equal(confusion["race"], race)
  np.testing.assert_array_equal(confusion["gender"], [[[1, 1], [0, 0]], [[0, 0], [1, 1]]])
  # The loss is the multi-hot targets': one term per positive of the unpadded rows (row 4 has none).
  positives = [(0, 0), (1, 0), (2, 1), (3, 3)]
  loss = sum(np.log(np.exp(logits[r, [p] + [j for j in range(4) if not targets[r, j]]]).sum()) - logits[r, p]
             for r, p in positives)
  np.testing.assert_allclose(sums["gender"]["loss"], [loss, 4], rtol=1e-5)

  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    result = evaluate.summarise(model, sums)
  m = result.metrics
  assert result.class_names["gender"] == ["male", "female"]
  assert m["gender/accuracy"] == pytest.approx(0.5)
  assert m["gender/loss"] == pytest.approx(loss / 4, rel=1e-5)
  assert m["gender/race/worst_group_accuracy"] == pytest.approx(0.0)
  assert m["gender/race/accuracy_gap"] == pytest.approx(1.0)
  by_race = result.reports[("gender", "race")].by_group.set_index("race")
  assert by_race.loc["White", "fpr"] == pytest.approx(0.0)  # female the positive class: men called women
  assert by_race.loc["Black", "fpr"] == pytest.approx(1.0)


def test_a_runs_privileged_groups_are_configured_or_the_largest_training_groups():
  # Training rows: White the largest race, women the largest gender, Black women the largest pair.
  plan = pd.DataFrame({"race": [1, 1, 1, 0, 0, 0, 0, 2, -1],
                       "gender": [1, 1, 1, 0, 0, 1, -1, 0, 1],
                       "age": [30] * 9})
  np.testing.assert_array_equal(groups.group_counts(plan, "race"), [4, 3, 1, 0, 0])
  np.testing.assert_array_equal(groups.group_counts(plan, "race_x_gender"), [2, 1, 0, 3, 1, 0, 0, 0, 0, 0])
  chosen = evaluate.run_privileged({"gender": "male", "race": ""}, plan, groups.DEFAULT_GROUPINGS)
  assert chosen == {"race": {"group": "White", "reason": evaluate.TRAINING_LARGEST},
                    "gender": {"group": "male", "reason": evaluate.CONFIGURED},
                    "race_x_gender": {"group": "Black, female", "reason": evaluate.TRAINING_LARGEST}}
  assert evaluate.run_privileged({}, plan, ("gender",))["gender"]["group"] == "female"
  with pytest.raises(ValueError, match="'Martian' is not a race group"):
    evaluate.run_privileged({"race": "Martian"}, plan, ("race",))
  # No training row of known race: each split takes its own largest group, as summarise does.
  assert evaluate.run_privileged({}, plan.assign(race=-1), ("race", "gender")).keys() == {"gender"}


def test_every_split_is_measured_against_the_runs_privileged_group():
  """Summaries of splits whose largest groups differ name the one group the run chose."""
  validation, test = _hand_sums(), _hand_sums()
  race = test["gender"]["confusion"]["race"]
  race[[0, 2]] = race[[2, 0]]  # the test split's largest race is Asian, validation's White
  privileged = {"race": "White"}
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    chosen = [evaluate.summarise(_gender_model(), sums, privileged=privileged) for sums in (validation, test)]
    per_split = evaluate.summarise(_gender_model(), test)
  assert per_split.reports[("gender", "race")].summary["privileged_group"] == "race=Asian"
  for result in chosen:
    assert result.reports[("gender", "race")].summary["privileged_group"] == "race=White"
  # The test split's White rows are Asian's old ones (accuracy 1): seed 000's DI against them.
  assert chosen[1].metrics["gender/race/disparate_impact_correct"] == pytest.approx(0.7, rel=1e-5)
