"""The files a run's report writes: present, readable by audit tools, and honest about NaN."""

import json
import math
import os
import types
import warnings

import flax.linen as nn
import jax
import numpy as np
import optax
import pandas as pd
import pytest

from fairjax.audit import core as audit_core
from fairjax.data import groups
from fairjax.metrics import group_report as report_lib
from fairjax.models import heads as heads_lib
from fairjax.models.heads import HeadSpec
from fairjax.report import run_report
from fairjax.train import evaluate
from fairjax.train.state import TrainState

PRIMARY = ("gender", "gender")


class Tiny(nn.Module):
  """A Dense trunk and real heads, so the report is of an evaluator's actual output."""

  heads: tuple

  @nn.compact
  def __call__(self, x, train=False):
    h = nn.relu(nn.Dense(8)(x.reshape(x.shape[0], -1)))
    return {"embedding": h, **heads_lib.head_outputs(self.heads, h, train)}


def _quiet_summarise(model, sums, **kwargs):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    return evaluate.summarise(model, sums, **kwargs)


def _evaluated(seed=0, size=64, **kwargs):
  """An EvalResult of an untrained Tiny model (gender, race, age, 25 age bins) on random rows."""
  heads = (HeadSpec("gender", "binary"), HeadSpec("race", "multiclass", num_outputs=5),
           HeadSpec("age", "regression"), heads_lib.binned_head("age_fine", 0, 100, 4, label_key="age"))
  model = Tiny(heads)
  rng = np.random.default_rng(seed)
  batch = {"image": rng.normal(size=(size, 4, 4, 3)).astype(np.float32),
           "age": rng.integers(0, 90, size).astype(np.int32),
           "gender": rng.integers(0, 2, size).astype(np.int32),
           "race": rng.integers(0, 4, size).astype(np.int32),  # no "Others": an empty group
           "mask": np.arange(size) < size - 3}
  params = model.init(jax.random.key(seed), batch["image"][:1])["params"]
  state = TrainState.create(params={"model": params}, model_state={}, tx=optax.sgd(0.1), objective_state={},
                            rng=jax.random.key(0))
  sums = evaluate.make_evaluator(model, images_fn=lambda b: b["image"])(state, batch, model.apply)
  return _quiet_summarise(model, sums, **kwargs)


def _no_nan_json(path):
  def reject(constant):
    raise ValueError(f"{constant} is not JSON")
  with open(path) as f:
    return json.load(f, parse_constant=reject)


def test_write_split_writes_the_audit_layout_and_figures(tmp_path):
  result = _evaluated()
  names = run_report.write_split(str(tmp_path), "validation", result, PRIMARY)
  folder = tmp_path / "report" / "validation"
  assert sorted(os.listdir(folder)) == names
  for view, grouping in result.confusion:
    if view != "age_fine_bins":
      assert f"confusion_{view}_{grouping}.png" in names
  for grouping in groups.DEFAULT_GROUPINGS:
    assert {f"rates_gender_{grouping}.png", f"disparate_impact_gender_{grouping}.png",
            f"mae_age_{grouping}.png", f"mae_age_fine_{grouping}.png"} <= set(names)
  # A 25-bin confusion matrix is unreadable: skipped, and said so.
  assert not any(n.startswith("confusion_age_fine_bins") for n in names)
  summary = _no_nan_json(folder / "summary.json")
  skip = "validation/confusion_age_fine_bins_race.png: 25 classes, too many to draw"
  assert skip in summary["skipped_files"]

  table = pd.read_csv(folder / "by_group.csv", keep_default_na=False)
  assert list(table.columns[:5]) == ["head", "grouping", "race", "gender", "class"]
  audit_columns = [c for c in table.columns if c in report_lib.BY_GROUP_COLUMNS]
  assert audit_columns == list(report_lib.BY_GROUP_COLUMNS)
  assert len(table) == sum(len(r.by_group) for r in result.reports.values())
  gender_by_race = table[(table["head"] == "gender") & (table["grouping"] == "race")]
  assert list(gender_by_race["race"]) == list(groups.group_labels("race"))
  assert set(gender_by_race["gender"]) == {""} and set(gender_by_race["class"]) == {""}
  others = gender_by_race[gender_by_race["race"] == "Others"]
  assert others["count"].item() == 0 and others["accuracy"].item() == "NaN"  # empty group: NaN, not 0
  race_rows = table[(table["head"] == "race") & (table["grouping"] == "race_x_gender")]
  assert len(race_rows) == 10 * 5 and set(race_rows["class"]) == set(groups.ATTRIBUTES["race"])


def test_summary_json_reads_as_an_audit_summary(tmp_path):
  result = _evaluated(seed=1)
  run_report.write_split(str(tmp_path), "test", result, PRIMARY)
  summary = _no_nan_json(tmp_path / "report" / "test" / "summary.json")
  rng = np.random.default_rng(0)
  frame = pd.DataFrame({name: rng.integers(0, 2, 50) for name in ("y", "p", "gender")})
  audit = audit_core.audit(frame, label_column="y", prediction_column="p", sensitive_columns=["gender"])
  assert set(audit.summary) <= set(summary)
  primary = result.reports[PRIMARY].summary
  assert {k: summary[k] for k in primary} == json.loads(json.dumps(primary))
  assert summary["split"] == "test" and summary["primary"] == {"head": "gender", "grouping": "gender"}
  assert summary["task"] == "binary" and summary["privileged_group"] == "gender=male"
  assert set(summary["reports"]) == {"gender", "race", "age", "age_fine", "age_fine_bins"}
  assert summary["reports"]["age"]["race"]["task"] == "regression"
  for key, value in result.metrics.items():
    assert summary["metrics"][key] == (None if math.isnan(value) else pytest.approx(value))
  assert summary["warnings_all"] == result.warnings


def test_write_split_rejects_a_primary_that_was_not_evaluated(tmp_path):
  with pytest.raises(ValueError, match="primary"):
    run_report.write_split(str(tmp_path), "validation", _evaluated(), ("gender", "age"))


def _history():
  history = []
  for step in (10, 20, 30):
    entry = {"step": step, "epoch": step // 10, "train/loss": 1.0 / step, "train/loss/gender": 0.5}
    entry.update({"validation/loss": 2.0 / step, "validation/gender/accuracy": 0.5 + step / 100,
                  "validation/gender/gender/equalized_odds_difference": float("nan") if step == 10 else 0.1})
    history.append(entry)
  return history


def test_markdown_report_covers_every_split_links_files_and_lists_warnings(tmp_path):
  results = {"validation": _evaluated(seed=2), "test": _evaluated(seed=3)}
  run_report.write_split(str(tmp_path), "validation", results["validation"], PRIMARY)
  path = run_report.write_markdown(
      str(tmp_path),
      config_summary={"model": {"name": "tiny"}, "seed": 0, "eval.groupings": ("race", "gender")},
      history=_history(), split_results=results, primary=PRIMARY, selected_step=20,
      notes=["data: 3 files skipped"])
  text = open(path).read()
  assert path == str(tmp_path / "report" / "report.md")
  assert (tmp_path / "report" / "training_curves.png").exists()
  assert "| model.name | tiny |" in text and "| eval.groupings | race, gender |" in text
  assert "step 20" in text
  for split in results:
    assert f"| {split} | " in text and f"## Per group: {split}" in text
  headline = next(line for line in text.splitlines()
                  if line.startswith("| validation | ") and "gender=male" in line)
  assert f"{results['validation'].metrics['gender/accuracy']:.3f}" in headline
  for line in text.splitlines():  # every link points at a file that exists
    for target in [part.split(")")[0] for part in line.split("](")[1:]]:
      assert (tmp_path / "report" / target).exists(), target
  assert "(validation/confusion_gender_race.png)" in text
  assert "- data: 3 files skipped" in text
  assert "- test: write_split was not run" in text
  assert "- skipped validation/confusion_age_fine_bins_gender.png: 25 classes, too many to draw" in text
  assert f"- validation: {results['validation'].warnings[0]}" in text
  assert "Panels: loss, gender/accuracy, gender/gender/equalized_odds_difference." in text
  assert "The head predicts an attribute of gender" in text  # why the odds gaps read n/a
  hidden = len(results["test"].warnings) - run_report.MAX_LISTED_WARNINGS
  assert hidden > 0 and f"- test: {hidden} more FairnessWarnings in test/summary.json (warnings_all)" in text


def test_markdown_shows_undefined_figures_as_na_and_survives_an_empty_history(tmp_path):
  model = types.SimpleNamespace(heads=(HeadSpec("gender", "binary"),))
  gender = np.zeros((2, 2, 2), np.int32)
  gender[0] = [[5, 1], [2, 4]]  # no women at all: every gap undefined
  race = np.zeros((5, 2, 2), np.int32)
  race[0] = gender[0]
  sums = {"gender": {"loss": np.array([3.0, 12.0], np.float32),
                     "confusion": {"overall": gender[0], "gender": gender, "race": race}}}
  result = _quiet_summarise(model, sums)
  assert math.isnan(result.metrics["gender/gender/equalized_odds_difference"])
  run_report.write_split(str(tmp_path), "validation", result, PRIMARY)
  text = open(run_report.write_markdown(str(tmp_path), config_summary={}, history=[],
                                        split_results={"validation": result}, primary=PRIMARY,
                                        selected_step=None, notes=[])).read()
  headline = next(line for line in text.splitlines() if line.startswith("| validation | "))
  assert headline.count("n/a") >= 3 and "nan" not in headline.lower().replace("n/a", "")
  women = next(line for line in text.splitlines() if line.startswith("| female | "))
  assert women == "| female | 0 | n/a | n/a | n/a | n/a | n/a |"
  assert not (tmp_path / "report" / "training_curves.png").exists()
  assert "- no finite training history: training_curves.png not written" in text
  assert "final state" in text
  summary = _no_nan_json(tmp_path / "report" / "validation" / "summary.json")
  assert summary["metrics"]["gender/gender/equalized_odds_difference"] is None


def test_multiclass_primary_table_averages_one_vs_rest_rates(tmp_path):
  result = _evaluated(seed=4)
  run_report.write_split(str(tmp_path), "validation", result, ("race", "gender"))
  text = open(run_report.write_markdown(str(tmp_path), config_summary={}, history=_history(),
                                        split_results={"validation": result}, primary=("race", "gender"),
                                        selected_step=None, notes=[])).read()
  assert "| group | count | accuracy | mean TPR | mean FPR | macro F1 |" in text
  assert "The head predicts an attribute" not in text
  report = result.reports[("race", "gender")]
  male = report.summary["groups"][0]
  row = next(line for line in text.splitlines() if line.startswith("| male | "))
  expected_fpr = np.nanmean(report.by_group[report.by_group["gender"] == "male"]["fpr"].to_numpy(float))
  assert row == (f"| male | {male['count']:g} | {male['accuracy']:.3f} | {male['macro_accuracy']:.3f} | "
                 f"{expected_fpr:.3f} | {male['macro_f1']:.3f} |")


# The run's choice, as loop._Run makes it (evaluate.run_privileged).
PRIVILEGED = {"race": {"group": "White", "reason": evaluate.TRAINING_LARGEST},
              "gender": {"group": "male", "reason": evaluate.CONFIGURED}}


@pytest.mark.parametrize("primary", [("gender", "race"), ("age", "race")])
def test_headline_figures_carry_their_intervals_in_markdown_and_summary_json(primary, tmp_path):
  results = {split: _evaluated(seed=seed, size=200, num_resamples=200, intervals_of={primary},
                               report_intervals=False, privileged={"race": "White"})
             for split, seed in (("validation", 5), ("test", 6))}
  for split, result in results.items():
    run_report.write_split(str(tmp_path), split, result, primary, privileged=PRIVILEGED)
  text = open(run_report.write_markdown(str(tmp_path), config_summary={}, history=_history(),
                                        split_results=results, primary=primary, selected_step=None,
                                        privileged=PRIVILEGED)).read()
  head = primary[0]
  names = ([f"{head}/mae", f"{head}/race/mae_gap", f"{head}/race/worst_group_mae"] if head == "age" else
           [f"{head}/accuracy", f"{head}/macro_f1"] + [f"{head}/race/{d}" for d in (
               "equalized_odds_difference", "equal_opportunity_difference", "accuracy_gap", "disparate_impact",
               "disparate_impact_correct", "worst_group_accuracy")])
  for split, result in results.items():
    row = next(line for line in text.splitlines() if line.startswith(f"| {split} | "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    expected = []
    for name in names:
      low, high = result.intervals[name]
      expected.append(f"{result.metrics[name]:.3f} [{low:.3f}, {high:.3f}]")
    assert cells == [split, *expected, "" if head == "age" else "race=White"], row  # MAE: no privileged group
    summary = _no_nan_json(tmp_path / "report" / split / "summary.json")
    assert set(summary["intervals"]) == set(result.intervals) >= set(names)
    for name in names:
      assert summary["intervals"][name] == pytest.approx(list(result.intervals[name]), rel=1e-6)
    assert "normal approximation" in summary["intervals_method"]
    assert summary["privileged_groups"] == PRIVILEGED
  assert ("Privileged groups, the same in every split: race: White (largest training group); "
          "gender: male (config).") in text
  assert "Brackets: 95 % intervals." in text


def test_without_intervals_the_headline_shows_the_figures_alone(tmp_path):
  result = _evaluated(seed=5)
  run_report.write_split(str(tmp_path), "validation", result, PRIMARY)
  text = open(run_report.write_markdown(str(tmp_path), config_summary={}, history=[],
                                        split_results={"validation": result}, primary=PRIMARY,
                                        selected_step=None)).read()
  row = next(line for line in text.splitlines() if line.startswith("| validation | "))
  assert "[" not in row and "Brackets" not in text and "Privileged groups" not in text
  summary = _no_nan_json(tmp_path / "report" / "validation" / "summary.json")
  assert summary["intervals"] == {} and "intervals_method" not in summary
