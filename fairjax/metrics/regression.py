"""Per-group regression error (age), in pure JAX.

Like the classification counts, the per-group figures come from a few sums per group, gathered in one
``segment_sum``; those sums add across batches and devices, so a training loop can accumulate them.
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from fairjax.metrics import confusion

Array = jax.Array

REGRESSION_METRICS = ("mae", "mean_signed_error", "rmse")


@functools.partial(jax.jit, static_argnames=("num_groups",))
def regression_sums(
    y_true: Array,
    y_pred: Array,
    groups: Array,
    *,
    num_groups: int,
    weights: Optional[Array] = None,
    mask: Optional[Array] = None,
) -> Array:
  """``[G, 4]`` sums per group: count, signed error, absolute error, squared error (error = pred - true)."""
  y_true = jnp.ravel(y_true).astype(jnp.float32)
  y_pred = jnp.ravel(y_pred).astype(jnp.float32)
  groups = jnp.ravel(groups).astype(jnp.int32)
  valid = (groups >= 0) & (groups < num_groups) & ~jnp.isnan(y_true) & ~jnp.isnan(y_pred)
  if mask is not None:
    valid &= jnp.ravel(mask).astype(bool)
  w = jnp.ones_like(y_true) if weights is None else jnp.ravel(weights).astype(jnp.float32)
  w = jnp.where(valid, w, 0.0)
  err = jnp.where(valid, y_pred - y_true, 0.0)
  stats = jnp.stack([w, w * err, w * jnp.abs(err), w * err * err], axis=-1)
  return jax.ops.segment_sum(stats, jnp.clip(groups, 0, num_groups - 1), num_segments=num_groups)


def regression_metrics(sums: Array) -> dict[str, Array]:
  """count, mae, mean_signed_error and rmse of each group, ``[..., G]``; NaN for an empty group."""
  count, signed, absolute, squared = (sums[..., i] for i in range(4))
  return {
      "count": count,
      "mae": confusion.safe_div(absolute, count),
      "mean_signed_error": confusion.safe_div(signed, count),
      "rmse": jnp.sqrt(confusion.safe_div(squared, count)),
  }
