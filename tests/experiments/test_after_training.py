"""Commands that read a finished run, on one trained smoke run: the frontier experiment (scores of the
reported checkpoint, tables written) and ``python -m fairjax.explain`` (files, figures, bad input)."""

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


def _explain(workdir, *flags):
  return subprocess.run([sys.executable, "-m", "fairjax.explain", "--config=configs/default.py:smoke",
                         f"--workdir={workdir}", *flags], capture_output=True, text=True, cwd=ROOT)


def test_explain_writes_by_group_figures_linked_from_the_report(trained):
  _, workdir = trained
  result = _explain(workdir, "--methods=ig,gradcam,lime", "--per_group=1",
                    '--method_options={"lime": {"num_samples": 32}, "ig": {"steps": 8}}')
  assert result.returncode == 0, result.stderr[-2000:]
  out = os.path.join(workdir, "report", "test", "explain")
  with open(os.path.join(out, "explain.json")) as f:
    summary = json.load(f)
  assert summary["methods"] == ["ig", "gradcam", "lime"] and summary["head"] == "gender"
  assert len(summary["groups"]) == 10  # every race x gender group of the balanced test split
  for entry in summary["groups"].values():
    assert entry["explained"] == 1 and set(entry["methods"]) == {"ig", "gradcam", "lime"}
    ig = entry["methods"]["ig"]
    assert 0 <= ig["face_share"] <= 1 and 0 <= ig["deletion_auc"] <= 1
  assert set(summary["randomisation"]) == {"ig", "gradcam", "lime"}
  for name in summary["figures"].values():
    assert os.path.getsize(os.path.join(out, name)) > 1000
  report = open(os.path.join(workdir, "report", "report.md")).read()
  assert report.count("(test/explain/explain.md)") == 1
  assert "| White, female |" in open(os.path.join(out, "explain.md")).read()


@pytest.mark.parametrize("flags, message", [
    (["--methods=ig,shap"], "unknown explanation method 'shap'"),
    (["--methods=ig", '--method_options={"ig": {"stepz": 3}}'], "takes no option(s) ['stepz']"),
    (["--methods=ig", "--head=age"], "no head 'age'"),
    (["--methods=ig", "--split=train"], "--split=train"),
])
def test_explain_bad_input_is_one_error_line(trained, flags, message):
  _, workdir = trained
  result = _explain(workdir, *flags)
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr[-1000:]


def test_explain_of_a_folder_without_a_run_says_train_it_first(tmp_path):
  result = _explain(str(tmp_path), "--methods=ig")
  assert result.returncode != 0 and "train it first" in result.stderr.strip().splitlines()[-1]
