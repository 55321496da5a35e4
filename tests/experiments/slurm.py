"""A fake ``sbatch`` for the tests of ``--launcher=slurm`` (``experiments/launcher.py``)."""

import os

# sbatch as a cluster would run the jobs, but here and at once: each task of an array in turn (with
# SLURM_ARRAY_TASK_ID), in the script's --chdir, its output where the script's --output says. A job that
# depends on a failed one (afterok) never runs, as SLURM leaves it pending. It logs its arguments, so a
# test sees every submission and its dependency.
FAKE_SBATCH = r"""#!/usr/bin/env bash
set -u
echo "$*" >> "$SBATCH_CALLS"
script="${@: -1}"
option() { sed -n "s/^#SBATCH --$1=//p" "$script" | head -n 1; }
id=$(( $(wc -l < "$SBATCH_CALLS") + 100 ))
after_ok=$(printf '%s\n' "$@" | sed -n 's/^--dependency=afterok://p')
if [[ -n "$after_ok" ]] && grep -qx "$after_ok" "$SBATCH_CALLS.failed" 2>/dev/null; then
  echo "$id"
  exit 0
fi
range=$(option array)
cd "$(option chdir)"
if [[ -n "$range" ]]; then
  for ((i = ${range%-*}; i <= ${range#*-}; i++)); do
    out=$(option output); out=${out//%A/$id}; out=${out//%a/$i}
    SLURM_ARRAY_JOB_ID=$id SLURM_ARRAY_TASK_ID=$i bash "$script" > "$out" 2>&1 || echo "$id" >> "$SBATCH_CALLS.failed"
  done
else
  out=$(option output); out=${out//%j/$id}
  SLURM_JOB_ID=$id bash "$script" > "$out" 2>&1 || echo "$id" >> "$SBATCH_CALLS.failed"
fi
echo "$id"
"""


def fake_sbatch(tmp_path) -> dict:
  """The environment with ``FAKE_SBATCH`` first on PATH; its calls are logged to ``tmp_path/calls``."""
  (tmp_path / "bin").mkdir()
  (tmp_path / "bin" / "sbatch").write_text(FAKE_SBATCH)
  (tmp_path / "bin" / "sbatch").chmod(0o755)
  return {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "SBATCH_CALLS": str(tmp_path / "calls")}
