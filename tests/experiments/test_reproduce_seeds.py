"""``experiments/reproduce_seeds.py``: the table of every seed's headline, as a user runs it."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from experiments import seed_headlines

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def test_every_row_of_the_issue_is_listed_with_a_seed_figure_and_a_source():
  keys = [row.key for row in seed_headlines.ROWS]
  assert len(keys) == len(set(keys))
  for prefix in ("seed000_6.1", "seed000_6.1_curated", "seed000_6.1_curated_age_first", "seed000_6.2",
                 "seed000_6.3", "seed000_6.4", "seed000_6.4_curated", "seed001_age", "seed001_age_x2",
                 "seed001_age_x3", "seed001_gender_all", "seed003_male_female", "seed003_threshold", "seed004_m1"):
    assert prefix in keys
  for row in seed_headlines.ROWS:
    assert bool(row.config) != bool(row.read), row.key  # trained here, or read from another experiment
    assert row.command and row.why and row.size, row.key
    if row.config:
      assert row.command.startswith("python -m fairjax.main --config=configs/" + row.config), row.key
      config = row.build_config("")  # the overrides name keys the config has
      assert config.data.image_size == 64, row.key


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(os.path.join(SHARED_DATA, "UTKFace.tar.gz")), reason="no UTKFace here")
def test_a_smoke_row_is_trained_tabulated_with_its_interval_reused_and_corrected(tmp_path):
  manual_dir = f"--manual_dir={os.path.relpath(SHARED_DATA, tmp_path)}"
  command = [sys.executable, "-m", "experiments.reproduce_seeds", "--smoke", "--rows=seed001_age", manual_dir,
             "--output_dir=out/seeds"]
  run = lambda argv: subprocess.run(argv, cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO},
                                    capture_output=True, text=True, timeout=900)
  result = run(command)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / "out" / "seeds" / "seeds.csv") as f:
    (row,) = list(csv.DictReader(f))
  assert row["key"] == "seed001_age" and row["status"] == ""
  assert float(row["fairjax"]) > 0 and float(row["wall_s"]) > 0
  assert float(row["low"]) <= float(row["fairjax"]) <= float(row["high"])
  assert "| 001 | age MAE in years (test, adults) | 8.400 |" in (tmp_path / "out" / "seeds" / "seeds.md").read_text()
  again = run(command)
  assert again.returncode == 0 and "seed001_age: finished, not trained again" in again.stdout + again.stderr
  # Seed 001's correction models on the same finished run (not trained again).
  corrected = run([sys.executable, "-m", "experiments.seed001_correction", "--smoke", "--rows=seed001_age", manual_dir,
                   "--output_dir=out/seeds"])
  assert corrected.returncode == 0, corrected.stderr[-3000:]
  assert "seed001_age: finished, not trained again" in corrected.stdout
  text = (tmp_path / "out" / "seeds" / "seed001_correction.md").read_text()
  assert "## seed001_age" in text and "| linear |" in text and "| gbt |" in text and "| heuristic |" in text
  assert "neither the correction models nor the heuristic improved" in text
  with open(tmp_path / "out" / "seeds" / "seed001_correction.csv") as f:
    table = list(csv.DictReader(f))
  assert {r["run"] for r in table} == {"seed001_age"} and {r["method"] for r in table} == {"linear", "gbt", "heuristic"}
  overall = [r for r in table if r["race"] == "all"]
  # Every method starts from the same uncorrected MAE: the run's own reported figure.
  assert len(overall) == 3
  for r in overall:
    assert float(r["mae_before"]) == pytest.approx(float(row["fairjax"]), abs=1e-3), r["method"]


def test_a_row_whose_run_is_elsewhere_keeps_the_figure_the_table_held_for_the_same_command(tmp_path):
  rows = [r for r in seed_headlines.ROWS if r.key in ("seed000_6.1", "seed000_6.2", "seed000_6.3")]
  entries = seed_headlines.table_rows(rows, str(tmp_path / "out"))  # no runs here: every row unmeasured
  assert all(e["fairjax"] is None and e["status"].startswith("not run yet") for e in entries)
  entries[0].update(fairjax=0.87, low=0.85, high=0.89, wall_s=1466.7, status="")
  entries[1].update(fairjax=0.76, low=None, high=None, wall_s=None, status="", command="an older command")
  seed_headlines.write(entries, str(tmp_path), ["intro"])
  again = {e["key"]: e for e in seed_headlines.table_rows(rows, str(tmp_path / "out"), str(tmp_path / "seeds.csv"))}
  assert (again["seed000_6.1"]["fairjax"], again["seed000_6.1"]["low"], again["seed000_6.1"]["high"],
          again["seed000_6.1"]["wall_s"], again["seed000_6.1"]["status"]) == (0.87, 0.85, 0.89, 1466.7, "")
  assert again["seed000_6.2"]["fairjax"] is None  # measured by another command: not this row's figure
  assert again["seed000_6.3"]["fairjax"] is None and again["seed000_6.3"]["status"].startswith("not run yet")


def test_unknown_rows_are_one_error_line(tmp_path):
  result = subprocess.run([sys.executable, "-m", "experiments.reproduce_seeds", "--rows=seed009", "--run"],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True)
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert result.returncode == 1 and lines[-1].startswith("error: --rows names unknown rows ['seed009']"), lines


def test_a_session_stopped_by_sigterm_adds_its_time_and_the_run_stays_resumable(monkeypatch, tmp_path):
  """``kill`` of a --run session: its training time is added before the process ends (SystemExit),
  and the handler it set is undone."""
  def train_until_killed(config, workdir):
    del config
    os.makedirs(workdir)
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the signal interrupts this
    raise AssertionError("SIGTERM did not stop the run")

  monkeypatch.setattr(seed_headlines.loop, "train_and_evaluate", train_until_killed)
  monkeypatch.setattr(seed_headlines.loop, "finished", lambda workdir, config: False)
  row = next(r for r in seed_headlines.ROWS if r.key == "seed000_6.1")
  os.makedirs(tmp_path / "out")
  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(SystemExit) as stopped:
    seed_headlines.train(row, str(tmp_path / "out"), "", smoke=True, log=lambda _: None)
  assert stopped.value.code == 128 + signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) == before
  with open(tmp_path / "out" / row.key / seed_headlines.WALL_FILE) as f:
    seconds = json.load(f)["seconds"]
  assert 0.2 <= seconds < 5
