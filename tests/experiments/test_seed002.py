"""Seed 002's figures by hand, the MR2-like draw, and the experiment end to end on smoke runs."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from experiments import seed002_figures as figures

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _faces(cells):
  """A face set from {(race, gender): (faces, misclassified)}; labels are the genders' codes."""
  rows = []
  for (race, gender), (count, wrong) in cells.items():
    label = 0 if gender == "male" else 1
    for i in range(count):
      rows.append({"race": race, "gender": gender, "age": 25, "label": label,
                   "predicted": 1 - label if i < wrong else label})
  return pd.DataFrame(rows)


def test_the_seeds_figures_by_hand():
  faces = _faces({("White", "female"): (4, 1), ("Black", "female"): (4, 3),
                  ("White", "male"): (4, 0), ("Black", "male"): (4, 1)})
  out = figures.comparisons(faces)
  # women 4 of 8 wrong, men 1 of 8: the seed's FPR difference and the disparate impact of a correct gender
  assert out["sex/error_rate"] == 0.5 and out["sex/privileged_error_rate"] == 0.125
  assert out["sex/fpr_difference"] == pytest.approx(0.375)
  assert out["sex/disparate_impact"] == pytest.approx(0.5 / 0.875)
  assert (out["sex/misclassified_female"], out["sex/misclassified_male"]) == (4, 1)
  # Black 4 of 8 wrong against White 1 of 8; among women 3 of 4 against 1 of 4
  assert out["race/Black/fpr_difference"] == pytest.approx(0.375)
  assert out["female_race/Black/fpr_difference"] == pytest.approx(0.5)
  assert out["female_race/Black/disparate_impact"] == pytest.approx(0.25 / 0.75)
  assert out["women/White/error_rate"] == 0.25 and out["women/Black/error_rate"] == 0.75
  low, high = figures.intervals(faces, resamples=200)["sex/fpr_difference"]
  assert low <= 0.375 <= high and high - low > 0.1


def test_the_mr2_like_draw_has_table_1s_design():
  rng = np.random.default_rng(0)
  rows = pd.DataFrame({"race": rng.choice(["White", "Black", "Asian", "Indian"], 2000),
                       "gender": rng.choice(["male", "female"], 2000), "age": rng.integers(1, 90, 2000),
                       "label": 0, "predicted": 0})
  drawn = figures.mr2_like(rows, seed=3)
  assert len(drawn) == 74 and drawn.age.between(20, 35).all()
  counts = drawn.groupby(["race", "gender"]).size().to_dict()
  assert counts == figures.MR2_COUNTS
  assert drawn.index.equals(figures.mr2_like(rows, seed=3).index)  # drawn once: the same faces again
  assert not drawn.index.equals(figures.mr2_like(rows, seed=4).index)
  with pytest.raises(ValueError, match="Black female faces aged 20-35; MR2 has 18"):
    figures.mr2_like(rows[~((rows.race == "Black") & (rows.gender == "female") & (rows.age > 20))])


def test_the_experiment_on_a_smoke_run(tmp_path):
  """The ADS's smoke run (tests/test_configs.py runs the baseline's): trained, its report written with
  the multi-label head read as gender, audited, LIME drawn (the by-group explanations are the explain
  command's, tested in test_after_training.py)."""
  result = subprocess.run(
      [sys.executable, "-m", "experiments.seed002_audit", f"--output_dir={tmp_path}", "--smoke",
       "--models=se_resnet101", "--lime_samples=32", "--explain_methods="],
      capture_output=True, text=True, cwd=ROOT)
  if "UTKFace" in result.stderr and "not found" in result.stderr:
    pytest.skip("UTKFace is not at hand")
  assert result.returncode == 0, result.stderr[-3000:]
  run = tmp_path / "se_resnet101"
  final = json.loads((run / "report" / "final_metrics.json").read_text())
  assert 0 <= final["test/gender/accuracy"] <= 1 and "test/gender/race/accuracy_gap" in final
  table = pd.read_csv(tmp_path / "seed002.csv")
  assert set(table.faces) == {"MR2-like", "test split"} and set(table.model) == {"se_resnet101"}
  test_split = table[table.faces == "test split"].set_index("figure").value
  # the same faces and predictions as the run's own evaluation (51 test faces), up to a near-tie of the smoke
  # model's logits that another batch layout may flip
  assert test_split["accuracy"] == pytest.approx(final["test/gender/accuracy"], abs=2 / 51 + 1e-6)
  assert "| sex/fpr_difference |" in (tmp_path / "seed002.md").read_text()
  assert (run / "lime_mr2_misclassified.png").stat().st_size > 1000

