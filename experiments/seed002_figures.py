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


def cell_table(rows: pd.DataFrame) -> dict:
  """``{(race, gender): (faces, misclassified)}`` of a face set (columns race, gender, label, predicted):
  every figure below is a function of these counts."""
  wrong = (rows.predicted != rows.label).to_numpy()
  table = {}
  for (race, gender), index in rows.groupby(["race", "gender"]).indices.items():
    table[(race, gender)] = (len(index), int(wrong[index].sum()))
  return table


def _rate(cells: dict, keep) -> tuple[float, float]:
  """(share misclassified, share correct) of the faces of the cells that ``keep(race, gender)`` picks."""
  faces = sum(n for (r, g), (n, _) in cells.items() if keep(r, g))
  wrong = sum(w for (r, g), (_, w) in cells.items() if keep(r, g))
  if not faces:
    return float("nan"), float("nan")
  return wrong / faces, 1 - wrong / faces


def figures_of_cells(cells: dict) -> dict:
  """The seed's figures from ``cell_table`` counts:

    sex/*                 Figure 5: female against male, every face
    race/<race>/*         Figure 6: each race against White, every face
    female_race/<race>/*  Figure 7: the same among women only
    women/<race>/error_rate  each race's women called men
  with ``error_rate`` (the seed's FPR) of each side, ``fpr_difference`` and ``disparate_impact``, and
  the misclassified counts of each sex."""
  out = {}

  def compare(prefix, protected, privileged):
    p, acc_p = _rate(cells, protected)
    q, acc_q = _rate(cells, privileged)
    out[f"{prefix}/error_rate"] = p
    out[f"{prefix}/privileged_error_rate"] = q
    out[f"{prefix}/fpr_difference"] = p - q
    out[f"{prefix}/disparate_impact"] = acc_p / acc_q if acc_q > 0 else float("nan")

  compare("sex", lambda r, g: g == PROTECTED_GENDER, lambda r, g: g == PRIVILEGED_GENDER)
  for gender in (PROTECTED_GENDER, PRIVILEGED_GENDER):
    out[f"sex/misclassified_{gender}"] = sum(w for (_, g), (_, w) in cells.items() if g == gender)
    out[f"sex/faces_{gender}"] = sum(n for (_, g), (n, _) in cells.items() if g == gender)
  races = sorted({r for r, _ in cells})
  for race in races:
    if race == PRIVILEGED_RACE:
      continue
    compare(f"race/{race}", lambda r, g, race=race: r == race, lambda r, g: r == PRIVILEGED_RACE)
    compare(f"female_race/{race}", lambda r, g, race=race: r == race and g == PROTECTED_GENDER,
            lambda r, g: r == PRIVILEGED_RACE and g == PROTECTED_GENDER)
  for race in races:
    out[f"women/{race}/error_rate"] = _rate(cells, lambda r, g, race=race: r == race and g == PROTECTED_GENDER)[0]
  out["accuracy"] = _rate(cells, lambda r, g: True)[1]
  return out


def comparisons(rows: pd.DataFrame) -> dict:
  """``figures_of_cells`` of a face set."""
  return figures_of_cells(cell_table(rows))


def intervals(rows: pd.DataFrame, seed: int = 0, resamples: int = RESAMPLES) -> dict:
  """95 % percentile bootstrap interval of every figure of ``comparisons``, faces resampled with
  replacement within each race x gender cell so that every resample keeps the set's design. Only
  whether a face is misclassified enters a figure, so a cell's resampled misclassified count is a
  Binomial(faces, its share misclassified) draw: the same distribution, without drawing faces."""
  rng = np.random.default_rng(seed)
  cells = cell_table(rows)
  keys = list(cells)
  faces = np.array([cells[k][0] for k in keys])
  shares = np.array([cells[k][1] for k in keys]) / faces
  wrong = rng.binomial(faces, shares, size=(resamples, len(keys)))
  draws = [figures_of_cells({k: (n, int(w)) for k, n, w in zip(keys, faces, row)}) for row in wrong]
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
