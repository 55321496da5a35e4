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


def test_comparison_table_sets_before_beside_after():
  metadata = pd.DataFrame({"age": [3, 25, 25, 70], "gender": [0, 0, 0, 1], "race": [0, 0, 1, 2]})
  before = describe.dataset_stats(metadata, [])
  plan = pd.DataFrame({"source_index": [0, 1, 2, 3, 3, 3], "augment_seed": [-1, -1, -1, -1, 0, 1],
                       "age": [3, 25, 25, 70, 70, 70], "gender": [0, 0, 0, 1, 1, 1], "race": [0, 0, 1, 2, 2, 2]})
  after = describe.dataset_stats(plan, [])
  assert after["augmented_copies"] == 2 and after["distinct_images"] == 4 and before["augmented_copies"] == 0
  table = describe.comparison_table(before, after).set_index(["breakdown", "value"])
  assert table.loc[("total", "examples"), ["before", "after"]].tolist() == [4, 6]
  female = table.loc[("gender", "female")]
  assert (female.before, female.after, female.before_share, female.after_share, female.ratio) == (1, 3, 0.25, 0.5, 3.0)
  assert table.loc[("age_band", "70-79"), "after"] == 3 and table.loc[("race_x_gender", "Asian female"), "after"] == 3
  assert table.loc[("spread", "race_x_gender max"), ["before", "after"]].tolist() == [2, 3]
  assert table.loc[("spread", "race_x_gender min"), "before"] == 0  # empty cells count
  markdown = describe.markdown_table(describe.comparison_table(before, after))
  assert "| gender | female | 1 | 3 | 25.0% | 50.0% | 3.00 |" in markdown


def _run(tmp_path, *flags):
  return subprocess.run([sys.executable, "-m", "fairjax.data", "--dataset=synthetic_faces", *flags,
                         f"--output_dir={tmp_path}"], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_command_compares_a_rebalanced_set_with_the_original(tmp_path):
  result = _run(tmp_path, "--num_examples=300", "--rebalance=race_first")
  assert result.returncode == 0, result.stderr
  before = json.loads((tmp_path / "stats_before.json").read_text())
  after = json.loads((tmp_path / "stats.json").read_text())
  assert before["num_examples"] == 300 and after["augmented_copies"] > 0
  assert describe.spread(after["race_x_gender"])[1] <= round(300 / 10)  # no pair above the mean pair size
  assert describe.spread(after["race_x_gender"])[0] > describe.spread(before["race_x_gender"])[0]
  table = pd.read_csv(tmp_path / "comparison.csv")
  assert table.loc[table.value == "examples", "after"].item() == after["num_examples"]
  heading = "# synthetic_faces / train: before and after rebalance race_first"
  assert (tmp_path / "comparison.md").read_text().startswith(heading)
  for name in ("comparison.png", "distributions_before.png", "distributions.png", "samples.png"):
    assert (tmp_path / name).stat().st_size > 10_000


@pytest.mark.slow
def test_command_takes_seed_004_splits(tmp_path):
  result = _run(tmp_path, "--num_examples=400", "--split=EBD")
  assert result.returncode == 0, result.stderr
  stats = json.loads((tmp_path / "stats.json").read_text())
  assert stats["gender"]["male"] == stats["gender"]["female"] > 0
  assert json.loads((tmp_path / "stats_before.json").read_text())["num_examples"] == 400
  assert "seed 004 EBD" in result.stdout
  result = _run(tmp_path / "bad", "--num_examples=40", "--rebalance=gender_first")
  assert result.returncode == 1 and "age_first|race_first" in result.stderr
