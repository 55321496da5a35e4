"""Group indices from one or several sensitive attributes (intersectional groups such as race x gender)."""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

Array = jax.Array


def intersect(codes: Sequence[Array], cardinalities: Sequence[int]) -> Array:
  """Mixed-radix index of the attribute combination, in ``[0, prod(cardinalities))``; jit-able.

  With race (5) and gender (2): group = race * 2 + gender. A code outside its attribute's range makes
  the whole index -1, so downstream counts drop the row instead of misfiling it.
  """
  if len(codes) != len(cardinalities) or not codes:
    raise ValueError("intersect needs one cardinality per attribute, and at least one attribute")
  index = jnp.zeros_like(jnp.asarray(codes[0]), dtype=jnp.int32)
  valid = jnp.ones(index.shape, bool)
  for code, size in zip(codes, cardinalities):
    code = jnp.asarray(code, jnp.int32)
    valid &= (code >= 0) & (code < size)
    index = index * size + code
  return jnp.where(valid, index, -1)


def intersect_names(names: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
  """The attribute-value tuple of every index that ``intersect`` produces, in index order."""
  grids = np.meshgrid(*[np.arange(len(n)) for n in names], indexing="ij")
  return [tuple(n[i] for n, i in zip(names, idx)) for idx in zip(*(g.ravel() for g in grids))]


def encode_columns(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
  """Group index of every row from the combination of ``columns``, and the table of groups.

  Only combinations that occur in ``frame`` become groups; they are numbered in sorted order of their
  values. Returns ``(codes [N] int32, keys)`` where ``keys`` has one row per group and one column per
  sensitive attribute, named after it.
  """
  missing = [c for c in columns if c not in frame.columns]
  if missing:
    raise ValueError(f"sensitive column(s) not in the data: {', '.join(missing)}")
  for c in columns:
    if frame[c].isna().any():
      raise ValueError(f"sensitive column {c!r} has {int(frame[c].isna().sum())} missing value(s)")
  keys = frame[list(columns)].drop_duplicates().sort_values(list(columns)).reset_index(drop=True)
  index = pd.MultiIndex.from_frame(keys)
  codes = index.get_indexer(pd.MultiIndex.from_frame(frame[list(columns)]))
  return codes.astype(np.int32), keys
