"""Where an experiment's runs train: one after another in this process, or as one SLURM job array.

An experiment is independent runs (each a normal, resumable ``train_and_evaluate`` in its own workdir)
and an aggregation step that reads their reports. ``--launcher=local`` (the default) trains every
unfinished run here, in order, then aggregates. ``--launcher=slurm`` submits one array task per
unfinished run and, after the array (``afterany``: whatever finished), one aggregation job. Runs that
start from another run's output (a fine-tune from a pretraining) form a later stage: its own array,
started once the stage before has succeeded (``afterok``).

  OUT/slurm/runs_<i>.sbatch    stage i's job array: task j runs the same command with ``--task=<run j>``
  OUT/slurm/aggregate.sbatch   the same command with ``--aggregate_only``
  OUT/slurm/<job>_<task>.log   each task's output

Both scripts run the experiment's own command line again (the same flags, the same folder), so a task
trains exactly the run the local launcher would, and a preempted or failed task is finished by
submitting again: finished runs are never resubmitted. ``--sbatch`` passes options to both submissions
(``--sbatch="--partition=gpu --gres=gpu:1 --time=8:00:00"``). With ``FAIRJAX_DRY_RUN=1`` the scripts are
written and the ``sbatch`` commands printed, and nothing is submitted (as the recipes in ``launch/``).
"""

import os
import shlex
import subprocess
import sys
from typing import Callable, Sequence

from absl import flags

LAUNCHERS = ("local", "slurm")
SLURM_DIR = "slurm"
DRY_RUN_ENVIRONMENT = "FAIRJAX_DRY_RUN"
# The flags that choose how the command runs, not what it computes: dropped from the command that the
# array tasks and the aggregation job run again.
_OWN_FLAGS = ("launcher", "task", "aggregate_only", "sbatch")
_VALUED_FLAGS = ("launcher", "task", "sbatch")


def define_flags():
  """The launcher's flags, for an experiment's command line."""
  flags.DEFINE_enum("launcher", "local", LAUNCHERS, "Where the runs train: here, one after another "
                    "(local), or as the tasks of one SLURM job array with the aggregation after it (slurm).")
  flags.DEFINE_string("task", None, "Train this one run and nothing else (what each array task runs).")
  flags.DEFINE_bool("aggregate_only", False, "Train nothing: write the outputs from the runs that have finished.")
  flags.DEFINE_string("sbatch", "", "Options for both sbatch submissions, e.g. \"--partition=gpu --gres=gpu:1\".")


def rerun_command(argv: Sequence[str], module: str, *extra: str) -> list[str]:
  """``python -m module`` with ``argv``'s flags but the launcher's own (``--flag=value`` or ``--flag value``),
  and ``extra``."""
  kept, args = [], list(argv[1:])
  while args:
    arg = args.pop(0)
    name = arg.lstrip("-").split("=", 1)[0]
    if arg.startswith("-") and (name in _OWN_FLAGS or (name.startswith("no") and name[2:] in _OWN_FLAGS)):
      if "=" not in arg and name in _VALUED_FLAGS and args:
        args.pop(0)  # its value, given as the next word
      continue
    kept.append(arg)
  return [sys.executable, "-m", module, *kept, *extra]


def write_slurm_scripts(folder: str, name: str, stages: Sequence[Sequence[str]],
                        command: Sequence[str]) -> tuple[list[str], str]:
  """One job-array script per stage (``runs_<i>.sbatch``: task j trains ``stages[i][j]``), and
  ``aggregate.sbatch``, in ``folder``; returns their paths."""
  os.makedirs(folder, exist_ok=True)
  quoted = " ".join(shlex.quote(c) for c in command)
  header = [f"#SBATCH --chdir={shlex.quote(os.getcwd())}", "set -euo pipefail"]
  arrays = []
  for i, runs in enumerate(stages):
    path = os.path.join(folder, f"runs_{i}.sbatch")
    _write(path, [
        f"#SBATCH --job-name={name}_{i}", f"#SBATCH --array=0-{len(runs) - 1}",
        f"#SBATCH --output={os.path.join(folder, '%A_%a.log')}", *header,
        f"runs=({' '.join(shlex.quote(r) for r in runs)})",
        "# Each task is one resumable run: a requeued or resubmitted task resumes from its last checkpoint.",
        f'exec {quoted} --task="${{runs[$SLURM_ARRAY_TASK_ID]}}"'])
    arrays.append(path)
  aggregate = os.path.join(folder, "aggregate.sbatch")
  _write(aggregate, [f"#SBATCH --job-name={name}_aggregate",
                     f"#SBATCH --output={os.path.join(folder, '%j_aggregate.log')}", *header,
                     f"exec {quoted} --aggregate_only"])
  return arrays, aggregate


def _write(path: str, lines: Sequence[str]) -> None:
  with open(path, "w") as f:
    f.write("\n".join(["#!/usr/bin/env bash", *lines]) + "\n")


def submit_slurm(output_dir: str, name: str, stages: Sequence[Sequence[str]], command: Sequence[str],
                 sbatch_options: str = "", log: Callable[[str], None] = print) -> None:
  """Submits each stage's runs as one job array, each stage after the one before has succeeded
  (``afterok``: a later stage starts from an earlier one's output), and the aggregation after the last
  (``afterany``). Empty stages are dropped."""
  stages = [list(runs) for runs in stages if runs]
  folder = os.path.join(output_dir, SLURM_DIR)
  arrays, aggregate = write_slurm_scripts(folder, name, stages, command)
  options = shlex.split(sbatch_options)
  dry = os.environ.get(DRY_RUN_ENVIRONMENT, "0") == "1"

  def sbatch(*args) -> str:
    call = ["sbatch", "--parsable", *options, *args]
    if dry:
      log("would run: " + " ".join(shlex.quote(c) for c in call))
      return f"JOB{len(jobs)}"
    try:
      done = subprocess.run(call, capture_output=True, text=True, check=False)
    except FileNotFoundError:
      raise OSError("--launcher=slurm needs sbatch on PATH (run it on the cluster's login node)") from None
    if done.returncode != 0:
      lines = (done.stderr or done.stdout).strip().splitlines()
      raise OSError(f"sbatch failed ({done.returncode}): {lines[-1] if lines else 'no output'}")
    return done.stdout.strip().split(";")[0]

  jobs = []
  for array in arrays:
    jobs.append(sbatch(*([f"--dependency=afterok:{jobs[-1]}"] if jobs else []), array))
  after = sbatch(f"--dependency=afterany:{jobs[-1]}", aggregate)
  runs = [run for stage in stages for run in stage]
  log(f"submitted {len(runs)} runs ({', '.join(runs)}) as job array{'s' if len(jobs) > 1 else ''} "
      f"{', '.join(jobs)}, the aggregation as job {after}; logs in {folder}")
