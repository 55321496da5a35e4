"""Bootstrap confidence intervals for every group figure, vectorised over resamples.

Resampling N rows with replacement and recounting them is the same, in distribution, as drawing the
cell counts from a multinomial with N trials and the observed cell frequencies. Classification figures
depend on the rows only through the per-group confusion counts, so ``resample_counts`` draws all
resamples of the [G, C, C] counts at once and the figures are ``vmap``-ed over them: 1,000 resamples
cost about as much as a few plain evaluations, whatever N is. This matches fairlearn's MetricFrame
bootstrap (rows resampled jointly, group sizes free to vary), exactly in law, not approximately.

Figures that are not functions of counts (per-group MAE of an age regressor) or weighted data, where
rows differ in weight within a cell, need the rows themselves: ``resample_rows`` draws row
multiplicities and maps a statistic over them, a batch of resamples at a time.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def resample_counts(key: Array, counts: Array, num_resamples: int) -> Array:
  """``[num_resamples, *counts.shape]`` bootstrap resamples of unweighted integer counts."""
  flat = jnp.ravel(counts).astype(jnp.float32)
  total = flat.sum()
  probs = flat / jnp.maximum(total, 1.0)
  draws = jax.random.multinomial(key, total, probs, shape=(num_resamples, flat.size))
  return draws.reshape((num_resamples,) + counts.shape)


def resample_rows(
    key: Array,
    statistic: Callable[[Array], Any],
    num_rows: int,
    num_resamples: int,
    batch_size: int = 16,
) -> Any:
  """``statistic(multiplicity)`` for each of ``num_resamples`` bootstrap resamples of the rows.

  ``statistic`` takes a float ``[num_rows]`` vector of how often each row was drawn (to multiply into
  its weights) and returns a pytree; the result stacks it over resamples. Resamples run
  ``batch_size`` at a time to bound memory at ``batch_size * num_rows`` numbers.
  """

  def one(k):
    draws = jax.random.randint(k, (num_rows,), 0, num_rows)
    multiplicity = jnp.bincount(draws, length=num_rows).astype(jnp.float32)
    return statistic(multiplicity)

  keys = jax.random.split(key, num_resamples)
  return jax.lax.map(one, keys, batch_size=min(batch_size, num_resamples))


def percentile_interval(samples: Any, confidence: float = 0.95) -> tuple[Any, Any]:
  """(lower, upper) percentile interval over axis 0 of every leaf, ignoring NaN resamples."""
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
  tail = 50.0 * (1.0 - confidence)

  def bounds(x):
    x = jnp.asarray(x, jnp.float32)
    ok = ~jnp.isnan(x)
    # nanpercentile of an all-NaN column is NaN, as wanted; keep it quiet and jit-able.
    q = jnp.nanpercentile(jnp.where(ok, x, jnp.nan), jnp.array([tail, 100.0 - tail]), axis=0)
    return q[0], q[1]

  pairs = jax.tree.map(bounds, samples)
  lower = jax.tree.map(lambda p: p[0], pairs, is_leaf=lambda p: isinstance(p, tuple))
  upper = jax.tree.map(lambda p: p[1], pairs, is_leaf=lambda p: isinstance(p, tuple))
  return lower, upper
