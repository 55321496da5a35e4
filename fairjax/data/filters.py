"""Row filters: the population a study is about, applied to every split alike.

A treatment (``treatments``) changes only the training plan, so that each evaluation split keeps its
natural distribution. A filter is the other kind of change: it narrows the population the study is
about, so it applies to the training plan *and* to every evaluation split. Seed 001 removed UTKFace's
under-16s from the data set ("sparse in both data sets, and our use case rarely concerns the very
young"): a model retrained on adults and tested on a test split that still holds children reports an
MAE that is not the seed's, since it is scored on ages it never saw. Filters run after the split scheme
has cut the splits and before the treatments, so a stratified split keeps its strata and a treatment
(oversampling the over-60s) sees only the rows left.

Configs name filters with their options (a row is kept where every filter keeps it, so order does not
matter): ``config.data.filters.min_age = dict(age=16)``.
"""

from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from fairjax.data import plans
from fairjax.registry import Registry

_FILTERS = Registry("data filter")


def register(name: str) -> Callable:
  """Decorator registering ``filter(plan, **options) -> boolean mask of the rows kept``."""
  return _FILTERS.register(name)


def names() -> tuple[str, ...]:
  return _FILTERS.names()


@register("min_age")
def min_age(plan: pd.DataFrame, age: int = 16):
  """Rows aged ``age`` or more (seed 001: no one under 16); rows of unknown age (-1) go too."""
  plans.require(plan, ["age"], "the min_age filter")
  return plan["age"].to_numpy() >= age


@register("max_age")
def max_age(plan: pd.DataFrame, age: int = 100):
  """Rows of known age at most ``age``."""
  plans.require(plan, ["age"], "the max_age filter")
  ages = plan["age"].to_numpy()
  return (ages >= 0) & (ages <= age)


@register("known")
def known(plan: pd.DataFrame, attributes: Sequence[str] = ("age", "gender", "race")):
  """Rows whose ``attributes`` are all known (not -1): an audit by race x gender, say, of labelled rows
  only, on every split."""
  attributes = [attributes] if isinstance(attributes, str) else list(attributes)
  plans.require(plan, attributes, "the known filter")
  return (plan[attributes].to_numpy() >= 0).all(axis=1)


def check(filters: Mapping[str, Mapping[str, Any]]) -> None:
  """Raises ``ValueError`` for an unknown filter or option, before any data is loaded."""
  for name, options in filters.items():
    if not isinstance(options, Mapping):
      raise ValueError(f"data.filters.{name} must hold the filter's options (a dict, maybe empty), got {options!r}")
    known_options = _FILTERS.options(name)
    unknown = sorted(set(dict(options)) - set(known_options) - {"plan"})
    if unknown:
      raise ValueError(f"data.filters.{name} has no option {', '.join(map(repr, unknown))}; its options: "
                       f"{', '.join(o for o in known_options if o != 'plan')}")


def apply(plan: pd.DataFrame, filters: Mapping[str, Mapping[str, Any]], split: str) -> pd.DataFrame:
  """``plan`` with only the rows that every filter keeps; a split left empty is an error naming it."""
  keep = None
  for name, options in filters.items():
    mask = _FILTERS.get(name)(plan, **dict(options))
    keep = mask if keep is None else keep & mask
  if keep is None:
    return plan
  return plans.nonempty(plan[keep], f"data.filters ({', '.join(filters)}) on the {split!r} split")
