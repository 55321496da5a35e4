"""The README's quick start is what CI runs, and its main command works."""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quick_start():
  text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
  section = text.split("## Quick start", 1)[1]
  block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
  return [line for line in block.splitlines() if line.strip()]


def test_quick_start_is_two_commands_and_ci_runs_the_test_one_verbatim():
  commands = _quick_start()
  assert len(commands) == 2
  ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
  assert commands[1] in ci.splitlines()
  assert "set -euo pipefail" in ci


@pytest.mark.slow
def test_main_command_runs(tmp_path):
  """The README's first command, as written (the full default run), with its workdir moved to tmp."""
  install, run = _quick_start()[0].split(" && ", 1)
  assert "pip install" in install
  args = shlex.split(run)
  assert args[:3] == ["python", "-m", "fairjax.main"]
  args = [a if not a.startswith("--workdir=") else f"--workdir={tmp_path / 'default'}" for a in args]
  result = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True, timeout=1200,
                          cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "report.md" in result.stdout
  summary = json.loads((tmp_path / "default" / "report" / "test" / "summary.json").read_text())
  metrics = summary["metrics"]
  # The default shows what it is for: a good classifier that is measurably worse on the planted group.
  assert metrics["gender/accuracy"] > 0.8
  assert metrics["gender/race/accuracy_gap"] > 0.05
