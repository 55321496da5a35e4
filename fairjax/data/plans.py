"""Plans: the rows of a split a training run reads, how often, and which of them are augmented copies.

A plan is a pandas DataFrame with one row per example the run sees in an epoch:

  source_index  int64, the row of the loaded split's metadata (= the index into its ``source``)
  augment_seed  int32, -1 for the original image; k >= 0 for an augmented copy drawn with seed k, unique
                per copy within a plan, so the copy is the same picture every epoch (``augment.py``)
  age, gender, race  int64, the labels copied from the metadata, so treatments and statistics can group
                rows without going back to the source
  weight        optional float64, the row's example weight in the loss (``reweighing.py``); a plan
                without it weighs every row 1, and treatments carry it with the rows they keep or copy

Treatments (``treatments.py``, ``rebalance.py``) take a metadata frame or a plan and return a plan;
``pipeline.train_batches(..., plan=plan)`` reads one. The helpers here are what every treatment shares.
"""

from typing import Iterable, Sequence, Union

import numpy as np
import pandas as pd

LABELS = ("age", "gender", "race")
PLAN_COLUMNS = ("source_index", "augment_seed") + LABELS
WEIGHT = "weight"  # the optional column of example weights
ORIGINAL = -1
AGE_BAND_WIDTH = 10  # seed 000 §6.1.2 stratifies by 10-year bands (as describe.age_band)

Seed = Union[int, Sequence[int]]


def require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
  """Raises a ValueError naming the columns ``what`` needs that ``frame`` lacks."""
  missing = [c for c in columns if c not in frame.columns]
  if missing:
    raise ValueError(f"{what} needs the column(s) {', '.join(missing)}; "
                     f"the frame has {', '.join(map(str, frame.columns))}")


def as_plan(frame: pd.DataFrame) -> pd.DataFrame:
  """The plan of ``frame``: a metadata frame becomes every row once as the original (row i is source
  record i, whatever the frame's index), a plan is returned as a fresh copy in the plan's dtypes."""
  require(frame, LABELS, "a plan")
  if "source_index" in frame.columns:
    source_index = frame["source_index"].to_numpy(np.int64)
    seeds = (frame["augment_seed"].to_numpy(np.int32) if "augment_seed" in frame
             else np.full(len(frame), ORIGINAL, np.int32))
  else:
    source_index = np.arange(len(frame), dtype=np.int64)
    seeds = np.full(len(frame), ORIGINAL, np.int32)
  plan = pd.DataFrame({"source_index": source_index, "augment_seed": seeds})
  for label in LABELS:
    plan[label] = frame[label].to_numpy(np.int64)
  if WEIGHT in frame.columns:
    plan[WEIGHT] = frame[WEIGHT].to_numpy(np.float64)
  return plan


def generator(seed: Seed) -> np.random.Generator:
  """The one way treatments turn a seed (an int, or a sequence of ints such as (run seed, stage)) into
  randomness, so a treatment's output is a pure function of its input and seed."""
  return np.random.default_rng(seed)


def nonempty(plan: pd.DataFrame, what: str) -> pd.DataFrame:
  """``plan`` with a fresh RangeIndex; an empty result is an error, since no run can train on it."""
  if plan.empty:
    raise ValueError(f"{what} left no examples")
  return plan.reset_index(drop=True)


def fresh_seeds(plan: pd.DataFrame, count: int) -> np.ndarray:
  """``count`` augment seeds no row of ``plan`` uses yet: treatments applied one after another (say
  oversampling, then rebalancing) never give two copies the same picture."""
  start = max(int(plan["augment_seed"].max()) + 1, 0) if len(plan) else 0
  if start + count > np.iinfo(np.int32).max:
    raise ValueError(f"{count} more augment seeds would overflow int32 (next free seed {start})")
  return np.arange(start, start + count, dtype=np.int32)


def with_copies(plan: pd.DataFrame, rows: np.ndarray, augment: bool) -> pd.DataFrame:
  """``plan`` followed by copies of its ``rows`` (positions, repeats allowed): augmented copies with
  fresh seeds, or exact repeats that keep the row's own seed."""
  copies = plan.iloc[np.asarray(rows, np.int64)].copy()
  if augment:
    copies["augment_seed"] = fresh_seeds(plan, len(copies))
  return pd.concat([plan, copies], ignore_index=True)


def age_band(age, width: int = AGE_BAND_WIDTH) -> np.ndarray:
  """Lower end of each age's ``width``-year band (0, 10, ... for width 10); -1 for an unknown age."""
  age = np.asarray(age, np.int64)
  return np.where(age < 0, -1, (age // width) * width)


def strata(frame: pd.DataFrame, by: Sequence[str]) -> np.ndarray:
  """Stratum id of each row for the keys ``by``: column names, or 'age_band' (10-year bands)."""
  if not by:
    return np.zeros(len(frame), np.int64)
  keys = {}
  for name in by:
    if name == "age_band":
      require(frame, ["age"], "stratifying by 'age_band'")
      keys[name] = age_band(frame["age"])
    else:
      require(frame, [name], f"stratifying by {name!r}")
      keys[name] = frame[name].to_numpy()
  return pd.DataFrame(keys).groupby(list(keys), sort=True).ngroup().to_numpy(np.int64)
