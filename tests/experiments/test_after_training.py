"""Commands that read a finished run, on one trained smoke run: the frontier experiment (scores of the
reported checkpoint, tables written), ``python -m fairjax.explain`` (files, figures, bad input) and the
mitigation benchmark's post-training methods."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
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


def _benchmark(*flags):
  return subprocess.run([sys.executable, "-m", "experiments.mitigation_benchmark", *flags], capture_output=True,
                        text=True, cwd=ROOT)


def test_mitigation_benchmark_reuses_the_run_and_tabulates_post_training_methods(trained, tmp_path):
  """The standard run is the trained smoke run (copied where the benchmark keeps it: not trained again);
  post-processing and LEACE are applied to it; the standard row's figures are the run's own."""
  config, workdir = trained
  shutil.copytree(workdir, tmp_path / "default" / "standard" / "seed0")
  result = _benchmark("--task=default", "--smoke", "--seeds=1", "--methods=standard,postprocess,leace",
                      "--num_resamples=100", f"--output_dir={tmp_path}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "standard seed 0: finished run" in result.stdout and "training in" not in result.stdout
  with open(os.path.join(workdir, "report", "final_metrics.json")) as f:
    final = json.load(f)
  with open(tmp_path / "default" / "benchmark.csv") as f:
    rows = {row["method"]: row for row in csv.DictReader(f)}
  assert list(rows) == ["standard", "postprocess", "leace"]
  standard = rows["standard"]
  assert float(standard["accuracy"]) == pytest.approx(final["test/gender/accuracy"], abs=1e-6)
  assert float(standard["equalized_odds_gap"]) == pytest.approx(final["test/gender/race/equalized_odds_difference"],
                                                                abs=1e-5)
  assert float(standard["accuracy_lo"]) <= float(standard["accuracy"]) <= float(standard["accuracy_hi"])
  table = (tmp_path / "default" / "benchmark.md").read_text()
  assert "| LEACE of standard, head refitted | 1 |" in table and "validation-fitted accuracy" in table
  assert (tmp_path / "default" / "benchmark.png").stat().st_size > 0
  bad = _benchmark("--task=default", "--smoke", "--methods=standard,dpo", f"--output_dir={tmp_path / 'bad'}")
  assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error:")
  assert "unknown method(s) ['dpo']" in bad.stderr and not (tmp_path / "bad").exists()
  from experiments import mitigations as mb  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="--seeds must be at least 1"):
    mb.benchmark("default", 0, ["standard"], str(tmp_path / "bad"), smoke=True)


def test_benchmark_figures_and_two_level_intervals_by_hand():
  from experiments import mitigations as mb  # pylint: disable=g-import-not-at-top
  p = np.array([1, 0, 1, 1, 0.5, 0.0])
  y = np.array([1, 0, 0, 1, 1, 0])
  g = np.array([0, 0, 0, 1, 1, 1])
  found = {k: float(v[0]) for k, v in mb.figures(p, y, g, 2).items()}
  # Group 0: correct 1, 1, 0 -> 2/3; TPR 1, FPR 1/2, selection 2/3. Group 1: correct 1, 0.5, 1 -> 5/6;
  # TPR 0.75, FPR 0, selection 0.5.
  assert found["accuracy"] == pytest.approx(0.75)
  assert found["worst_group_accuracy"] == pytest.approx(2 / 3)
  assert found["equalized_odds_gap"] == pytest.approx(0.5)
  assert found["demographic_parity_gap"] == pytest.approx(1 / 6)
  # Two seeds whose draws are constants 0.8 and 0.9: every resample's mean is 0.8, 0.85 or 0.9.
  measured = [{**{k: value for k in mb.FIGURES}, **{f"{k}_draws": np.full(mb.NUM_RESAMPLES, value) for k in mb.FIGURES},
               "race_leakage_linear": value, "race_leakage_mlp": value} for value in (0.8, 0.9)]
  pooled = mb.pooled(measured)
  assert pooled["accuracy"] == pytest.approx(0.85) and pooled["seeds"] == 2
  assert pooled["accuracy_ci"] == pytest.approx([0.8, 0.9])
  assert pooled["race_leakage_mlp_ci"] == pytest.approx([0.8025, 0.8975])


@pytest.mark.parametrize("task", ["default", "utkface_gender"])
def test_every_method_is_a_valid_run_of_each_task(task):
  """Each method's terms and treatments pass the config check and its terms build on the task's model (a
  misspelt option or a head the model lacks would otherwise surface only when that method's run starts)."""
  from experiments import mitigations as mb  # pylint: disable=g-import-not-at-top
  from fairjax.train import objectives  # pylint: disable=g-import-not-at-top
  base = mb.task_config(task, True, None, 64, 0)
  model = loop.build_model(base)
  for name, method in mb.METHODS.items():
    config = mb.run_config(base, name, seed=1)
    config_lib.check_config(config)
    built = objectives.build(config.objective, model)
    assert set(built.terms) == set(method.terms(base.eval.primary_head, base.eval.primary_grouping)), name
    assert list(config.data.treatments) == [*base.data.treatments, *method.treatments(base.eval.primary_grouping)]
