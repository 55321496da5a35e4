"""Every metric at many decision thresholds at once (seed 003's sweep of 0.05 ... 0.95).

Sweeping T thresholds naively costs T passes over the rows. Instead each row is binned once by how
many thresholds lie at or below its score (``searchsorted``); the counts of rows predicted positive at
threshold j are then a reverse cumulative sum over the bins. One pass over the rows gives
``[T, G, 2, 2]`` confusion counts, from which any metric of ``confusion`` / ``disparity`` follows, at
every threshold, by broadcasting.
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from fairjax.metrics import confusion

Array = jax.Array

OBJECTIVES = ("macro_f1", "accuracy", "macro_accuracy")


@functools.partial(jax.jit, static_argnames=("num_groups",))
def threshold_counts(
    scores: Array,
    y_true: Array,
    groups: Array,
    thresholds: Array,
    *,
    num_groups: int,
    weights: Optional[Array] = None,
    mask: Optional[Array] = None,
) -> Array:
  """``[T, G, 2, 2]`` confusion counts of ``score >= thresholds[j]`` for binary labels.

  ``thresholds`` must be sorted ascending. Rows with a NaN score are not counted: callers check for
  them first (the audit refuses NaN scores) since a NaN cannot be placed on either side.
  """
  thresholds = jnp.asarray(thresholds, jnp.float32)
  num_thresholds = thresholds.shape[0]
  scores = jnp.ravel(scores).astype(jnp.float32)
  y_true = jnp.ravel(y_true).astype(jnp.int32)
  groups = jnp.ravel(groups).astype(jnp.int32)
  valid = (groups >= 0) & (groups < num_groups) & (y_true >= 0) & (y_true < 2) & ~jnp.isnan(scores)
  if mask is not None:
    valid &= jnp.ravel(mask).astype(bool)
  # bin k = number of thresholds <= score: the row is predicted positive at thresholds 0 .. k-1.
  bins = jnp.searchsorted(thresholds, scores, side="right")
  num_bins = num_thresholds + 1
  cell = jnp.clip((groups * 2 + y_true) * num_bins + bins, 0, num_groups * 2 * num_bins - 1)
  data = valid.astype(jnp.int32) if weights is None else jnp.where(valid, jnp.ravel(weights), 0.0)
  hist = jax.ops.segment_sum(data, cell, num_segments=num_groups * 2 * num_bins)
  hist = hist.reshape(num_groups, 2, num_bins)
  # positives[g, y, j] = sum over bins k > j = rows with at least j + 1 thresholds below their score.
  above = jnp.flip(jnp.cumsum(jnp.flip(hist, -1), -1), -1)[..., 1:]
  total = hist.sum(-1, keepdims=True)
  counts = jnp.stack([total - above, above], axis=-1)  # [G, y, T, predicted]
  return jnp.transpose(counts, (2, 0, 1, 3))


def best_threshold(thresholds: Array, sweep_counts: Array, objective: str = "macro_f1") -> tuple[Array, Array]:
  """The threshold whose pooled ``objective`` is highest over the sweep, and that value.

  Ties go to the lowest threshold; thresholds where the objective is NaN never win.
  """
  if objective not in OBJECTIVES:
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
  value = confusion.overall_summary(sweep_counts)[objective]
  best = jnp.argmax(jnp.where(jnp.isnan(value), -jnp.inf, value))
  return jnp.asarray(thresholds)[best], value[best]
