"""Seed 000 §3.3: rebalancing UTKFace by augmenting its scarcest (age, gender, race) cells and randomly
removing from its most abundant ones, in the seed's two orders of priority.

Our reading of the seed. Both approaches work on cells (age, gender, race) and repeat one step: find the
scarcest cell by the approach's priorities and add an augmented copy of a random image of it; find the
most abundant cell and remove a random image of it. A cell with no image cannot be augmented ("si el
grupo no tiene al menos un elemento no se podrá aplicar este proceso").

- Approach 1 (``age_first``): "the balance of ages first and, with equal weight, gender and race". A
  table of counts per age gives the scarcest and the most abundant age; inside that age, the (gender,
  race) combination, taken jointly, with the fewest / most images is the cell to augment / thin.
- Approach 2 (``race_first``): "race, then gender, then age". The seed's ``races_genders`` matrix gives the
  (race, gender) pair with the fewest / most images; its dictionary (gender, race) -> counts per age
  gives that pair's scarcest / most abundant age; its dictionary (race, gender, age) -> images gives
  the image to copy or remove.

So each approach has a *primary* grouping (age; race x gender) that it levels, and a *secondary* one
inside each group (gender x race; age) that decides which cell gives or takes. The seed does not say when
the loop stops, nor how many copies one image may give; we make both explicit:

  target      the size every primary group is brought to: 'mean' (keeps the total when nothing is
              capped), 'median', 'min', 'max' of the groups' sizes, or a number.
  max_factor  a cell may grow to at most ``floor(max_factor * its size)`` rows, so a handful of
              pictures is not copied into hundreds of near-duplicates.

With a fixed target the groups do not interact, and the seed's one-at-a-time loop reduces to leveling
each group on its own: a group above the target loses one row at a time from its currently largest
cell; a group below it gains one copy at a time in its currently smallest cell that is below its cap.
Hence the promise, checked by the tests on UTKFace:

  - every primary group ends with exactly ``min(target, capacity)`` rows, where its capacity is the
    sum of its cells' caps (only a group whose every cell is capped stays short: it is logged);
  - in a group that grew, each cell that received copies ends at its cap or within one of the group's
    smallest uncapped cell; in a group that shrank, each cell that lost rows ends within one of the
    group's largest cell.

Two choices are ours. Ages are binned (``age_bin_width``, 10 years by default, the bands of seed 000
§6.1.2 and of the data command's tables): the seed counts single years, where UTKFace has years with
one or two images (101, 103, 111) that no sensible cap lifts; width 1 is the literal reading. Copies
of a cell are spread over its images (each image gives its cell's quotient of copies, a random subset
one more) rather than drawn with replacement, so no image is copied much more than its neighbours.
"""

import heapq
from typing import Union

from absl import logging
import numpy as np
import pandas as pd

from fairjax.data import plans

# Primary grouping (levelled to the target) and secondary one (which cell gives or takes) per strategy.
STRATEGIES = {
    "age_first": (("age_bin",), ("gender", "race")),
    "race_first": (("race", "gender"), ("age_bin",)),
}
TARGETS = ("mean", "median", "min", "max")


def _target(sizes: np.ndarray, target: Union[str, int, float]) -> int:
  if isinstance(target, str):
    if target not in TARGETS:
      raise ValueError(f"unknown rebalance target {target!r}; known: {', '.join(TARGETS)} or a positive number")
    return max(1, int(round(float(getattr(np, target)(sizes)))))
  if target <= 0:
    raise ValueError(f"the rebalance target must be positive, got {target}")
  return int(round(target))


def _level(counts: np.ndarray, caps: np.ndarray, change: int, tiebreak: np.ndarray) -> np.ndarray:
  """New cell counts after ``change`` one-row steps: +1 to the smallest cell below its cap (change > 0)
  or -1 from the largest non-empty cell (change < 0); ties go by ``tiebreak``."""
  counts = counts.copy()
  sign = 1 if change > 0 else -1
  heap = [(sign * counts[i], tiebreak[i], i) for i in range(len(counts))
          if (counts[i] < caps[i] if sign > 0 else counts[i] > 0)]
  heapq.heapify(heap)
  for _ in range(abs(change)):
    if not heap:
      break
    _, tie, i = heapq.heappop(heap)
    counts[i] += sign
    if (counts[i] < caps[i]) if sign > 0 else (counts[i] > 0):
      heapq.heappush(heap, (sign * counts[i], tie, i))
  return counts


def rebalance(frame: pd.DataFrame, strategy: str = "age_first", seed: plans.Seed = 0, *,
              target: Union[str, int, float] = "mean", max_factor: float = 4.0,
              age_bin_width: int = plans.AGE_BAND_WIDTH) -> pd.DataFrame:
  """A plan of ``frame`` (metadata or plan) rebalanced by seed 000 §3.3's approach ``strategy``.

  Kept rows stay in their order, followed by the new augmented copies (fresh augment seeds). Needs
  known age, gender and race on every row; see the module docstring for the procedure and its promise.
  """
  if strategy not in STRATEGIES:
    raise ValueError(f"unknown rebalance strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
  if max_factor < 1:
    raise ValueError(f"max_factor must be at least 1 (no cell may shrink by augmenting), got {max_factor}")
  if age_bin_width < 1:
    raise ValueError(f"age_bin_width must be a positive number of years, got {age_bin_width}")
  plan = plans.nonempty(plans.as_plan(frame), "the input of rebalance")
  unknown = (plan[list(plans.LABELS)] < 0).any(axis=1)
  if unknown.any():
    raise ValueError(f"rebalance needs known age, gender and race; {int(unknown.sum())} rows have an unknown "
                     f"label (-1): drop them first")
  primary, secondary = STRATEGIES[strategy]
  keys = plan[["gender", "race"]].assign(age_bin=plans.age_band(plan["age"], age_bin_width))
  cells = keys.groupby(list(primary + secondary), sort=True).indices  # cell -> row positions
  names = list(cells)
  sizes = np.array([len(cells[c]) for c in names], np.int64)
  caps = np.floor(max_factor * sizes).astype(np.int64)
  group_of = pd.Series([c[:len(primary)] for c in names]).factorize(sort=True)[0]
  group_sizes = np.bincount(group_of, weights=sizes).astype(np.int64)
  goal = _target(group_sizes, target)
  rng = plans.generator(seed)
  final = sizes.copy()
  tiebreak = rng.permutation(len(names))
  short = []
  for g, size in enumerate(group_sizes):
    members = np.flatnonzero(group_of == g)
    final[members] = _level(sizes[members], caps[members], goal - int(size), tiebreak[members])
    if final[members].sum() < goal:
      short.append(f"{names[members[0]][:len(primary)]}: {final[members].sum()}")
  if short:
    logging.warning("rebalance %s: %d group(s) by %s stay below the target %d, every cell at %.1fx its size: %s",
                    strategy, len(short), "/".join(primary), goal, max_factor, ", ".join(short))
  removed, copied = [], []
  for name, size, new in zip(names, sizes, final):
    rows = cells[name]
    if new < size:
      removed.append(rng.choice(rows, size - new, replace=False))
    elif new > size:
      copied.append(np.resize(rng.permutation(rows), new - size))
  kept = np.setdiff1d(np.arange(len(plan)), np.concatenate(removed)) if removed else np.arange(len(plan))
  copies = plan.iloc[np.concatenate(copied) if copied else []].copy()
  copies["augment_seed"] = plans.fresh_seeds(plan, len(copies))
  return plans.nonempty(pd.concat([plan.iloc[kept], copies], ignore_index=True), f"rebalance {strategy}")
