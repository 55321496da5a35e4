"""The README's quick start, its first line as typed: install, then the full default run.

A file of its own, so that the suite's longest test (the only full default run, minutes on one core)
is scheduled first and runs on one pytest-xdist worker while the other worker runs the rest, the
README's other commands included (``test_readme.py``).
"""

import json
import os
import re
import subprocess

import pytest

from tests.test_readme import fresh_clone
from tests.test_readme import installed_fairjax
from tests.test_readme import quick_start
from tests.train.test_progress import CPP_NOISE


@pytest.mark.slow
def test_quick_start_first_command_as_typed(tmp_path):
  """The README's first line, unchanged, through bash in a fresh copy: install, then the full default
  run with its relative --workdir. The only full default run in the suite (~6 minutes on 2 cores)."""
  line = quick_start()[0]
  assert line.startswith("python -m pip install -e . && python -m fairjax.main ")
  before = installed_fairjax(tmp_path)
  clone, env = fresh_clone(str(tmp_path))
  result = subprocess.run(["bash", "-c", line], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=1500)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
  assert installed_fairjax(tmp_path) == before, "pip install -e . in the copy re-pointed the user's fairjax"

  assert os.path.exists(os.path.join(clone, "out", "default", "report", "report.md"))
  assert "report.md" in result.stdout
  with open(os.path.join(clone, "out", "default", "report", "test", "summary.json")) as f:
    metrics = json.load(f)["metrics"]
  # The default shows what it is for: a good classifier that is measurably worse on the planted group.
  assert metrics["gender/accuracy"] > 0.8
  assert metrics["gender/race/accuracy_gap"] > 0.05

  # What the terminal (here a pipe) showed: no C++ log lines, whole evaluation lines, the last step.
  training = result.stderr  # pip writes to stdout, bar its own warnings
  assert not CPP_NOISE.search(training), CPP_NOISE.search(training).group(0)
  assert "\r" not in training
  assert len(re.findall(r"^step \d+: validation/loss=\S+, .*validation/gender/race/accuracy_gap=[\d.]+$", training,
                        re.M)) == 8
  assert re.search(r"^100% (\d+)/\1 steps ", training, re.M), training[-2000:]
