"""The README's quick start is what CI runs, and its main command works."""

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
  install, run = _quick_start()[0].split(" && ", 1)
  assert "pip install" in install
  args = shlex.split(run)
  assert args[:3] == ["python", "-m", "fairjax.audit"]
  args = [a if not a.startswith("--output_dir=") else f"--output_dir={tmp_path / 'audit'}" for a in args]
  result = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert "equalized_odds_difference" in result.stdout
  assert (tmp_path / "audit" / "summary.json").exists()
