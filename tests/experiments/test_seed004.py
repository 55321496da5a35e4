"""Seed 004's experiment: its configs, table and checks from given metrics, and a smoke run end to end."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import seed004_unlearning as experiment
from tests.experiments.slurm import fake_sbatch
from fairjax.models import registry as model_registry
from fairjax.train import config as config_lib
from fairjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config_module():
  spec = importlib.util.spec_from_file_location("_test_seed004_config", experiment.CONFIG_FILE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("model", ["m1", "m2", "m3", "grl", "constrained"])
@pytest.mark.parametrize("extra", ["utkface", "synthetic", "synthetic,cpu", "synthetic,smoke", "utkface,cpu,smoke"])
def test_every_model_word_builds_a_valid_config_whose_model_fits(model, extra):
  config = _config_module().get_config(f"{model},{extra}")
  config_lib.check_config(config)
  built = loop.build_model(config)
  model_registry.abstract_variables(built)
  heads = [h.name for h in built.heads]
  assert heads == (["age"] if model == "constrained" else ["age", "gender"])
  assert config.model.name == "jlu_cnn" and config.data.splits == "bias"
  assert config.eval.primary_head == "age" and config.eval.primary_grouping == "gender"


def test_the_models_are_the_seeds_alphas_and_the_two_comparisons():
  module = _config_module()
  alphas = {word: module.get_config(word).objective.terms.jlu.alpha for word in ("m1", "m2", "m3")}
  assert alphas == {"m1": 0.0, "m2": 1.0, "m3": 0.4}
  assert all(list(module.get_config(w).objective.terms) == ["jlu"] for w in ("", "m1", "m2", "m3"))
  grl = module.get_config("grl,synthetic")
  assert list(grl.objective.terms) == ["grl"] and tuple(grl.objective.terms.grl.attributes) == ("gender",)
  constrained = module.get_config("constrained")
  assert list(constrained.objective.terms) == ["constrained"] and constrained.objective.terms.constrained.head == "age"
  # Everything but the objective (and the constrained model's missing gender head) is shared.
  plain = module.get_config("m1").to_dict()
  for word in ("m2", "grl"):
    other = module.get_config(word).to_dict()
    other["objective"] = plain["objective"]
    assert other == plain
  cpu = module.get_config("m1,cpu")
  assert cpu.data.image_size == 64 and tuple(cpu.model.kwargs.convs[0]) == (16, True)
  assert module.get_config("m1").data.image_size == 96


@pytest.mark.parametrize("extra", ["utkface", "synthetic", "synthetic,smoke", "utkface,cpu,smoke"])
def test_side_adds_only_the_gender_set(extra):
  module = _config_module()
  plain, side = module.get_config(f"m2,{extra}"), module.get_config(f"m2,side,{extra}")
  config_lib.check_config(side)
  assert side.data.bias.side_size == (64 if "smoke" in extra else module.SIDE_SIZE)
  if "synthetic" in extra:  # images left outside OD's subset to draw the gender set from
    assert side.data.subset_size == plain.data.num_examples.train < side.data.num_examples.train
  plain, side = plain.to_dict(), side.to_dict()
  for key in ("bias", "subset_size", "num_examples"):
    side["data"][key] = plain["data"][key]
  assert side == plain
  with pytest.raises(ValueError, match="'side' hides gender"):
    module.get_config("constrained,side")


def test_bad_arguments_are_errors():
  module = _config_module()
  with pytest.raises(ValueError, match="unknown argument"):
    module.get_config("m4")
  with pytest.raises(ValueError, match="choose one model"):
    module.get_config("m1,m2")
  with pytest.raises(ValueError, match="choose one model"):
    module.get_config("utkface,synthetic")
  with pytest.raises(ValueError, match="unknown data set"):
    experiment.model_config("m1", "celeb_a")
  with pytest.raises(ValueError, match="--manual_dir is for"):
    experiment.model_config("m1", "synthetic_faces", manual_dir="/data")


def _metrics(ebd_accuracy, leakage, gender=0.5):
  return {"EBD/age/accuracy": ebd_accuracy, "BD_complement/age/accuracy": 0.3, "validation/age/accuracy": 0.6,
          "EBD/age/mae": 6.0, "EBD/leakage_gender": leakage, "BD_complement/leakage_gender": leakage,
          "validation/leakage_gender": 0.4, "EBD/gender/accuracy": gender,
          "EBD/age/gender/equalized_odds_difference": 0.1}


def test_table_and_acceptance_from_given_metrics(tmp_path):
  results = {"constrained": {**_metrics(0.40, 0.30), "EBD/gender/accuracy": None},
             "m2": _metrics(0.47, 0.049), "m1": _metrics(0.46, 0.35, 0.9), "m3": _metrics(0.45, 0.01),
             "grl": _metrics(0.48, -0.08)}
  rows = experiment.table_rows(results)
  assert [row["model"] for row in rows] == ["m1", "m3", "m2", "grl", "constrained"]  # the seed's order
  assert rows[2]["seed_age_accuracy_EBD"] == 0.49 and rows[2]["seed_gender_accuracy"] == 0.53
  assert np.isnan(rows[4]["gender_head_accuracy_EBD"])  # a missing figure is NaN, not 0
  checks = experiment.acceptance(rows)
  assert len(checks) == 3
  assert checks[0].startswith("M3") and "BELOW" in checks[0] and checks[0].endswith("NOT met")
  assert checks[1].startswith("M2") and "(within" in checks[1] and checks[1].endswith("-> met")
  assert checks[2].startswith("GRL") and "NOT within" in checks[2]
  assert experiment.acceptance(rows[1:])[0].startswith("M1 was not run")
  experiment.write_table(rows, str(tmp_path), "synthetic_faces", smoke=False)
  with open(tmp_path / "results.csv") as f:
    table = list(csv.DictReader(f))
  assert [row["label"] for row in table] == ["M1", "M3", "M2", "GRL", "Constrained"]
  assert float(table[0]["age_accuracy_EBD"]) == 0.46
  markdown = (tmp_path / "results.md").read_text()
  assert "| M2 | JLU alpha = 1 | 47.0 % | 49.0 % |" in markdown
  assert "## Acceptance" in markdown and "embeddings_gender.png" in markdown


def _experiment(*flags, env=None):
  return subprocess.run([sys.executable, "-m", "experiments.seed004_unlearning", *flags], capture_output=True,
                        text=True, cwd=ROOT, check=False, env=env)


def test_the_slurm_launcher_s_dry_run_writes_the_array_and_submits_nothing(tmp_path):
  env = {**fake_sbatch(tmp_path), "FAIRJAX_DRY_RUN": "1"}
  output = tmp_path / "out"
  result = _experiment("--dataset=synthetic_faces", f"--output_dir={output}", "--smoke", "--models=m1,m2,grl",
                       "--launcher=slurm", "--sbatch=--partition=debug --time=1:00:00", env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [line for line in result.stdout.splitlines() if line.startswith("would run: ")]
  assert lines == [f"would run: sbatch --parsable --partition=debug --time=1:00:00 {output}/slurm/runs_0.sbatch",
                   f"would run: sbatch --parsable --partition=debug --time=1:00:00 --dependency=afterany:JOB0 "
                   f"{output}/slurm/aggregate.sbatch"]
  assert not (tmp_path / "calls").exists() and sorted(os.listdir(output)) == ["slurm"]
  array = (output / "slurm" / "runs_0.sbatch").read_text()
  assert "#SBATCH --array=0-2" in array and "runs=(m1 m2 grl)" in array
  command = (f"-m experiments.seed004_unlearning --dataset=synthetic_faces --output_dir={output} --smoke "
             "--models=m1,m2,grl")
  assert f'{command} --task="${{runs[$SLURM_ARRAY_TASK_ID]}}"' in array and "--launcher" not in array
  assert f"{command} --aggregate_only" in (output / "slurm" / "aggregate.sbatch").read_text()


@pytest.mark.slow
def test_smoke_experiment_on_slurm_end_to_end_and_resumed_locally(tmp_path):
  """The runs as the tasks of a SLURM job array (a fake sbatch that runs them here), the table written by
  the aggregation job after them; then the local launcher finds both runs finished."""
  output = tmp_path / "out"
  flags = ["--dataset=synthetic_faces", f"--output_dir={output}", "--smoke", "--models=m1,m2"]
  result = _experiment(*flags, "--launcher=slurm", env=fake_sbatch(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "submitted 2 runs (m1, m2) as job array 101, the aggregation as job 102" in result.stdout
  calls = (tmp_path / "calls").read_text().splitlines()
  assert calls == [f"--parsable {output}/slurm/runs_0.sbatch",
                   f"--parsable --dependency=afterany:101 {output}/slurm/aggregate.sbatch"]
  task_log = (output / "slurm" / "101_1.log").read_text()
  assert "m2: training in" in task_log and "m1:" not in task_log
  assert "results: " in (output / "slurm" / "102_aggregate.log").read_text()
  for model in ("m1", "m2"):
    summary = json.loads((output / model / "report" / "EBD" / "summary.json").read_text())
    assert -1.0 <= summary["leakage_gender"] <= 1.0
    assert (output / model / "report" / "EBD" / "embedding_points.npz").exists()
  with open(output / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [row["model"] for row in rows] == ["m1", "m2"]
  final = json.loads((output / "m2" / "report" / "final_metrics.json").read_text())
  assert float(rows[1]["leakage_gender_EBD"]) == pytest.approx(final["EBD/leakage_gender"])
  assert float(rows[1]["age_accuracy_EBD"]) == pytest.approx(final["EBD/age/accuracy"])
  assert (output / "embeddings_gender.png").stat().st_size > 10_000
  assert "## Acceptance" in (output / "results.md").read_text()
  # A second call finds both runs finished and only redraws the outputs, and erases gender from M2's
  # representation after training: its leakage before erasure is the run's own.
  stamp = os.path.getmtime(output / "m1" / "report" / "final_metrics.json")
  result = _experiment(*flags, "--erasure=leace")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count("not trained again") == 2
  assert os.path.getmtime(output / "m1" / "report" / "final_metrics.json") == stamp
  with open(output / "erasure.csv") as f:
    erased = [row for row in csv.DictReader(f) if row["model"] == "m2"]
  assert [(row["fit"], row["split"]) for row in erased] == [
      ("BD train", "EBD"), ("BD train", "BD_complement"), ("BD train + BD complement", "EBD"),
      ("EBD (in-sample)", "EBD"), ("EBD half", "EBD other half")]
  assert float(erased[0]["leakage_mlp_before"]) == pytest.approx(final["EBD/leakage_gender"], abs=1e-6)
  assert float(erased[0]["age_accuracy_own_head"]) == pytest.approx(final["EBD/age/accuracy"], abs=1e-6)
  erasure_md = (output / "erasure.md").read_text()
  assert "LEACE fitted on EBD half, judged on EBD other half" in erasure_md
  # The synthetic smoke run's OD is every image: no face is left for a separate gender set, and it says so.
  assert "m2: no eraser fitted on a separate gender data set: data.bias.gender_set_size draws" in erasure_md
  # A workdir of another config is not taken for a finished run; the aggregation reads whatever has
  # finished.
  os.rename(output / "m1", output / "m3")
  with pytest.raises(ValueError, match="another config"):
    experiment.finished_models(["m3"], "synthetic_faces", str(output), smoke=True)
  assert list(experiment.finished_models(["m1", "m2"], "synthetic_faces", str(output), smoke=True)) == ["m2"]
