"""From a split's scores to each group's derived rule: the numeric core of ``thresholds.fit``.

Hardt, Price & Srebro call a predictor built from a score and the group alone a derived predictor. The
search for the best fair point of every group's ROC hull lives in ``fairjax.metrics.frontier``
(``best_rates``, which the oracle frontier uses too); this module prepares its inputs from the fit rows
and turns its chosen (FPR, TPR) points into rules that reach them exactly on those rows:

  * a point on a group's upper hull lies on the segment between two ROC vertices, so it is the higher
    threshold's rule with the band between the two thresholds taken with the segment's weight;
  * a point under the hull (the band caps the TPR there) is that hull point mixed with the trivial
    predictor at the same FPR (predict 1 with probability FPR, whatever the score), as fairlearn does:
    every point of the ROC convex hull is reachable by randomising.

So a rule is five numbers, ``RULE_FIELDS``: P(1 | score s) is ``p_above`` for s >= ``t_high``,
``p_between`` for ``t_low`` <= s < ``t_high`` and ``p_below`` below ``t_low`` (the vertices' own
convention: vertex k predicts 1 where s >= its threshold). ``randomized_rules`` is jit-able and traced
in epsilon, so a frontier vmaps it over epsilons in one compilation.

The deterministic variant (one threshold per group) cannot randomise, so its points are ROC vertices
alone; every group's vertices are ordered in FPR, TPR and selection rate together, so those inside a
band are a run of consecutive vertices and the most accurate of them is a range-maximum look-up.
"""

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fairjax.metrics import confusion
from fairjax.metrics import disparity
from fairjax.metrics import frontier as frontier_lib

Array = jax.Array

RULE_FIELDS = ("t_low", "t_high", "p_below", "p_between", "p_above")
TOLERANCE = frontier_lib.TOLERANCE


class PoolingWarning(UserWarning):
  """Groups too small (or, where TPRs are bounded, without one class) to fit get the pooled rule."""


class Problem(NamedTuple):
  """The fit rows as the search needs them (a pytree of arrays; F fitted groups, V ROC vertices)."""

  thresholds: Array   # [V] threshold of each ROC vertex (``vertex_thresholds``)
  fpr: Array          # [F, V] each fitted group's ROC
  tpr: Array          # [F, V]
  hull: Array         # [F, V] int32 its upper hull's vertices (``hull_vertices``)
  fprs: Array         # [F, X] candidate FPRs of the search
  hull_tpr: Array     # [F, X] the hull's TPR at them
  prevalence: Array   # [F]
  counts: Array       # [F] rows
  fitted: Array       # [F] int32 group index of each fitted group
  pooled_rule: Array  # [5] the rule of every other group: the most accurate single threshold on all rows


def padded_size(num_rows: int) -> int:
  """Rows are padded to a power of two (at least 256) with rows that count nowhere (group -1, weight 0),
  so that data sets of similar size share compiled programs instead of compiling their own."""
  return max(256, 1 << (max(num_rows, 1) - 1).bit_length())


def pad(values: np.ndarray, fill) -> np.ndarray:
  """``values`` [N] padded to ``padded_size(N)`` with ``fill``."""
  values = np.asarray(values)
  return np.concatenate([values, np.full(padded_size(len(values)) - len(values), fill, values.dtype)])


def check_rows(scores, y_true, groups, num_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The rows as flat arrays (float32 scores, int32 labels and groups), or a ValueError naming the
  first problem: scores that are not finite, labels other than 0 and 1, groups out of range."""
  scores, y_true, groups = (np.ravel(np.asarray(a)) for a in (scores, y_true, groups))
  if not len(scores) == len(y_true) == len(groups):
    raise ValueError(f"scores, labels and groups differ in length ({len(scores)}, {len(y_true)}, "
                     f"{len(groups)})")
  if not len(scores):
    raise ValueError("no rows to fit")
  bad = ~np.isfinite(scores.astype(np.float64))
  if bad.any():
    raise ValueError(f"{int(bad.sum())} score(s) are NaN or infinite, first in row "
                     f"{int(np.flatnonzero(bad)[0])}")
  bad = ~np.isin(y_true, (0, 1))
  if bad.any():
    raise ValueError(f"labels must be 0 or 1; row {int(np.flatnonzero(bad)[0])} has {y_true[bad][0]!r}")
  bad = (groups < 0) | (groups >= num_groups) | (groups != np.round(groups))
  if bad.any():
    raise ValueError(f"groups must be integers in [0, {num_groups}); row {int(np.flatnonzero(bad)[0])} has "
                     f"{groups[bad][0]!r}")
  return scores.astype(np.float32), y_true.astype(np.int32), groups.astype(np.int32)


def prepare(scores, y_true, groups, *, num_groups: int, constraint: str, min_group_size: int,
            num_thresholds: int, resolution: int, group_names=None,
            warn: bool = True) -> tuple[Problem, dict]:
  """``(problem, sizes)``: the search's inputs from checked rows (``check_rows``), and per group
  ``rows``, ``positives``, ``negatives`` and ``pooled`` (numpy ``[G]``). Groups under
  ``min_group_size`` rows, and under equalized odds or equal opportunity groups without positives or
  negatives, are pooled, with a ``PoolingWarning`` that names them."""
  positives = np.bincount(groups[y_true == 1], minlength=num_groups)
  negatives = np.bincount(groups[y_true == 0], minlength=num_groups)
  rows = positives + negatives
  fit_ok = rows >= max(min_group_size, 1)
  if constraint != "demographic_parity":
    fit_ok &= (positives > 0) & (negatives > 0)
  pooled = ~fit_ok
  if warn and pooled.any():
    names = group_names or [str(g) for g in range(num_groups)]
    listed = ", ".join(f"{names[g]} ({rows[g]} rows, {positives[g]} positive)"
                       for g in np.flatnonzero(pooled))
    one_class = "" if constraint == "demographic_parity" else ", or no positives or no negatives"
    warnings.warn(f"{int(pooled.sum())} group(s) not fitted (fewer than {min_group_size} rows{one_class}) "
                  f"get the pooled rule: {listed}", PoolingWarning, stacklevel=3)
  cuts = frontier_lib.roc_cuts(scores, num_thresholds)
  # Always num_thresholds cuts (the highest repeated: a vertex twice changes no hull), so that every data
  # set with as many fitted groups shares one compiled search.
  cuts = np.pad(cuts, (0, max(num_thresholds - len(cuts), 0)), mode="edge")
  thresholds = frontier_lib.vertex_thresholds(cuts)
  # The pooled rule: all rows as one group, its most accurate vertex (one threshold, no mixing).
  padded_scores, padded_y = pad(scores, 0), pad(y_true, 0)
  all_fpr, all_tpr = frontier_lib.group_roc(padded_scores, padded_y, pad(np.zeros_like(groups), -1),
                                            num_groups=1, cuts=cuts)
  share = y_true.mean()
  vertex = int(np.argmax((1 - share) * (1 - np.asarray(all_fpr[0])) + share * np.asarray(all_tpr[0])))
  pooled_rule = np.array([thresholds[vertex], thresholds[vertex], 0.0, 0.0, 1.0], np.float32)
  fitted = np.flatnonzero(fit_ok).astype(np.int32)
  lookup = np.full(num_groups, -1, np.int32)
  lookup[fitted] = np.arange(len(fitted), dtype=np.int32)
  if len(fitted):
    fpr, tpr = frontier_lib.group_roc(padded_scores, padded_y, pad(lookup[groups], -1),
                                      num_groups=len(fitted), cuts=cuts)
  else:  # nothing to fit: every group gets the pooled rule
    fpr = tpr = np.zeros((0, len(thresholds)), np.float32)
  fprs = frontier_lib.candidate_fprs(fpr, resolution)
  problem = Problem(
      thresholds=jnp.asarray(thresholds), fpr=jnp.asarray(fpr, jnp.float32),
      tpr=jnp.asarray(tpr, jnp.float32),
      hull=jnp.asarray(frontier_lib.hull_vertices(fpr, tpr)), fprs=jnp.asarray(fprs),
      hull_tpr=frontier_lib.upper_hull(fpr, tpr, fprs),
      prevalence=jnp.asarray(positives[fitted] / np.maximum(rows[fitted], 1), jnp.float32),
      counts=jnp.asarray(rows[fitted], jnp.float32), fitted=jnp.asarray(fitted),
      pooled_rule=jnp.asarray(pooled_rule))
  return problem, {"rows": rows, "positives": positives, "negatives": negatives, "pooled": pooled}


def _table(problem: Problem, rules: Array, num_groups: int) -> Array:
  """``[G, 5]``: the fitted groups' rules, the pooled rule elsewhere."""
  table = jnp.broadcast_to(problem.pooled_rule, (num_groups, len(RULE_FIELDS)))
  return table.at[problem.fitted].set(rules) if problem.fitted.shape[0] else table


def mixed_rules(problem: Problem, fpr: Array, tpr: Array) -> Array:
  """``[F, 5]``: the rule that reaches each fitted group's (``fpr``, ``tpr``) exactly on the fit rows, a
  point at or under its upper hull (see the module docstring)."""
  left, right, weight, top = frontier_lib.hull_point(problem.fpr, problem.tpr, problem.hull, fpr)
  # The share of the trivial predictor (1 with probability fpr) that brings the hull's TPR down to tpr.
  # A point within the tolerance of the hull is on it (the search's float dust is not a mix).
  room = top - fpr
  under = (top - tpr > TOLERANCE) & (room > TOLERANCE)
  trivial = jnp.where(under, jnp.clip((top - tpr) / jnp.where(under, room, 1.0), 0.0, 1.0), 0.0)
  return jnp.stack([problem.thresholds[right], problem.thresholds[left], trivial * fpr,
                    (1 - trivial) * weight + trivial * fpr, (1 - trivial) + trivial * fpr], axis=-1)


@functools.partial(jax.jit, static_argnames=("constraint", "resolution", "num_groups"))
def randomized_rules(problem: Problem, epsilon: Array, *, constraint: str, resolution: int,
                     num_groups: int) -> tuple[Array, Array, Array]:
  """``(table [G, 5], fpr [F], tpr [F])``: Hardt et al.'s most accurate rules at ``epsilon`` and the
  fitted groups' chosen points. Traced in ``epsilon``: one compilation serves every epsilon."""
  if not problem.fitted.shape[0]:
    empty = jnp.zeros((0,), jnp.float32)
    return _table(problem, None, num_groups), empty, empty
  found = frontier_lib.best_rates(problem.fprs, problem.hull_tpr, problem.prevalence, problem.counts, epsilon,
                                  constraint=constraint, resolution=resolution)
  rules = mixed_rules(problem, found["fpr"], found["tpr"])
  return _table(problem, rules, num_groups), found["fpr"], found["tpr"]


def _vertex_band(problem: Problem, constraint: str) -> Array:
  """``[F, V]``: the bounded rate of each ROC vertex (TPR, or selection rate), ascending along V."""
  p = problem.prevalence[:, None]
  return p * problem.tpr + (1 - p) * problem.fpr if constraint == "demographic_parity" else problem.tpr


def _first_at_least(values: Array, bounds: Array) -> Array:
  """``[..., F]``: per group (row of ``values``, ascending), the first index whose value reaches each of
  ``bounds`` ``[...]``, less the tolerance. (Small arrays: comparing all is cheapest to compile.)"""
  find = functools.partial(jnp.searchsorted, side="left", method="compare_all")
  return jax.vmap(lambda v: find(v, bounds - TOLERANCE), out_axes=-1)(values)


def _last_at_most(values: Array, bounds: Array) -> Array:
  """``[..., F]``: per group, the last index whose value is within each of ``bounds``, plus the tolerance."""
  find = functools.partial(jnp.searchsorted, side="right", method="compare_all")
  return jax.vmap(lambda v: find(v, bounds + TOLERANCE), out_axes=-1)(values) - 1


def _range_maximum(values: Array):
  """A sparse table of ``values`` ``[F, V]``: ``query(low, high)`` gives the maximum and its index over
  ``values[f, low:high + 1]`` for index arrays ``[..., F]`` in O(1). Level l holds the maxima over
  windows of 2^l, each level from the one before (one scanned step, cheap to compile)."""
  size = values.shape[1]
  index = jnp.arange(size)

  def next_level(previous, level):
    best, at = previous
    shift = jnp.left_shift(1, level)
    ahead = jnp.minimum(index + shift, size - 1)
    take = (index + shift < size) & (best[:, ahead] > best)
    found = (jnp.where(take, best[:, ahead], best), jnp.where(take, at[:, ahead], at))
    return found, found

  first = (values, jnp.broadcast_to(index, values.shape))
  _, (tables, where) = jax.lax.scan(next_level, first, jnp.arange(max(size.bit_length() - 1, 0)))
  tables, where = jnp.concatenate([values[None], tables]), jnp.concatenate([first[1][None], where])
  log2 = jnp.asarray(np.floor(np.log2(np.maximum(np.arange(size + 1), 1))).astype(np.int32))
  rows = jnp.arange(values.shape[0])

  def query(low, high):
    level = log2[jnp.clip(high - low + 1, 1, size)]
    other = jnp.clip(high - jnp.left_shift(1, level) + 1, 0, size - 1)
    low = jnp.clip(low, 0, size - 1)
    a, b = tables[level, rows, low], tables[level, rows, other]
    return jnp.maximum(a, b), jnp.where(b > a, where[level, rows, other], where[level, rows, low])

  return query


@functools.partial(jax.jit, static_argnames=("constraint",))
def _best_vertices(problem: Problem, corners_fpr: Array, corners_band: Array, epsilon: Array, *,
                   constraint: str) -> tuple[Array, Array]:
  """``(accuracy, vertex [F])``: the most accurate choice of one ROC vertex per fitted group whose bounded
  rates lie within ``epsilon`` of each other. The band's corners are the vertices' own values
  (``corners_*``), so the search is exact."""
  band = _vertex_band(problem, constraint)
  p = problem.prevalence[:, None]
  query = _range_maximum((1 - p) * (1 - problem.fpr) + p * problem.tpr)
  band_low = _first_at_least(band, corners_band)                       # [B, F]
  band_high = _last_at_most(band, corners_band + epsilon)
  last = problem.fpr.shape[1] - 1

  def for_corner_fpr(a):
    if constraint == "equalized_odds":
      low, high = _first_at_least(problem.fpr, a), _last_at_most(problem.fpr, a + epsilon)
    else:
      low, high = jnp.zeros_like(band_low[0]), jnp.full_like(band_high[0], last)
    lower, upper = jnp.maximum(band_low, low), jnp.minimum(band_high, high)
    accuracy, vertex = query(lower, upper)
    accuracy = jnp.where(lower <= upper, accuracy, -jnp.inf)
    total = jnp.sum(accuracy * problem.counts, axis=-1) / jnp.sum(problem.counts)
    i = jnp.argmax(total)
    return total[i], vertex[i]

  totals, vertices = jax.lax.map(for_corner_fpr, corners_fpr)
  k = jnp.argmax(totals)
  return totals[k], vertices[k]


def deterministic_rules(problem: Problem, epsilon: float, *, constraint: str,
                        num_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(table [G, 5], fpr [F], tpr [F])``: one threshold per fitted group, the most accurate choice whose
  gap is at most ``epsilon`` on the fit rows. There always is one: the constant rules (every ROC's
  (0, 0) and (1, 1)) have gap 0."""
  table = np.tile(np.asarray(problem.pooled_rule), (num_groups, 1))
  fpr, tpr = np.asarray(problem.fpr), np.asarray(problem.tpr)
  if not len(fpr):
    return table, np.zeros(0, np.float32), np.zeros(0, np.float32)
  # The corners padded by repeating the last (a corner twice changes nothing), to share compilations.
  corners_fpr, corners_band = (np.unique(values) for values in (fpr, _vertex_band(problem, constraint)))
  corners_fpr, corners_band = (np.pad(c, (0, padded_size(len(c)) - len(c)), mode="edge")
                               for c in (corners_fpr, corners_band))
  _, vertex = _best_vertices(problem, corners_fpr, corners_band, jnp.float32(epsilon), constraint=constraint)
  vertex, rows = np.asarray(vertex), np.arange(len(fpr))
  threshold = np.asarray(problem.thresholds)[vertex]
  ones = np.ones_like(threshold)
  table[np.asarray(problem.fitted)] = np.stack([threshold, threshold, 0 * ones, 0 * ones, ones], axis=-1)
  return table, fpr[rows, vertex], tpr[rows, vertex]


@jax.jit
def apply_rules(table: Array, pooled_rule: Array, scores: Array, groups: Array) -> Array:
  """``[N]`` P(predict 1) of each row under its group's rule (``table`` ``[G, 5]``); a group outside
  ``[0, G)`` gets ``pooled_rule``. A NaN score counts as below every threshold."""
  table = jnp.concatenate([table, pooled_rule[None]], axis=0)
  known = (groups >= 0) & (groups < table.shape[0] - 1)
  rule = table[jnp.where(known, groups, table.shape[0] - 1)]
  scores = jnp.asarray(scores, jnp.float32)
  return jnp.where(scores >= rule[:, 1], rule[:, 4], jnp.where(scores >= rule[:, 0], rule[:, 3], rule[:, 2]))


@functools.partial(jax.jit, static_argnames=("num_groups", "constraint"))
def expected_figures(p_post: Array, y_true: Array, groups: Array, gap_groups: Array, *, num_groups: int,
                     constraint: str, weights=None) -> dict[str, Array]:
  """Expected figures of randomised decisions (1 with probability ``p_post``) on rows with weights
  (bootstrap multiplicities; default 1): ``accuracy`` over all rows, per group ``tpr``, ``fpr``,
  ``selection_rate``, ``accuracy``, ``rows`` (``[G]``), and the ``constraint``'s ``gap`` over the groups
  where ``gap_groups`` (``[G]`` bool) holds, as ``disparity.difference`` of the rates (equalized odds:
  the larger of the TPR and FPR differences). Jit-able."""
  p_post = jnp.asarray(p_post, jnp.float32)
  weights = jnp.ones_like(p_post) if weights is None else jnp.asarray(weights, jnp.float32)
  y = jnp.asarray(y_true, jnp.int32)
  counts = (confusion.confusion_counts(y, jnp.ones_like(y), groups, num_groups=num_groups, num_classes=2,
                                       weights=weights * p_post)
            + confusion.confusion_counts(y, jnp.zeros_like(y), groups, num_groups=num_groups, num_classes=2,
                                         weights=weights * (1 - p_post)))
  rates = {k: v[:, 1] for k, v in confusion.class_rates(counts).items()}

  def spread(rate):
    return disparity.difference(jnp.where(gap_groups, rate, jnp.nan))

  if constraint == "equalized_odds":
    gap = jnp.fmax(spread(rates["tpr"]), spread(rates["fpr"]))
  else:
    gap = spread(rates["tpr"] if constraint == "equal_opportunity" else rates["selection_rate"])
  correct = jnp.where(y == 1, p_post, 1 - p_post)
  return {"accuracy": jnp.sum(weights * correct) / jnp.sum(weights), "gap": gap, "tpr": rates["tpr"],
          "fpr": rates["fpr"], "selection_rate": rates["selection_rate"], "group_accuracy": rates["accuracy"],
          "rows": counts.sum((1, 2))}
