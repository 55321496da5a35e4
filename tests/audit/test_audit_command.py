"""`python -m fairjax.audit`: its files on good input, and one-line errors with nothing written on bad."""

import json
import os
import subprocess
import sys

import fairlearn.metrics as flm
import numpy as np
import pandas as pd
import pytest

from fairjax.audit import core as audit_main
from fairjax.audit import example
from fairjax.audit import inputs


def _run(*args):
  return subprocess.run([sys.executable, "-m", "fairjax.audit", *args], capture_output=True, text=True,
                        timeout=300)


@pytest.fixture
def predictions(tmp_path):
  frame = example.make_example(num_rows=1500, seed=1)
  frame["race"] = frame["race"].map(dict(enumerate(["White", "Black", "Asian", "Indian", "Others"])))
  path = tmp_path / "preds.csv"
  frame.to_csv(path, index=False)
  return frame, path


@pytest.mark.slow
def test_command_writes_the_report(predictions, tmp_path):
  frame, path = predictions
  out = tmp_path / "out"
  result = _run(f"--input={path}", "--label_column=y", "--prediction_column=y_hat", "--score_column=p",
                "--sensitive_columns=race,gender", "--privileged_group=White,0", "--n_boot=200",
                f"--output_dir={out}")
  assert result.returncode == 0, result.stderr
  assert {"by_group.csv", "summary.json", "rates_by_group.png", "disparate_impact.png",
          "threshold_sweep.png"} <= set(os.listdir(out))
  table = pd.read_csv(out / "by_group.csv")
  assert list(table.columns[:3]) == ["race", "gender", "count"]
  for column in ("selection_rate", "tpr", "fpr", "tnr", "fnr", "ppv", "npv", "fdr", "for", "accuracy", "f1",
                 "tpr_lo", "tpr_hi"):
    assert column in table.columns
  assert len(table) == 10
  summary = json.loads((out / "summary.json").read_text())
  for key in ("accuracy", "macro_accuracy", "macro_f1", "demographic_parity_difference",
              "demographic_parity_ratio", "equalized_odds_difference", "equalized_odds_ratio",
              "equal_opportunity_difference"):
    assert key in summary
  assert summary["privileged_group"] == "race=White, gender=0"
  assert summary["threshold_sweep"]["best_macro_f1"]["threshold"] in summary["threshold_sweep"]["thresholds"]
  # One-class intersectional groups (a gender task audited by gender) are reported, not crashed on.
  assert any("no positive examples" in w for w in summary["warnings"])


def test_audit_function_agrees_with_fairlearn_by_race(predictions):
  frame, _ = predictions
  result = audit_main.audit(frame, label_column="y", prediction_column="y_hat", sensitive_columns=["race"],
                            privileged_group=["White"])
  y, p, race = frame["y"], frame["y_hat"], frame["race"]
  np.testing.assert_allclose(result.summary["equalized_odds_difference"],
                             flm.equalized_odds_difference(y, p, sensitive_features=race), rtol=1e-5)
  np.testing.assert_allclose(result.summary["demographic_parity_ratio"],
                             flm.demographic_parity_ratio(y, p, sensitive_features=race), rtol=1e-5)
  white_rate = p[race == "White"].mean()
  di = dict(zip(result.by_group["race"], result.by_group["disparate_impact"]))
  np.testing.assert_allclose(di["Black"], p[race == "Black"].mean() / white_rate, rtol=1e-5)


def test_multiclass_audit_reports_each_class(tmp_path):
  rng = np.random.default_rng(0)
  frame = pd.DataFrame({"race": rng.integers(0, 5, 800), "gender": rng.integers(0, 2, 800)})
  frame["pred"] = np.where(rng.random(800) < 0.7, frame["race"], rng.integers(0, 5, 800))
  result = audit_main.audit(frame, label_column="race", prediction_column="pred", sensitive_columns=["gender"])
  assert result.summary["task"] == "multiclass"
  assert len(result.by_group) == 10 and set(result.by_group["class"]) == {0, 1, 2, 3, 4}
  assert set(result.summary["per_class"]) == {"0", "1", "2", "3", "4"}
  names = audit_main.write_report(result, str(tmp_path / "mc"))
  assert "rates_by_group_class_4.png" in names


@pytest.mark.slow
@pytest.mark.parametrize("content, args, message", [
    ("", [], "input file is empty"),
    ("y,y_hat,race\n", [], "header but no rows"),
    ("y,y_hat,race\n1,0,a\n0,1,b\n", ["--sensitive_columns=gender"], "not in the input: gender"),
    ("y,y_hat,race\nmale,0,a\n0,1,b\n", [], "label column 'y' is not numeric"),
    ("y,y_hat,race,p\n1,0,a,0.2\n0,1,b,nan\n", ["--score_column=p"], "score column 'p' has 1 missing/NaN"),
])
def test_bad_input_is_one_line_and_exit_1_and_writes_nothing(tmp_path, content, args, message):
  path = tmp_path / "in.csv"
  path.write_text(content)
  out = tmp_path / "out"
  result = _run(f"--input={path}", f"--output_dir={out}", *args)
  assert result.returncode == 1
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
  assert not out.exists()
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".audit-")]


@pytest.mark.parametrize("frame, kwargs, message", [
    (pd.DataFrame({"y": [0, 1], "y_hat": [0, 1], "race": ["a", None]}), {}, "missing value"),
    (pd.DataFrame({"y": [0, 1.5], "y_hat": [0, 1], "race": ["a", "b"]}), {}, "non-integer"),
    (pd.DataFrame({"y": [0, 1], "y_hat": [0, 1], "race": ["a", "b"]}), {"positive_label": 7}, "positive label 7"),
    (pd.DataFrame({"y": [0, 1], "y_hat": [0, 1], "race": ["a", "b"]}), {"privileged_group": ["c"]}, "does not occur"),
    (pd.DataFrame({"y": [0, 1], "y_hat": [0, 1], "race": ["a", "b"]}), {"n_boot": -1}, "n_boot"),
])
def test_input_errors_in_process(frame, kwargs, message):
  with pytest.raises(inputs.AuditInputError, match=message):
    audit_main.audit(frame, label_column="y", prediction_column="y_hat", sensitive_columns=["race"], **kwargs)
