"""All figures of a group audit as one jit-able function of the counts, and their bootstrap.

``classification_figures`` maps per-group confusion counts to every rate, group summary, overall figure
and disparity at once; because it is a pure function of the counts, the same code evaluates the data,
every bootstrap resample (``vmap``) and every threshold of a sweep.
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from fairjax.metrics import bootstrap
from fairjax.metrics import confusion
from fairjax.metrics import disparity
from fairjax.metrics import regression

Array = jax.Array


def classification_figures(counts: Array, privileged: Array) -> dict:
  """Every classification figure of ``counts`` [G, C, C]; ``privileged`` is a group index.

  Returns a dict of dicts of arrays: ``rates`` [G, C] one-vs-rest per class, ``groups`` [G],
  ``overall`` scalars, ``disparities`` [C], ``disparate_impact`` [G, C] against the privileged group,
  ``treatment_equality`` [G, C] and ``pairwise_disparate_impact`` [G, G, C].
  """
  rates = confusion.class_rates(counts)
  return {
      "rates": rates,
      "groups": confusion.group_summary(counts),
      "overall": confusion.overall_summary(counts),
      "disparities": disparity.disparities(counts),
      "disparate_impact": disparity.disparate_impact(rates["selection_rate"], privileged),
      "treatment_equality": disparity.treatment_equality(counts),
      "pairwise_disparate_impact": disparity.pairwise_disparate_impact(rates["selection_rate"]),
  }


def regression_figures(sums: Array) -> dict:
  """Per-group and pooled regression figures, and their between-group differences, from [G, 4] sums."""
  per_group = regression.regression_metrics(sums)
  overall = {k: v[0] for k, v in regression.regression_metrics(sums.sum(0, keepdims=True)).items()}
  gaps = {}
  for name in regression.REGRESSION_METRICS:
    gaps[f"{name}_difference"] = disparity.difference(per_group[name])
    gaps[f"{name}_ratio"] = disparity.ratio(per_group[name])
  return {"groups": per_group, "overall": overall, "disparities": gaps}


@jax.jit
def _figures(counts, privileged):
  return classification_figures(counts, privileged)


@functools.partial(jax.jit, static_argnames=("num_resamples", "confidence"))
def _count_bootstrap(key, counts, privileged, num_resamples, confidence):
  samples = bootstrap.resample_counts(key, counts, num_resamples)
  figures = jax.vmap(classification_figures, in_axes=(0, None))(samples, privileged)
  return bootstrap.percentile_interval(figures, confidence)


@functools.partial(
    jax.jit, static_argnames=("num_groups", "num_classes", "num_resamples", "confidence"))
def _row_bootstrap(key, y_true, y_pred, groups, weights, privileged, num_groups, num_classes,
                   num_resamples, confidence):
  def statistic(multiplicity):
    counts = confusion.confusion_counts(
        y_true, y_pred, groups, num_groups=num_groups, num_classes=num_classes,
        weights=weights * multiplicity)
    return classification_figures(counts, privileged)

  samples = bootstrap.resample_rows(key, statistic, y_true.shape[0], num_resamples)
  return bootstrap.percentile_interval(samples, confidence)


def compute_classification(
    counts: Array,
    privileged: int,
    *,
    num_resamples: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    rows: Optional[tuple] = None,
) -> tuple[dict, Optional[tuple[dict, dict]]]:
  """Figures of ``counts`` as numpy, and (lower, upper) bootstrap bounds of each when asked.

  Unweighted counts are resampled directly (exact, see bootstrap.py). Weighted data must pass
  ``rows = (y_true, y_pred, groups, weights)`` so that rows are resampled with their own weights.
  """
  privileged = jnp.asarray(privileged, jnp.int32)
  figures = jax.tree.map(np.asarray, _figures(counts, privileged))
  if num_resamples <= 0:
    return figures, None
  key = jax.random.key(seed)
  if rows is None:
    if not np.allclose(np.asarray(counts), np.round(np.asarray(counts))):
      raise ValueError("weighted counts cannot be bootstrapped from counts alone; pass the rows")
    bounds = _count_bootstrap(key, jnp.asarray(counts), privileged, num_resamples, float(confidence))
  else:
    y_true, y_pred, groups, weights = (jnp.asarray(a) for a in rows)
    num_groups, num_classes = counts.shape[0], counts.shape[1]
    bounds = _row_bootstrap(key, y_true, y_pred, groups, weights.astype(jnp.float32), privileged,
                            num_groups, num_classes, num_resamples, float(confidence))
  return figures, jax.tree.map(np.asarray, bounds)


@functools.partial(jax.jit, static_argnames=("num_groups", "num_resamples", "confidence"))
def _regression_bootstrap(key, y_true, y_pred, groups, weights, num_groups, num_resamples, confidence):
  def statistic(multiplicity):
    sums = regression.regression_sums(y_true, y_pred, groups, num_groups=num_groups,
                                      weights=weights * multiplicity)
    return regression_figures(sums)

  samples = bootstrap.resample_rows(key, statistic, y_true.shape[0], num_resamples)
  return bootstrap.percentile_interval(samples, confidence)


def compute_regression(
    y_true, y_pred, groups, *, num_groups: int, weights=None, num_resamples: int = 0, seed: int = 0,
    confidence: float = 0.95,
) -> tuple[dict, Optional[tuple[dict, dict]]]:
  """Regression figures as numpy, and (lower, upper) row-bootstrap bounds when asked."""
  y_true, y_pred, groups = (jnp.asarray(a) for a in (y_true, y_pred, groups))
  weights = jnp.ones(y_true.shape, jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
  sums = regression.regression_sums(y_true, y_pred, groups, num_groups=num_groups, weights=weights)
  figures = jax.tree.map(np.asarray, regression_figures(sums))
  if num_resamples <= 0:
    return figures, None
  bounds = _regression_bootstrap(jax.random.key(seed), y_true, y_pred, groups, weights, num_groups,
                                 num_resamples, float(confidence))
  return figures, jax.tree.map(np.asarray, bounds)
