"""A small built-in example: a gender classifier that errs more often on some groups.

It lets a new user run the audit before they have predictions of their own, and shows the input format
(`example_input.csv` is written beside the report). The population follows UTKFace's race proportions
and the classifier's error rates grow for under-represented groups and for women, as the seeds found.
"""

import numpy as np
import pandas as pd

# UTKFace's race counts (White, Black, Asian, Indian, Others) and women's share, from its README.
RACE_COUNTS = np.array([10078, 4526, 3434, 3975, 1692])
FEMALE_SHARE = 11314 / 23705
# Logit shift that makes the simulated classifier less sure of each race's and gender's faces.
RACE_DIFFICULTY = np.array([0.0, 0.9, 0.5, 0.6, 1.0])
FEMALE_DIFFICULTY = 0.4


def make_example(num_rows: int = 5000, seed: int = 0) -> pd.DataFrame:
  """Rows of (race, gender, y = gender, p = score of 'female', y_hat = p >= 0.5)."""
  rng = np.random.default_rng(seed)
  race = rng.choice(len(RACE_COUNTS), size=num_rows, p=RACE_COUNTS / RACE_COUNTS.sum())
  gender = (rng.random(num_rows) < FEMALE_SHARE).astype(int)
  confidence = 2.2 - RACE_DIFFICULTY[race] - FEMALE_DIFFICULTY * gender
  logit = np.where(gender == 1, 1.0, -1.0) * confidence + rng.normal(0.0, 1.5, num_rows)
  score = 1.0 / (1.0 + np.exp(-logit))
  return pd.DataFrame({
      "race": race,
      "gender": gender,
      "y": gender,
      "p": np.round(score, 4),
      "y_hat": (score >= 0.5).astype(int),
  })
