"""The seeds' data treatments, on labels only: each takes a metadata frame or a plan and returns plans.

  stratified_subset / _split / _kfold  seed 000 §6.1.2 (8,000 images, proportional per 10-year band x
                                       gender, 80:20) and §8.1.2 (stratified K-fold)
  min_age, oversample                  seed 001 (drop ages under 16; repeat everyone 60+ twice or three times)
  bias_splits                          seed 004 §3.1 (OD, BD and its complement, EBD)
  gender_set                           seed 004 §3.2's separate gender data set (for the unlearnt head)
  rebalance                            seed 000 §3.3 (``rebalance.py``)
  oversample_groups                    group up-sampling: every race (or race x gender) up to the largest
  reweigh                              Kamiran & Calders' example weights (``reweighing.py``)

A plan (``plans.py``) lists source rows and augment seeds, so a treatment never touches an image:
augmented copies are drawn on the accelerator by ``augment.py``. Every treatment is a pure function of
its input and ``seed``. The plan-to-plan treatments are registered by name (``get``, ``apply``) so that
experiment configs can list them; each registered treatment has named options with defaults.

Splitting is by source image: the copies of an image always land in the part its original lands in, so
an augmented copy of a test image never trains.
"""

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

from absl import logging
import numpy as np
import pandas as pd

from fairjax.data import filters
from fairjax.data import plans
from fairjax.data import rebalance as rebalance_lib
from fairjax.data import reweighing
from fairjax.registry import Registry

rebalance = rebalance_lib.rebalance
MALE, FEMALE = 0, 1
STRATIFY_BY = ("age_band", "gender")


def _deal(num: int, fractions: Sequence[float]) -> np.ndarray:
  """Part of each of ``num`` ordered positions, so that every prefix holds each part's share to within
  one: a block of consecutive positions (a stratum) is then split in proportion to within two."""
  shares = np.asarray(fractions, np.float64)
  if shares.ndim != 1 or len(shares) == 0 or np.any(shares < 0) or shares.sum() <= 0:
    raise ValueError(f"fractions must be non-negative with a positive sum, got {list(fractions)}")
  shares = list(shares / shares.sum())
  counts = [0] * len(shares)
  parts = np.empty(num, np.int64)
  for position in range(num):
    part = max(range(len(shares)), key=lambda k: shares[k] * (position + 1) - counts[k])
    counts[part] += 1
    parts[position] = part
  return parts


def _assign(plan: pd.DataFrame, fractions: Sequence[float], by: Sequence[str], seed: plans.Seed) -> np.ndarray:
  """Part of each row: source images are shuffled within their strata, strata in a random order, and
  dealt to the parts in proportion; a row goes where its source image goes."""
  first = plan.drop_duplicates("source_index")
  stratum = plans.strata(first, by)
  rng = plans.generator(seed)
  stratum_order = rng.permutation(stratum.max() + 1 if len(stratum) else 0)
  order = np.lexsort((rng.random(len(first)), stratum_order[stratum]))
  part_of_first = np.empty(len(first), np.int64)
  part_of_first[order] = _deal(len(first), fractions)
  part_of_source = pd.Series(part_of_first, index=first["source_index"].to_numpy())
  return part_of_source.loc[plan["source_index"].to_numpy()].to_numpy()


def stratified_subset(frame: pd.DataFrame, n: int, by: Sequence[str] = STRATIFY_BY,
                      seed: plans.Seed = 0) -> pd.DataFrame:
  """``n`` source images (with their copies, if ``frame`` is a plan) drawn in proportion to the strata of
  ``by``; seed 000 §6.1.2 took 8,000 UTKFace images this way per 10-year band x gender."""
  plan = plans.nonempty(plans.as_plan(frame), "the input of stratified_subset")
  num_sources = plan["source_index"].nunique()
  if not 0 < n <= num_sources:
    raise ValueError(f"stratified_subset needs 0 < n <= {num_sources} (the source images at hand), got {n}")
  parts = _assign(plan, [n, num_sources - n], by, seed)
  return plans.nonempty(plan[parts == 0], "stratified_subset")


def stratified_split(frame: pd.DataFrame, fractions: Mapping[str, float], by: Sequence[str] = STRATIFY_BY,
                     seed: plans.Seed = 0) -> dict[str, pd.DataFrame]:
  """Named parts (e.g. {'train': 0.8, 'test': 0.2}, seed 000 §6.1.2) with every stratum of ``by`` split in
  the same proportions; fractions are normalised. No part may come out empty."""
  plan = plans.nonempty(plans.as_plan(frame), "the input of stratified_split")
  names = list(fractions)
  parts = _assign(plan, [fractions[name] for name in names], by, seed)
  return {name: plans.nonempty(plan[parts == k], f"stratified_split part {name!r} ({fractions[name]})")
          for k, name in enumerate(names)}


def stratified_kfold(frame: pd.DataFrame, k: int, by: Sequence[str] = STRATIFY_BY,
                     seed: plans.Seed = 0) -> list[dict[str, pd.DataFrame]]:
  """Seed 000 §8.1.2's stratified K-fold: ``k`` {'train', 'test'} pairs whose test parts partition the
  source images, each with the strata of ``by`` in the proportions of the whole."""
  if k < 2:
    raise ValueError(f"stratified_kfold needs k >= 2, got {k}")
  plan = plans.nonempty(plans.as_plan(frame), "the input of stratified_kfold")
  if plan["source_index"].nunique() < k:
    raise ValueError(f"stratified_kfold needs at least k={k} source images, got {plan['source_index'].nunique()}")
  fold = _assign(plan, [1.0] * k, by, seed)
  return [{"train": plan[fold != i].reset_index(drop=True), "test": plan[fold == i].reset_index(drop=True)}
          for i in range(k)]


def min_age(frame: pd.DataFrame, age: int = 16) -> pd.DataFrame:
  """Training rows aged ``age`` or more. To drop the under-16s from every split, as seed 001 did, use the
  ``min_age`` filter (``filters.py``); this treatment narrows the training plan alone."""
  plan = plans.as_plan(frame)
  return plans.nonempty(plan[filters.min_age(plan, age)], f"min_age {age}")


COPY_KINDS = ("repeat", "augment")


def oversample(frame: pd.DataFrame, min_age: int = 60, factor: int = 2, copies: str = "repeat") -> pd.DataFrame:
  """Every row aged ``min_age`` or more ``factor`` times in all. Seed 001 "copied all photos of people
  over 60, then tried tripling them" (MAE 8.4 -> 7.9 with two, -0.1 more with three): exact repeats,
  ``copies='repeat'`` (the copy keeps its row's augment seed); ``'augment'`` makes augmented copies."""
  if copies not in COPY_KINDS:
    raise ValueError(f"unknown copy kind {copies!r}; known: {', '.join(COPY_KINDS)}")
  if int(factor) != factor or factor < 1:
    raise ValueError(f"oversample factor must be a whole number >= 1, got {factor}")
  plan = plans.nonempty(plans.as_plan(frame), "the input of oversample")
  old = np.flatnonzero(plan["age"].to_numpy() >= min_age)
  if len(old) == 0:
    raise ValueError(f"oversample: no row is aged {min_age} or more")
  return plans.with_copies(plan, np.tile(old, int(factor) - 1), augment=copies == "augment")


def oversample_groups(frame: pd.DataFrame, seed: plans.Seed = 0, attributes: Sequence[str] = ("race",),
                      max_factor: float = 4.0, copies: str = "augment") -> pd.DataFrame:
  """Every group of ``attributes`` (race, or race and gender: a group per combination of their known
  values) brought up to the largest group's size by copies of its own rows, and to at most
  ``max_factor`` times its size: group up-sampling (Idrissi et al. 2022), the resampling counterpart of
  the ``balanced_weights`` objective term. Nothing is removed. Each row of a group is copied the same
  number of times and the remainder goes to rows drawn at random without repeats, so copies spread
  evenly; ``copies='augment'`` (default) gives them fresh augment seeds, ``'repeat'`` keeps the row's.
  Rows of an unknown attribute are kept and not copied."""
  if copies not in COPY_KINDS:
    raise ValueError(f"unknown copy kind {copies!r}; known: {', '.join(COPY_KINDS)}")
  if not max_factor >= 1:
    raise ValueError(f"oversample_groups: max_factor must be a number >= 1, got {max_factor!r}")
  plan = plans.nonempty(plans.as_plan(frame), "the input of oversample_groups")
  attributes = list(attributes)
  plans.require(plan, attributes, "oversample_groups")
  values = plan[attributes].to_numpy(np.int64)
  known = np.flatnonzero((values >= 0).all(1))
  if len(known) == 0:
    raise ValueError(f"oversample_groups: no row has known {', '.join(attributes)}")
  _, group = np.unique(values[known], axis=0, return_inverse=True)
  group = group.reshape(-1)
  sizes = np.bincount(group)
  rng = plans.generator(seed)
  chosen = []
  for g, size in enumerate(sizes):
    rows = known[group == g]
    extra = int(min(sizes.max(), np.floor(max_factor * size))) - size
    if extra > 0:
      chosen += [np.tile(rows, extra // size), rng.choice(rows, extra % size, replace=False)]
  if not chosen:
    return plan
  return plans.with_copies(plan, np.sort(np.concatenate(chosen)), augment=copies == "augment")


def _equalise(plan: pd.DataFrame, bins: np.ndarray, rng: np.random.Generator, low: int, width: int) -> pd.DataFrame:
  """Seed 004's EBD: in each age bin as many women as men, the larger side randomly downsampled."""
  keep = []
  for b in np.unique(bins):
    in_bin = bins == b
    men = np.flatnonzero(in_bin & (plan["gender"].to_numpy() == MALE))
    women = np.flatnonzero(in_bin & (plan["gender"].to_numpy() == FEMALE))
    n = min(len(men), len(women))
    if n == 0:
      logging.warning("bias_splits: EBD skips ages %d-%d: %d men, %d women", low + b * width,
                      low + (b + 1) * width - 1, len(men), len(women))
      continue
    keep += [rng.choice(men, n, replace=False), rng.choice(women, n, replace=False)]
  if not keep:
    raise ValueError("bias_splits: no age bin has both men and women, so EBD is empty")
  return plan.iloc[np.sort(np.concatenate(keep))].reset_index(drop=True)


def bias_splits(frame: pd.DataFrame, seed: plans.Seed = 0, *, ages: tuple[int, int] = (16, 72),
                young: tuple[int, int] = (16, 35), old: tuple[int, int] = (40, 70), bin_width: int = 4,
                ebd_fraction: float = 0.0) -> dict[str, pd.DataFrame]:
  """Seed 004 §3.1's data sets, from any frame with age and gender.

  OD             every row with ``ages[0] <= age < ages[1]``: seed 004's age range 16-72 cut into 14 bins
                 of 4 years covers ages 16-71, so 72 itself is left out (``ages`` is half-open).
  BD             women aged ``young`` (16-35) and men aged ``old`` (40-70), both inclusive.
  BD_complement  the swapped pairing: men aged ``young`` and women aged ``old`` ("a complement of this
                 dataset is created for testing the model to see if it unlearns this bias").
  EBD            equal numbers of men and women in each ``bin_width``-year bin of OD; a bin lacking one
                 gender is logged and skipped.

  The seed builds each set from all of OD. To train on BD and evaluate on EBD without sharing images,
  set ``ebd_fraction``: that share of OD's source images (stratified by bin x gender) is held out and
  EBD is drawn from it alone, BD and BD_complement from the rest, so the three are disjoint.
  """
  plans.require(frame, ["age", "gender"], "bias_splits")
  if not 0.0 <= ebd_fraction < 1.0:
    raise ValueError(f"ebd_fraction must lie in [0, 1), got {ebd_fraction}")
  plan = plans.as_plan(frame if "race" in frame else frame.assign(race=-1))  # race is carried, not used
  age, gender = plan["age"].to_numpy(), plan["gender"].to_numpy()
  od = plans.nonempty(plan[(age >= ages[0]) & (age < ages[1]) & (gender >= 0)],
                      f"bias_splits OD (ages {ages[0]}-{ages[1] - 1})")
  rng = plans.generator(seed)
  pool, rest = od, od
  if ebd_fraction > 0:
    od_bins = od.assign(age_bin=(od["age"] - ages[0]) // bin_width)
    part = _assign(od_bins, [ebd_fraction, 1.0 - ebd_fraction], ("age_bin", "gender"), rng.integers(2**32))
    pool, rest = od[part == 0].reset_index(drop=True), od[part == 1].reset_index(drop=True)

  def between(frame, sex, span):
    return (frame["gender"] == sex) & frame["age"].between(*span)

  bd = rest[between(rest, FEMALE, young) | between(rest, MALE, old)]
  complement = rest[between(rest, MALE, young) | between(rest, FEMALE, old)]
  ebd = _equalise(pool, ((pool["age"] - ages[0]) // bin_width).to_numpy(), rng, ages[0], bin_width)
  return {"OD": od, "BD": plans.nonempty(bd, "bias_splits BD"),
          "BD_complement": plans.nonempty(complement, "bias_splits BD_complement"), "EBD": ebd}


def gender_set(frame: pd.DataFrame, size: int, seed: plans.Seed = 0, *, ages: tuple[int, int] = (16, 72),
               bin_width: int = 4) -> pd.DataFrame:
  """Seed 004's *gender data set*: ``size`` rows aged ``ages`` (half-open, as OD) with exactly as many
  women as men in every ``bin_width``-year bin, so that age tells nothing of gender in it (``size`` -1:
  every such row ``frame`` can give).

  Seed 004 §3.2 writes its losses over an age data set (X_age, y_age) and a gender data set (X_gen,
  y_gen), "the method described would work even if we had an age only dataset and a gender only
  dataset" (Alvi et al. 2018 train the spurious-variation head on a separate set). Trained on BD alone,
  the gender head reads age, since BD's ages give gender away, and unlearning it then fights the age
  task; on this set it can only read gender. Every bin keeps the same share of its balanced pairs
  (rounded down), so the set's age distribution is that of ``frame``'s balanced part.
  """
  plan = plans.as_plan(frame)
  age, gender = plan["age"].to_numpy(), plan["gender"].to_numpy()
  plan = plan[(age >= ages[0]) & (age < ages[1]) & (gender >= 0)].reset_index(drop=True)
  rng = plans.generator(seed)
  balanced = _equalise(plan, ((plan["age"] - ages[0]) // bin_width).to_numpy(), rng, ages[0], bin_width)
  size = len(balanced) if size == -1 else size
  if size <= 0 or size > len(balanced):
    raise ValueError(f"gender_set: asked for {size} rows, but the frame has {len(balanced)} aged "
                     f"{ages[0]}-{ages[1] - 1} with equal men and women per {bin_width}-year bin")
  bins = ((balanced["age"] - ages[0]) // bin_width).to_numpy()
  share = size / len(balanced)
  keep = []
  for b in np.unique(bins):
    for sex in (MALE, FEMALE):
      rows = np.flatnonzero((bins == b) & (balanced["gender"].to_numpy() == sex))
      keep.append(rng.choice(rows, int(share * len(rows)), replace=False))
  return plans.nonempty(balanced.iloc[np.sort(np.concatenate(keep))].reset_index(drop=True), "gender_set")


# ------------------------------------------------------------------------------------------- registry

@dataclasses.dataclass(frozen=True)
class Treatment:
  """A registered plan-to-plan treatment: ``fn(frame, seed, **options)`` and its options' defaults."""

  name: str
  fn: Callable[..., pd.DataFrame]
  defaults: Mapping[str, Any]

  def __call__(self, frame: pd.DataFrame, seed: plans.Seed = 0, **options) -> pd.DataFrame:
    unknown = sorted(set(options) - set(self.defaults))
    if unknown:
      raise ValueError(f"treatment {self.name!r} has no option(s) {', '.join(unknown)}; "
                       f"known: {', '.join(self.defaults) or 'none'}")
    return self.fn(frame, seed, **{**self.defaults, **options})


_TREATMENTS = Registry("treatment")


def register(name: str, fn: Callable[..., pd.DataFrame], **defaults) -> Treatment:
  """Registers ``fn(frame, seed, **options) -> plan`` as ``name`` with its options' defaults."""
  return _TREATMENTS.register(name)(Treatment(name, fn, defaults))


def get(name: str) -> Treatment:
  return _TREATMENTS.get(name)


def names() -> tuple[str, ...]:
  return _TREATMENTS.names()


def apply(frame: pd.DataFrame, treatments: Sequence[str], seed: plans.Seed = 0,
          options: Optional[Mapping[str, Mapping[str, Any]]] = None) -> pd.DataFrame:
  """The plan of ``frame`` after ``treatments`` in order; the i-th runs with seed (*``seed``, i) and the
  options ``options[name]``. Every name is looked up before any runs, so a typo fails fast."""
  steps = [get(name) for name in treatments]
  plan = plans.as_plan(frame)
  for i, step in enumerate(steps):
    plan = step(plan, (*np.atleast_1d(seed).tolist(), i), **dict((options or {}).get(step.name, {})))
  return plan


register("min_age", lambda frame, seed, age: min_age(frame, age), age=16)
register("oversample_old", lambda frame, seed, **o: oversample(frame, **o), min_age=60, factor=2, copies="repeat")
register("oversample_groups", lambda frame, seed, **o: oversample_groups(frame, seed, **o), attributes=("race",),
         max_factor=4.0, copies="augment")
register("stratified_subset", lambda frame, seed, n, by: stratified_subset(frame, n, tuple(by), seed),
         n=8000, by=STRATIFY_BY)
for _strategy in rebalance_lib.STRATEGIES:
  register(f"rebalance_{_strategy}", lambda frame, seed, _s=_strategy, **o: rebalance(frame, _s, seed, **o),
           target="mean", max_factor=4.0, age_bin_width=plans.AGE_BAND_WIDTH)
register("reweigh", lambda frame, seed, **o: reweighing.reweigh(frame, **o), attributes=("race",), label="gender")
