"""95 % intervals of the flat figures a run reports, from the evaluator's sums alone.

The evaluator never holds rows, only sums that add across devices (``evaluate.make_evaluator``), so an
interval must come from those sums:

  * Classifiers: the per-group confusion counts are all that any classification figure depends on, and
    resampling the rows is, in law, a multinomial draw of the counts (``metrics.bootstrap``). The rows
    of a split are the cells of ``[G + 1, C, C]``: the G groups of a grouping and one more cell table of
    the rows that no group holds (unknown race, say), which count in the head's overall accuracy and
    F1 but in no group. Every resample recomputes each figure as ``evaluate.summarise`` defines it
    (``classification_figures``), so the gaps, worst-group and privileged-ratio figures get intervals
    of their own, not ones pieced together from the groups' intervals.
  * Regressors: sums of errors cannot be resampled. Since ``|e|**2 == e**2``, the squared-error sum
    that the evaluator already keeps is also the sum of squared *absolute* errors, so each group's
    absolute and signed errors have a sample variance, and their means (MAE, mean signed error) a
    normal-approximation interval (mean +- 1.96 standard errors; a group of one row has none). The MAE
    gap and the worst-group MAE take the percentiles of those figures over draws of every group's MAE
    from its normal approximation, groups independent. This is a normal approximation, not a
    bootstrap: it is sound for groups of some tens of rows, and it ignores that group sizes vary.

Both are percentile-style intervals of biased statistics where the figure is a maximum or a gap: when
groups barely differ, a gap's interval may lie wholly above the observed gap (every resample has some
spread). That is the honest reading, not an error.
"""

import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from fairjax.metrics import bootstrap
from fairjax.metrics import confusion
from fairjax.metrics import disparity

CONFIDENCE = 0.95
# Beyond this many cells per resample (groups x classes x classes) a head's table is not bootstrapped
# (the resamples are held at once: a 2,622-way identity head by 10 groups would hold 69 million cells
# each); its figures are reported without intervals.
MAX_CELLS = 20_000
# Draws of the group MAEs for the regression gap and worst-group intervals.
NORMAL_DRAWS = 10_000


def classification_figures(grouped, overall, privileged) -> dict:
  """The figures ``evaluate.summarise`` reports for one classifying head and grouping, as JAX scalars.

  ``grouped`` [G, C, C] and ``overall`` [C, C] counts; a binary task (C = 2) is read at class 1, a
  multi-class one averages each disparity over the classes where it is defined (the audit's macro).
  Names are the metric names' last part: accuracy, macro_accuracy, macro_f1 (over ``overall``) and
  ``evaluate.CLASSIFICATION_DISPARITIES`` (over the groups).
  """
  pooled = confusion.overall_summary(jnp.asarray(overall)[None])
  found = disparity.disparities(grouped)
  pick = (lambda a: a[..., 1]) if grouped.shape[-1] == 2 else disparity.macro
  accuracy = confusion.group_summary(grouped)["accuracy"]
  base = accuracy[privileged]
  others = jnp.where(jnp.arange(accuracy.shape[0]) == privileged, jnp.nan, accuracy)
  any_other = jnp.any(~jnp.isnan(others))
  lowest = jnp.min(jnp.where(jnp.isnan(others), jnp.inf, others))
  ok = ~jnp.isnan(base) & (base > 0) & any_other
  return {
      "accuracy": pooled["accuracy"],
      "macro_accuracy": pooled["macro_accuracy"],
      "macro_f1": pooled["macro_f1"],
      "equalized_odds_difference": pick(found["equalized_odds_difference"]),
      "equal_opportunity_difference": pick(found["equal_opportunity_difference"]),
      "demographic_parity_difference": pick(found["demographic_parity_difference"]),
      "disparate_impact": pick(found["demographic_parity_ratio"]),
      "disparate_impact_correct": jnp.where(ok, lowest / jnp.where(ok, base, 1.0), jnp.nan),
      "accuracy_gap": disparity.difference(accuracy),
      "worst_group_accuracy": jnp.where(jnp.any(~jnp.isnan(accuracy)),
                                        jnp.min(jnp.where(jnp.isnan(accuracy), jnp.inf, accuracy)), jnp.nan),
  }


@jax.jit
def _intervals_of_samples(samples, privileged):
  figures = jax.vmap(lambda t: classification_figures(t[:-1], t.sum(0), privileged))(samples)
  return bootstrap.percentile_interval(figures, CONFIDENCE)


def classification_intervals(grouped, overall, privileged: int, *, num_resamples: int,
                             seed: int = 0) -> dict[str, tuple[float, float]]:
  """``{figure: (low, high)}`` percentile bootstrap intervals of ``classification_figures``.

  ``overall`` must hold every row of ``grouped`` plus the rows no group holds (as the evaluator's
  ``overall`` does). Empty when ``num_resamples`` is 0 or the table exceeds ``MAX_CELLS``; the
  resamples where a figure is undefined (a group drawn empty) are left out of its interval, and its
  bounds are NaN where it is undefined in all of them.
  """
  grouped = np.asarray(grouped)
  outside = np.asarray(overall) - grouped.sum(0)
  if num_resamples <= 0 or grouped.size + outside.size > MAX_CELLS:
    return {}
  if np.any(outside < 0):
    raise ValueError("overall counts hold fewer rows than the groups: not one evaluation's sums")
  table = np.concatenate([grouped, outside[None]]).astype(np.int64)
  total = int(table.sum())
  # The multinomial draw of ``bootstrap.resample_counts``, drawn by numpy: the same law, and no
  # compilation of JAX's sequential binomial sampler (seconds) for a draw that takes microseconds.
  probabilities = table.ravel() / max(total, 1)
  samples = np.random.default_rng(seed).multinomial(total, probabilities, size=num_resamples)
  low, high = _intervals_of_samples(jnp.asarray(samples.reshape((num_resamples,) + table.shape), jnp.float32),
                                    jnp.int32(privileged))
  return {name: (float(low[name]), float(high[name])) for name in low}


def _normal_terms(sums: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """(mean, standard error) of the absolute and the signed error, per row of ``[..., 4]`` sums; NaN
  where fewer than two rows leave no sample variance."""
  sums = np.asarray(sums, np.float64)
  count, signed, absolute, squared = (sums[..., i] for i in range(4))
  with np.errstate(divide="ignore", invalid="ignore"):
    out = {}
    for name, total in (("mae", absolute), ("mean_signed_error", signed)):
      mean = np.where(count > 0, total / count, np.nan)
      variance = np.where(count > 1, (squared - count * mean ** 2) / (count - 1), np.nan)
      out[name] = (mean, np.sqrt(np.maximum(variance, 0.0) / count))
  return out


def regression_intervals(grouped, overall, *, seed: int = 0) -> dict[str, tuple[float, float]]:
  """Normal-approximation intervals (see the module docstring) of a regressing head's figures.

  ``grouped`` [G, 4] and ``overall`` [4] are the evaluator's sums (count, signed, absolute, squared
  error). Keys: ``mae`` and ``mean_signed_error`` (over ``overall``), ``mae_gap`` and
  ``worst_group_mae`` (over the non-empty groups; NaN bounds when one of them has fewer than two rows).
  """
  z = _z(CONFIDENCE)
  out = {}
  for name, (mean, error) in _normal_terms(overall).items():
    out[name] = (float(mean - z * error), float(mean + z * error))
  mean, error = _normal_terms(grouped)["mae"]
  present = np.asarray(grouped)[:, 0] > 0
  mean, error = mean[present], error[present]
  if not present.any() or np.isnan(error).any():
    out["worst_group_mae"] = (math.nan, math.nan)
    out["mae_gap"] = (math.nan, math.nan)
    return out
  draws = mean + error * np.random.default_rng(seed).standard_normal((NORMAL_DRAWS, mean.size))
  tail = 50.0 * (1.0 - CONFIDENCE)
  worst = draws.max(1)
  out["worst_group_mae"] = tuple(float(v) for v in np.percentile(worst, [tail, 100 - tail]))
  if mean.size < 2:
    out["mae_gap"] = (math.nan, math.nan)
  else:
    out["mae_gap"] = tuple(float(v) for v in np.percentile(worst - draws.min(1), [tail, 100 - tail]))
  return out


def _z(confidence: float) -> float:
  """The standard normal quantile of a two-sided ``confidence`` interval (1.96 at 95 %)."""
  return statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)

