"""The CLIP experiments' table from given audits, the fine-tune configs they build, and a smoke run."""

import json
import math
import os
import subprocess
import sys

import pytest

from experiments import clip_runs
from experiments import clip_synthetic
from tests.experiments.slurm import fake_sbatch
from tests.test_clip_configs import check_clip_run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _figures(accuracy, male):
  return {"accuracy": accuracy, "macro_accuracy": accuracy - 0.01, "macro_f1": accuracy - 0.02,
          "predicted_male": male, "true_male": 0.5, "eo_gap_race": 0.1, "accuracy_ratio_gender": 0.9}


def _retrieval(skew):
  entry = {"max_skew": skew, "ndkl": skew / 2}
  return {"gender": {"10": entry, "100": {"skipped": "k = 100 exceeds the 64 images"}}, "race": {"10": entry,
                                                                                                  "100": entry}}


def _summary():
  sets = {"male/female": _figures(0.8, 0.6), "man/woman": _figures(0.7, 0.55), "ensemble": _figures(0.85, 0.52)}
  none = {"sets": sets, "race_sets": {"race": {"accuracy": 0.6, "macro_accuracy": 0.5, "macro_f1": 0.45}},
          "retrieval": _retrieval(0.3), "at_0.5": sets["ensemble"], "fit": {}, "left_out": {}}
  subspace = {"sets": {}, "race_sets": {}, "retrieval": _retrieval(0.2), "at_0.5": _figures(0.75, 0.5),
              "fit": {"k": 3, "dimension": 32, "alpha": 0.4}, "left_out": {}}
  projection = {"sets": {}, "race_sets": {}, "retrieval": _retrieval(0.1), "at_0.5": None, "fit": {},
                "left_out": {"ensemble": "annihilated"}}
  return {"methods": {"none": none, "subspace": subspace, "prompt_projection": projection}}


def test_table_rows_and_results_files(tmp_path):
  summary = _summary()
  rows = clip_runs.zero_shot_rows(summary) + clip_runs.method_rows(summary)
  rows.append(clip_runs.model_row("fine-tuned", summary))
  labels = [r["row"] for r in rows]
  assert labels == ["zero-shot: male/female", "zero-shot: man/woman", "zero-shot: ensemble",
                    "zero-shot: race (5-way race)", "debiased: subspace, defining sets",
                    "debiased: biased-prompt projection", "fine-tuned"]
  by_label = dict(zip(labels, rows))
  assert by_label["zero-shot: male/female"]["retrieval"] is None  # retrieval is the model's, shown once
  assert by_label["zero-shot: ensemble"]["retrieval"]["gender"]["10"]["max_skew"] == 0.3
  assert by_label["debiased: subspace, defining sets"]["di_gender"] == 0.9
  path = clip_runs.write_results(rows, str(tmp_path), "title", ["intro"], (10, 100), ["a note"])
  text = open(path).read()
  lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
  assert "| 85.0 % | 52.0 % (50.0 %) |" not in text  # accuracy is a fraction, shares are percentages
  assert lines["| zero-shot: ensemble"].count("0.300 / 0.300") == 1  # MaxSkew@10 gender / race
  assert "— / 0.300" in lines["| zero-shot: ensemble"]  # k = 100 skipped for gender only
  assert lines["| debiased: biased-prompt projection"].split(" | ")[1] == "—"
  assert "*seed 000 §8.3: subspace, α = 0.4*" in text and "*seed 003: OpenAI CLIP man/woman*" in text
  assert "references, not targets" in text and "a note" in text
  saved = json.load(open(tmp_path / "results.json"))
  assert len(saved["rows"]) == len(rows) and all(not isinstance(v, float) or math.isfinite(v)
                                                for r in saved["rows"] for v in r.values())


@pytest.mark.parametrize("arg", ["", "constrained"])
def test_finetune_configs_start_from_the_export(arg, tmp_path):
  if not os.path.exists(os.path.join(clip_runs.CONFIGS, clip_synthetic.FINETUNE)):
    pytest.skip(f"configs/{clip_synthetic.FINETUNE} is not there yet")
  config = clip_synthetic.finetune_config(arg, str(tmp_path / "clip_checkpoint"), smoke=True)
  assert config.model.kwargs.checkpoint == str(tmp_path / "clip_checkpoint")
  assert config.model.name == "clip_zero_shot"


def test_the_slurm_launcher_s_dry_run_puts_the_fine_tunes_after_the_pretraining(tmp_path):
  out = tmp_path / "clip_synthetic"
  env = dict(fake_sbatch(tmp_path), JAX_PLATFORMS="cpu", FAIRJAX_DRY_RUN="1")
  done = subprocess.run([sys.executable, "-m", "experiments.clip_synthetic", "--smoke", f"--output_dir={out}",
                         "--launcher=slurm"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert [line for line in done.stdout.splitlines() if line.startswith("would run: ")] == [
      f"would run: sbatch --parsable {out}/slurm/runs_0.sbatch",
      f"would run: sbatch --parsable --dependency=afterok:JOB0 {out}/slurm/runs_1.sbatch",
      f"would run: sbatch --parsable --dependency=afterany:JOB1 {out}/slurm/aggregate.sbatch"]
  assert "runs=(pretrain)" in (out / "slurm" / "runs_0.sbatch").read_text()
  assert "runs=(finetune finetune_constrained)" in (out / "slurm" / "runs_1.sbatch").read_text()
  assert not (tmp_path / "calls").exists()


def test_a_fine_tune_task_before_the_pretraining_is_one_error(tmp_path):
  assert clip_synthetic.unfinished_stages(str(tmp_path), smoke=True) == [
      ["pretrain"], ["finetune", "finetune_constrained"]]
  with pytest.raises(ValueError, match="train 'pretrain' first"):
    clip_synthetic.train_one("finetune", str(tmp_path), smoke=True)
  with pytest.raises(ValueError, match="unknown task"):
    clip_synthetic.train_one("finetune_2", str(tmp_path), smoke=True)


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
  out = tmp_path / "clip_synthetic"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, "-m", "experiments.clip_synthetic", "--smoke", f"--output_dir={out}"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
  assert done.returncode == 0, done.stderr[-3000:]
  assert clip_synthetic.unfinished_stages(str(out), smoke=True) == [[], []]  # nothing left to submit
  text = (out / "results.md").read_text()
  for label in ("zero-shot: male/female", "zero-shot: ensemble", "debiased: subspace, defining sets",
                "debiased: subspace, seed's sets", "debiased: calibrated projection",
                "debiased: subspace, defining sets, k = 1", "debiased: subspace, seed's sets, k = 1",
                "fine-tuned: §8.2 prompt CE, EO selection rule", "fine-tuned: + equalized-odds constraints"):
    assert f"| {label} |" in text
  # The suite's only runs of configs/clip_synthetic.py:smoke and seed000_clip_finetune's '' and
  # 'constrained' variants (from the pretrained export): their reports and exports.
  check_clip_run(clip_runs.config_of(clip_synthetic.PRETRAIN, "smoke"), out / "pretrain")
  for folder, arg, _ in clip_synthetic.FINETUNES:
    check_clip_run(clip_synthetic.finetune_config(arg, str(out / "pretrain" / "clip_checkpoint"), smoke=True),
                   out / folder)
  assert (out / "audit" / "report.md").exists() and (out / "finetune_audit" / "summary.json").exists()
