"""The UTKFace CLIP experiment: without UTKFace it says so in one error line, and runs its smoke variant with it."""

import json
import os
import subprocess
import sys

import pytest

from experiments import clip_runs
from experiments import clip_utkface
from tests import test_configs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")


def test_without_utkface_it_says_why(monkeypatch, tmp_path):
  monkeypatch.delenv(clip_utkface.ENVIRONMENT, raising=False)
  path, why = clip_utkface.find_utkface(None)
  assert path is None and clip_utkface.ENVIRONMENT in why
  path, why = clip_utkface.find_utkface(str(tmp_path))
  assert path is None and "UTKFace not found" in why
  done = subprocess.run([sys.executable, "-m", "experiments.clip_utkface", f"--output_dir={tmp_path / 'out'}"],
                        cwd=ROOT, env={k: v for k, v in os.environ.items() if k != clip_utkface.ENVIRONMENT},
                        capture_output=True, text=True, timeout=300)
  lines = done.stderr.strip().splitlines()
  assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
  assert lines[-1].startswith("error: no UTKFace") and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_smoke_run_on_utkface(tmp_path):
  manual_dir, why = clip_utkface.find_utkface(os.environ.get(clip_utkface.ENVIRONMENT) or SHARED_DATA)
  if manual_dir is None:
    pytest.skip(why)
  if not os.path.exists(os.path.join(ROOT, "configs", clip_utkface.CONFIG)):
    pytest.skip(f"configs/{clip_utkface.CONFIG} is not there yet")
  out = tmp_path / "clip_utkface"
  done = subprocess.run([sys.executable, "-m", "experiments.clip_utkface", "--smoke", f"--manual_dir={manual_dir}",
                         f"--output_dir={out}"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
  assert done.returncode == 0, done.stderr[-3000:]
  text = (out / "results.md").read_text()
  assert "| zero-shot: ensemble |" in text and "| debiased: calibrated projection |" in text
  # The only smoke run of configs/clip_utkface.py in the suite (test_configs leaves it to this test).
  config = clip_runs.config_of(clip_utkface.CONFIG, "smoke")
  test_configs.check_smoke_report(config, out / "pretrain")
  # The audit read the run's own data section: its summary names that, not the command's defaults.
  options = json.loads((out / "audit" / "summary.json").read_text())["options"]
  assert (options["dataset"], options["image_size"]) == ("utkface", config.data.image_size)
