"""`python -m fairjax.data`: statistics of a data set's labels, and the files the command writes."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from fairjax.data import describe


def test_stats_count_every_breakdown_in_schema_order():
  metadata = pd.DataFrame({"file_name": list("abcdef"), "age": [3, 15, 27, 27, 64, -1],
                           "gender": [0, 1, 1, 0, 1, 0], "race": [0, 4, 1, 1, 2, 0]})
  stats = describe.dataset_stats(metadata, [{"file": "x.jpg", "reason": "no race field"}])
  assert stats["num_examples"] == 6 and stats["skipped"][0]["file"] == "x.jpg"
  assert stats["gender"] == {"male": 3, "female": 3}
  assert list(stats["race"]) == ["White", "Black", "Asian", "Indian", "Others"]
  assert stats["race"]["Black"] == 2 and stats["race"]["Indian"] == 0
  assert stats["age_band"] == {"0-9": 1, "10-19": 1, "20-29": 2, "60-69": 1, "unknown": 1}
  assert stats["race_x_gender"]["Black"] == {"male": 1, "female": 1}


@pytest.mark.slow
def test_command_describes_the_synthetic_set(tmp_path):
  result = subprocess.run([sys.executable, "-m", "fairjax.data", "--dataset=synthetic_faces", "--num_examples=120",
                           f"--output_dir={tmp_path}"], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  stats = json.loads((tmp_path / "stats.json").read_text())
  assert stats["num_examples"] == 120 and sum(stats["gender"].values()) == 120
  assert (tmp_path / "distributions.png").exists() and (tmp_path / "samples.png").exists()


def test_unknown_data_set_is_a_one_line_error(tmp_path):
  result = subprocess.run([sys.executable, "-m", "fairjax.data", "--dataset=mnist", f"--output_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert result.stderr.strip().startswith("error: unknown data set 'mnist'")
