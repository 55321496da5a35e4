"""The ``age_correction`` evaluator on a trained age model: seed 001's corrections fitted on one split,
judged on another, saved and read back."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fairjax.data import groups
from fairjax.postprocess import regression
from fairjax.train import age_correction
from fairjax.train import config as config_lib
from fairjax.train import evaluators
from fairjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Seed 004's JLU model on synthetic faces: a binned age head (and gender), trained in seconds.
CONFIG = ("seed004_unlearning.py", "m1,synthetic,smoke")


@pytest.fixture(scope="module")
def context(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("age_run"))
  config = config_lib.load_config_module(os.path.join(ROOT, "configs", CONFIG[0])).get_config(CONFIG[1])
  loop.train_and_evaluate(config, workdir)
  return loop.reported_context(config, workdir)


def test_corrections_are_fitted_on_one_split_reported_on_another_and_saved(context):
  found = evaluators.run_evaluators(context, [age_correction.NAME],
                                    {age_correction.NAME: {"apply_split": "EBD", "num_resamples": 50}})
  with open(os.path.join(context.workdir, "report", "final_metrics.json")) as f:
    final = json.load(f)
  figures = found.metrics["EBD"]
  # "Before" is the run's own reported MAE of the same checkpoint on the same rows.
  assert figures["age_correction/mae_before"] == pytest.approx(final["EBD/age/mae"], abs=1e-4)
  table = pd.read_csv(os.path.join(context.workdir, "report", "EBD", "age_correction.csv"))
  cells = len(groups.ATTRIBUTES["race"]) * len(groups.ATTRIBUTES["gender"]) + 1
  assert list(table.method.unique()) == list(regression.METHODS) and len(table) == 3 * cells
  assert (table.mae_change_lower <= table.mae_change + 1e-9).all()
  assert (table.mae_change <= table.mae_change_upper + 1e-9).all()
  markdown = open(os.path.join(context.workdir, "report", "EBD", "age_correction.md")).read()
  assert "fitted on validation, applied to EBD" in markdown and "## By race x gender" in markdown
  # Each saved correction, read back and applied to the split's predictions, gives the reported MAE.
  rows = age_correction._age_rows(context, "age", "EBD")  # pylint: disable=protected-access
  known = np.isfinite(rows["true"])
  for method in regression.METHODS:
    saved = os.path.join(context.workdir, "report", age_correction.NAME,
                         method + (".joblib" if method == "gbt" else ".json"))
    corrected = regression.load_correction(saved).apply(rows["predicted"], rows["gender"], rows["race"])
    mae = np.abs(corrected[known] - rows["true"][known]).mean()
    assert mae == pytest.approx(figures[f"age_correction/{method}/mae"], rel=1e-4), method
    assert figures[f"age_correction/{method}/mae_change"] == pytest.approx(
        mae - figures["age_correction/mae_before"], abs=1e-4)


@pytest.mark.parametrize("options, message", [
    ({"apply_split": "validation"}, "flatters itself"),
    ({"apply_split": "test"}, "split 'test' is not evaluated"),
    ({"apply_split": "EBD", "methods": ["linear", "forest"]}, "unknown method 'forest'"),
    ({"apply_split": "EBD", "head": "gender"}, "'gender' is not a regression or binned head"),
])
def test_bad_options_are_one_clear_error(context, options, message):
  with pytest.raises(ValueError, match=message):
    evaluators.run_evaluators(context, [age_correction.NAME], {age_correction.NAME: options})


def test_a_misspelt_option_fails_before_training():
  config = config_lib.load_config_module(os.path.join(ROOT, "configs", CONFIG[0])).get_config(CONFIG[1])
  config.evaluators = (age_correction.NAME,)
  config.evaluator_options = {age_correction.NAME: {"method": ["linear"]}}
  with pytest.raises(ValueError, match="has no option 'method'; its options: head, fit_split"):
    evaluators.check_config(config)


def test_seed001_command_rejects_other_rows_in_one_line():
  # Its end-to-end run on a trained smoke run: tests/experiments/test_reproduce_seeds.py.
  bad = subprocess.run([sys.executable, "-m", "experiments.seed001_correction", "--rows=seed001_gender"],
                       capture_output=True, text=True, cwd=ROOT)
  assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: --rows names"), bad.stderr
