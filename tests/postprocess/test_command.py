"""`python -m fairjax.postprocess` as a user types it: relative paths from the working folder, its files
on good input, the saved rule reused, and one-line errors with nothing written on bad input."""

import concurrent.futures
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fairjax.postprocess import thresholds


def _run(cwd, *args):
  return subprocess.run([sys.executable, "-m", "fairjax.postprocess", *args], cwd=cwd, capture_output=True,
                        text=True, timeout=300)


def _predictions(seed, num_rows=1200):
  """Scores of a classifier that separates the classes worse for some races and for women."""
  rng = np.random.default_rng(seed)
  race = rng.choice(["White", "Black", "Asian"], num_rows, p=[.55, .3, .15])
  gender = rng.integers(0, 2, num_rows)
  y = (rng.random(num_rows) < np.where(race == "Black", .55, .4)).astype(int)
  quality = np.select([race == "White", race == "Black"], [2.4, 1.4], 1.0) - 0.4 * gender
  p = 1 / (1 + np.exp(-rng.normal(quality * (y - .5), 1.0)))
  return pd.DataFrame({"id": np.arange(num_rows), "race": race, "gender": gender, "y": y,
                       "p": np.round(p, 5)})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
  """val.csv and test.csv in a working folder, and the command's run on them: fitted by race x gender
  (Asian women, the smallest group, pooled by --min_group_size), applied to test.csv."""
  folder = tmp_path_factory.mktemp("postprocess")
  _predictions(1).to_csv(folder / "val.csv", index=False)
  _predictions(2).to_csv(folder / "test.csv", index=False)
  result = _run(folder, "--fit_input=val.csv", "--apply_input=test.csv", "--label_column=y",
                "--score_column=p", "--sensitive_columns=race,gender", "--constraint=equalized_odds",
                "--epsilon=0.02", "--min_group_size=90", "--output_dir=out")
  assert result.returncode == 0, result.stderr
  return folder, result


@pytest.mark.slow
def test_fit_and_apply_writes_the_rule_the_predictions_and_their_audit(fitted):
  folder, result = fitted
  out = folder / "out"
  assert {"thresholds.json", "predictions.csv", "by_group.csv", "summary.json", "rates_by_group.png",
          "disparate_impact.png", "threshold_sweep.png"} <= set(os.listdir(out))
  assert not [p for p in os.listdir(folder) if p.startswith(".")]  # no staging folder left
  test = pd.read_csv(folder / "test.csv")
  predictions = pd.read_csv(out / "predictions.csv")
  assert list(predictions.columns) == list(test.columns) + ["y_post", "p_post"]
  pd.testing.assert_frame_equal(predictions[test.columns], test)
  assert set(predictions["y_post"]) <= {0, 1} and predictions["p_post"].between(0, 1).all()

  rule = thresholds.GroupThresholds.load(str(out / "thresholds.json"))
  assert rule.constraint == "equalized_odds" and rule.epsilon == 0.02 and rule.randomized
  assert rule.source["sensitive_columns"] == ["race", "gender"]
  names = ["race=Asian, gender=0", "race=Asian, gender=1", "race=Black, gender=0", "race=Black, gender=1",
           "race=White, gender=0", "race=White, gender=1"]
  assert rule.group_names == names
  assert rule.pooled.tolist() == [False, True, False, False, False, False]
  assert rule.fit["gap"] <= 0.02 + 1e-5 and rule.fit["one_threshold"]["gap"] > 0.1
  groups = ("race=" + test["race"] + ", gender=" + test["gender"].astype(str)).map(names.index)
  np.testing.assert_allclose(rule.probabilities(test["p"], groups), predictions["p_post"], atol=1e-6)

  summary = json.loads((out / "summary.json").read_text())  # the audit of y_post
  assert summary["accuracy"] == pytest.approx(np.mean(predictions["y_post"] == predictions["y"]), abs=1e-6)
  table = pd.read_csv(out / "by_group.csv")
  assert list(table.columns[:3]) == ["race", "gender", "count"] and len(table) == 6
  assert "fit set, post-processed" in result.stdout and "equalized-odds gap" in result.stdout
  assert "race=Asian, gender=1 (" in result.stdout and "pooled rule" in result.stdout


@pytest.mark.slow
def test_a_saved_rule_applies_as_fitted_and_unknown_groups_get_the_pooled_rule(fitted):
  folder, _ = fitted
  test = pd.read_csv(folder / "test.csv")
  extra = test.head(5).assign(race="Pacific")
  pd.concat([test, extra]).to_csv(folder / "new.csv", index=False)
  result = _run(folder, "--predictor=out/thresholds.json", "--apply_input=new.csv", "--output_dir=again")
  assert result.returncode == 0, result.stderr
  assert "warning: group race=Pacific, gender=" in result.stdout and "gets the pooled rule" in result.stdout
  before = pd.read_csv(folder / "out" / "predictions.csv")
  after = pd.read_csv(folder / "again" / "predictions.csv")
  np.testing.assert_array_equal(after["p_post"].head(len(test)), before["p_post"])
  np.testing.assert_array_equal(after["y_post"].head(len(test)), before["y_post"])  # the same seed
  rule = thresholds.GroupThresholds.load(str(folder / "again" / "thresholds.json"))
  pooled = rule.probabilities(extra["p"], np.full(5, -1))
  np.testing.assert_allclose(after["p_post"].tail(5), pooled, atol=1e-6)


BAD_INPUTS = {
    "missing fit file": (["--fit_input=nope.csv"], "input file not found"),
    "missing column": (["--fit_input=val.csv", "--score_column=q"], "not in the input: q"),
    "NaN score": (["--fit_input=nan.csv"], "score column 'p' has 1 missing/NaN"),
    "label not 0/1": (["--fit_input=two.csv"], "label column 'y' of two.csv must hold 0 and 1 only"),
    "unknown constraint": (["--fit_input=val.csv", "--constraint=parity"], "--constraint=parity"),
    "epsilon above 1": (["--fit_input=val.csv", "--epsilon=1.5"], "--epsilon must lie in [0, 1], got 1.5"),
}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
  """Every bad input's run, each in a working folder of its own, two processes at a time."""
  frame = _predictions(3, num_rows=200)
  nan, two = frame.copy(), frame.copy()
  nan.loc[7, "p"] = np.nan
  two.loc[11, "y"] = 2

  def run(name):
    folder = tmp_path_factory.mktemp("bad")
    for file, data in (("val.csv", frame), ("test.csv", frame), ("nan.csv", nan), ("two.csv", two)):
      data.to_csv(folder / file, index=False)
    args = BAD_INPUTS[name][0]
    if not any(a.startswith("--apply_input") for a in args):
      args = args + ["--apply_input=test.csv"]
    return folder, _run(folder, *args, "--output_dir=out")

  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    return dict(zip(BAD_INPUTS, pool.map(run, BAD_INPUTS)))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_1_and_writes_nothing(bad_runs, name):
  folder, result = bad_runs[name]
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 1, result.stderr
  assert len(lines) == 1 and lines[0].startswith("error:") and BAD_INPUTS[name][1] in lines[0], result.stderr
  assert not (folder / "out").exists()
  assert not [p for p in os.listdir(folder) if p.startswith(".")]
