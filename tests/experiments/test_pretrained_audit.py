"""``python -m experiments.pretrained_audit`` as a user types it: a short run on the first UTKFace faces writes
the table with the rows it promises and each model's report; bad input is one ``error:`` line.

Needs the TF.js models (the session fixture of ``tests/models/conftest.py``: fetched once, or skipped
saying why) and ``../shared/data/UTKFace.tar.gz`` (skipped where it is absent).
"""

import csv
import json
import os
import subprocess
import sys

import pytest

from tests.models.conftest import human_models_dir  # pylint: disable=unused-import  (the fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCHIVE = os.environ.get("FAIRJAX_UTKFACE") or os.path.join(ROOT, "..", "shared", "data", "UTKFace.tar.gz")
MANUAL_DIR = os.path.relpath(os.path.dirname(ARCHIVE), ROOT) if ARCHIVE.endswith(".tar.gz") else ARCHIVE
RESULTS = os.path.join(ROOT, "experiments", "results", "pretrained_audit.md")
RACES = ("White", "Black", "Asian", "Indian", "Others")

needs_utkface = pytest.mark.skipif(not os.path.exists(ARCHIVE), reason=f"UTKFace is not at {ARCHIVE}")


def _run(args, models_dir, timeout=900):
  env = {**os.environ, "FAIRJAX_HUMAN_MODELS": models_dir}
  return subprocess.run([sys.executable, "-m", "experiments.pretrained_audit", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


@needs_utkface
@pytest.mark.slow
def test_a_short_run_writes_the_table_and_every_report(human_models_dir, tmp_path):
  before = os.path.getmtime(RESULTS) if os.path.exists(RESULTS) else None
  out = os.path.relpath(tmp_path / "audit", ROOT)
  done = _run([f"--manual_dir={MANUAL_DIR}", f"--output_dir={out}", "--limit=48", "--batch_size=16",
               "--models=gear,ssrnet_gender_imdb", "--margins=0,0.25"], human_models_dir)
  assert done.returncode == 0, done.stderr[-3000:]
  folder = tmp_path / "audit"
  text = (folder / "pretrained_audit.md").read_text()
  labels = ["gear", "ssrnet_gender_imdb", "ssrnet_gender_imdb (margin 0.25)"]
  for heading in ("## Gender accuracy by race x gender (%)", "## Gender accuracy among women, by age band (%)",
                  "## Age error by race x gender", "## gear: race confusion by gender"):
    assert heading in text
  assert "| group | n | seed 001 | " + " | ".join(labels) + " |" in text
  assert "| overall | 48 | 78.0 |" in text and "| men |" in text and "| women |" in text
  assert "Trained on UTKFace (in-distribution here): gear" in text
  assert "out of distribution): ssrnet_gender_imdb." in text
  assert "the first 48 of the archive" in text and "Wall time:" in text
  assert f"Command: `python -m experiments.pretrained_audit --manual_dir={MANUAL_DIR}" in text

  with open(folder / "gear" / "predictions.csv") as f:
    predictions = list(csv.DictReader(f))
  assert len(predictions) == 48
  present = {(RACES[int(r["race"])], "men" if r["gender"] == "0" else "women") for r in predictions}
  for race, gender in present:
    assert f"| {race} {gender} |" in text

  with open(folder / "pretrained_audit.csv") as f:
    rows = list(csv.DictReader(f))
  assert {r["table"] for r in rows} == {"gender_accuracy", "women_gender_accuracy_by_age", "age_error",
                                        "race_confusion"}
  assert {r["model"] for r in rows if r["table"] == "gender_accuracy"} == set(labels)
  assert {r["model"] for r in rows if r["table"] in ("age_error", "race_confusion")} == {"gear"}
  overall = {r["model"]: float(r["value"]) for r in rows if r["table"] == "gender_accuracy" and r["group"] == "overall"}
  for label, name in zip(labels, ("gear", "ssrnet_gender_imdb", "ssrnet_gender_imdb_margin0.25")):
    summary = json.loads((folder / name / "report" / "utkface" / "summary.json").read_text())
    assert summary["metrics"]["gender/accuracy"] == pytest.approx(overall[label])  # the evaluator agrees
    assert (folder / name / "report" / "report.md").exists()
    assert (folder / name / "gender_by_age_band" / "by_group.csv").exists()
  assert sum(int(r["value"]) for r in rows if r["table"] == "race_confusion") == 48
  # a test run (--limit) leaves the measured table alone
  assert (os.path.getmtime(RESULTS) if os.path.exists(RESULTS) else None) == before


@pytest.mark.parametrize("args,models,message", [
    (["--output_dir={out}"], "fixture", "error: flag --manual_dir=None: Flag --manual_dir must have a value"),
    (["--manual_dir={tmp}/nowhere", "--output_dir={out}"], "fixture", "error: UTKFace not found"),
    (["--manual_dir=" + MANUAL_DIR, "--output_dir={out}"], "empty", "error: TF.js model 'gear' not found"),
    (["--manual_dir=" + MANUAL_DIR, "--output_dir={out}", "--models=vgg"], "fixture", "error: --models: unknown"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(human_models_dir, tmp_path, args, models, message):
  if "UTKFace not found" not in message and "--manual_dir=None" not in message and not os.path.exists(ARCHIVE):
    pytest.skip(f"UTKFace is not at {ARCHIVE}")
  empty = tmp_path / "no_models"
  empty.mkdir()
  out = tmp_path / "out"
  done = _run([a.format(out=out, tmp=tmp_path) for a in args], str(empty) if models == "empty" else human_models_dir,
              timeout=300)
  assert done.returncode == 1
  lines = done.stderr.strip().splitlines()
  assert lines[-1].startswith(message), done.stderr[-2000:]
  assert not out.exists()
