"""The frontier experiment on a trained smoke run: scores of the reported checkpoint, tables written."""

import json
import os
import subprocess
import sys

import pytest

from fairjax.metrics import frontier
from fairjax.train import config as config_lib
from fairjax.train import evaluators
from fairjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("default_smoke"))
  config = config_lib.load_config_module(os.path.join(ROOT, "configs", "default.py")).get_config("smoke")
  loop.train_and_evaluate(config, workdir)
  return config, workdir


def test_scores_are_the_reported_checkpoints(trained):
  config, workdir = trained
  context = loop.reported_context(config, workdir)
  rows = evaluators.primary_scores(context, "test")
  with open(os.path.join(workdir, "report", "final_metrics.json")) as f:
    final = json.load(f)
  assert context.step == final["selected_step"] and len(rows["score"]) == config.data.num_examples.test
  as_is = frontier.model_as_is(rows["score"], rows["label"], rows["group"], 5)
  assert as_is["accuracy"] == pytest.approx(final["test/gender/accuracy"], abs=1e-6)
  assert as_is["gap"] == pytest.approx(final["test/gender/race/equalized_odds_difference"], abs=1e-5)


def test_command_writes_the_table(trained):
  _, workdir = trained
  result = subprocess.run([sys.executable, "-m", "experiments.eo_frontier", "--config=configs/default.py:smoke",
                           f"--workdir={workdir}", "--epsilons=0.1,1"], capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-2000:]
  table = open(os.path.join(workdir, "report", "test", "eo_frontier.md")).read()
  assert "| 0.1 |" in table and "| 1 |" in table and "The model as it is" in table
  with open(os.path.join(workdir, "report", "test", "eo_frontier.csv")) as f:
    lines = f.read().splitlines()
  assert lines[0].startswith("epsilon,accuracy,accuracy_White") and len(lines) == 3
  strict, loose = (float(line.split(",")[1]) for line in lines[1:])
  assert strict <= loose
