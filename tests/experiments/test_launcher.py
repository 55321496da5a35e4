"""``experiments/launcher.py``'s command for the array tasks and the aggregation, and sbatch's failures
(``OSError``: one ``error:`` line from the experiment's command)."""

import sys

import pytest

from experiments import launcher
from tests.experiments.slurm import fake_sbatch


def test_the_rerun_command_keeps_the_experiment_s_flags_and_drops_the_launcher_s():
  argv = ["prog", "--dataset=utkface", "--launcher=slurm", "--sbatch", "--partition=gpu --gres=gpu:1",
          "--output_dir", "out/x", "--task", "m1", "--noaggregate_only", "--smoke"]
  assert launcher.rerun_command(argv, "experiments.seed004_unlearning", "--task=m2") == [
      sys.executable, "-m", "experiments.seed004_unlearning", "--dataset=utkface", "--output_dir", "out/x",
      "--smoke", "--task=m2"]


def test_a_failing_sbatch_is_one_error_naming_its_last_line(tmp_path, monkeypatch):
  env = fake_sbatch(tmp_path)
  (tmp_path / "bin" / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpu' >&2\n"
                                           "exit 1\n")
  monkeypatch.setenv("PATH", env["PATH"])
  with pytest.raises(OSError, match=r"sbatch failed \(1\): sbatch: error: invalid partition specified: gpu"):
    launcher.submit_slurm(str(tmp_path / "out"), "x", [["a"]], ["python", "-m", "x"], log=lambda line: None)
  monkeypatch.setenv("PATH", str(tmp_path / "empty"))
  with pytest.raises(OSError, match="needs sbatch on PATH"):
    launcher.submit_slurm(str(tmp_path / "out"), "x", [["a"]], ["python", "-m", "x"], log=lambda line: None)
