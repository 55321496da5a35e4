"""Seed 002's audit figures from per-face predictions, and the MR2-like set drawn from UTKFace's test split.

Seed 002 (§5) reads a gender classifier's outcome as *correct or not*: "true positive was considered
when the gender was predicted correctly", women the protected gender, Europeans the privileged race.
So a group's "FPR" in its Figures 5-7 is the share of the group's faces given the other gender, the
"FPR difference" is that share's difference from the privileged group's (protected minus privileged:
positive when the protected group is worse off), and the disparate impact is the ratio of the two
groups' shares of correct predictions (protected over privileged). Among women only (Figure 7) the
share misclassified is exactly the FPR of "male" as the positive class: women called men.

MR2 (Strohminger et al. 2016) cannot be had; ``mr2_like`` draws its design from UTKFace's test split:
Table 1's counts per race and sex (African/Black 18 F / 14 M, East Asian/Asian 12 F / 8 M,
European/White 11 F / 11 M: 74 faces), ages 20-35 (MR2's means are 25-28, sd 4-5), with a fixed seed.
Every figure comes with a 95 % percentile bootstrap interval over faces, resampled within each group
(74 faces make wide intervals: the seed gives none).
"""

from typing import Mapping

import numpy as np
import pandas as pd

# Table 1: (race, gender) -> faces. UTKFace's race names stand for the seed's descents.
MR2_COUNTS = {("Black", "female"): 18, ("Black", "male"): 14, ("Asian", "female"): 12, ("Asian", "male"): 8,
              ("White", "female"): 11, ("White", "male"): 11}
MR2_AGES = (20, 35)
SEED_RACE_NAMES = {"Black": "African", "Asian": "East Asian", "White": "European"}
PRIVILEGED_RACE, PROTECTED_GENDER, PRIVILEGED_GENDER = "White", "female", "male"
RESAMPLES = 2000


def mr2_like(rows: pd.DataFrame, seed: int = 0, strict: bool = True) -> pd.DataFrame:
  """The MR2-like faces of ``rows`` (columns race, gender, age: names and years), drawn once with
  ``seed``. A cell with too few faces raises ``ValueError`` naming it, or with ``strict=False`` (smoke
  runs' few faces) gives the faces it has."""
  rng = np.random.default_rng(seed)
  low, high = MR2_AGES
  chosen = []
  for (race, gender), count in MR2_COUNTS.items():
    cell = rows.index[(rows.race == race) & (rows.gender == gender) & (rows.age >= low) & (rows.age <= high)]
    if len(cell) < count and not strict:
      count = len(cell)
    elif len(cell) < count:
      raise ValueError(f"the split has {len(cell)} {race} {gender} faces aged {low}-{high}; MR2 has {count}")
    chosen += sorted(rng.choice(np.asarray(cell), count, replace=False).tolist())
  return rows.loc[chosen]


def _error_rate(rows: pd.DataFrame) -> float:
  return float((rows.predicted != rows.label).mean()) if len(rows) else float("nan")


def _accuracy(rows: pd.DataFrame) -> float:
  return float((rows.predicted == rows.label).mean()) if len(rows) else float("nan")


def comparisons(rows: pd.DataFrame) -> dict:
  """The seed's figures of one face set (columns race, gender, label, predicted):

    sex/*                 Figure 5: female against male, every face
    race/<race>/*         Figure 6: each race against White, every face
    female_race/<race>/*  Figure 7: the same among women only
    women/<race>/error_rate  each race's women called men
  with ``error_rate`` (the seed's FPR) of each side, ``fpr_difference`` and ``disparate_impact``, and
  the misclassified counts of each sex."""
  out = {}

  def compare(prefix, protected, privileged):
    p, q = _error_rate(protected), _error_rate(privileged)
    acc_p, acc_q = _accuracy(protected), _accuracy(privileged)
    out[f"{prefix}/error_rate"] = p
    out[f"{prefix}/privileged_error_rate"] = q
    out[f"{prefix}/fpr_difference"] = p - q
    out[f"{prefix}/disparate_impact"] = acc_p / acc_q if acc_q > 0 else float("nan")

  women, men = rows[rows.gender == PROTECTED_GENDER], rows[rows.gender == PRIVILEGED_GENDER]
  compare("sex", women, men)
  out["sex/misclassified_female"] = int((women.predicted != women.label).sum())
  out["sex/misclassified_male"] = int((men.predicted != men.label).sum())
  out["sex/faces_female"], out["sex/faces_male"] = len(women), len(men)
  for race in sorted(set(rows.race) - {PRIVILEGED_RACE}):
    compare(f"race/{race}", rows[rows.race == race], rows[rows.race == PRIVILEGED_RACE])
    compare(f"female_race/{race}", women[women.race == race], women[women.race == PRIVILEGED_RACE])
  for race in sorted(set(rows.race)):
    out[f"women/{race}/error_rate"] = _error_rate(women[women.race == race])
  out["accuracy"] = _accuracy(rows)
  return out


def intervals(rows: pd.DataFrame, seed: int = 0, resamples: int = RESAMPLES) -> dict:
  """95 % percentile bootstrap interval of every figure of ``comparisons``: faces resampled with
  replacement within each race x gender cell, so every resample keeps the set's design."""
  rng = np.random.default_rng(seed)
  cells = [np.flatnonzero(((rows.race == r) & (rows.gender == g)).to_numpy())
           for r, g in sorted(set(zip(rows.race, rows.gender)))]
  draws = []
  for _ in range(resamples):
    picked = np.concatenate([rng.choice(cell, len(cell), replace=True) for cell in cells])
    draws.append(comparisons(rows.iloc[picked]))
  out = {}
  for key in draws[0]:
    values = np.asarray([d[key] for d in draws], np.float64)
    values = values[np.isfinite(values)]
    out[key] = (float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))) if len(values) else \
        (float("nan"), float("nan"))
  return out


# The seed's numbers (MR2, from its text: its figures carry no values), by model and figure key. Of the
# baseline it says only that it "predicted all of the images [of European women] as males".
SEED = {
    "se_resnet101": {"sex/misclassified_female": 23, "sex/misclassified_male": 0,
                     "race/Black/fpr_difference": 0.238, "race/Asian/fpr_difference": 0.064},
    "resnet18": {"women/White/error_rate": 1.0},
}


def table_rows(figures: Mapping[str, dict], bounds: Mapping[str, dict], model: str, face_set: str) -> list:
  """Rows (figure, value, interval, seed) of one model on one face set, in the seed's order."""
  values, ci = figures, bounds
  keys = ["accuracy", "sex/misclassified_female", "sex/misclassified_male", "sex/error_rate",
          "sex/privileged_error_rate", "sex/fpr_difference", "sex/disparate_impact"]
  for prefix in ("race", "female_race"):
    keys += [k for k in values if k.startswith(prefix + "/") and
             k.split("/")[-1] in ("fpr_difference", "disparate_impact")]
  keys += [k for k in values if k.startswith("women/")]
  seed = SEED.get(model, {})
  rows = []
  for key in keys:
    low, high = ci.get(key, (float("nan"), float("nan")))
    rows.append({"model": model, "faces": face_set, "figure": key, "value": values[key], "low": low,
                 "high": high, "seed": seed.get(key, "")})
  return rows
