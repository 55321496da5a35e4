"""How accurate a classifier's scores can be made under a group-fairness bound by group thresholds.

Hardt, Price & Srebro (2016) show that any predictor derived from a score and the group alone (group
thresholds, randomised between two thresholds where needed) reaches exactly the points under each
group's ROC convex hull. So for a bound epsilon on the equalized-odds gap (every pair of groups' TPRs
and FPRs within epsilon, ``disparity.difference`` of both), the best such predictor puts every group's
(FPR, TPR) in one epsilon-by-epsilon box and, inside it, as high on the group's hull as accuracy asks.
Equal opportunity bounds the TPRs alone (a band, not a box), demographic parity the selection rates.
``best_rates`` is that search, and the one home of it: ``group_threshold_frontier`` (and
``equalized_odds_frontier``) report its best accuracy for each epsilon, what post-processing
(fairlearn's ThresholdOptimizer, Hardt et al.'s LP) can reach on these scores and the yardstick for an
in-training mitigation; ``fairjax.postprocess`` turns its chosen points into thresholds fitted on one
split and applied to another.

Computed on the rows it is evaluated on (the test split's labels), the figure is an oracle: an upper
bound on what a post-processing fit elsewhere would get there. The search puts the band's corners on a
grid of ``1 / resolution`` in rates and each group's FPR on that grid or on one of its ROC vertices, so
the figure is within about that step's worth of rates below the exact optimum (the default 400 steps
is 0.0025), and exact where no bound binds (epsilon 1: each group's most accurate threshold).

The search is quadratic, not cubic, in the grid: inside a band, a group's accuracy along its hull is a
concave function of the FPR (a concave hull, capped, plus a linear term), so its best point in any FPR
window is its best point overall clamped into the window; each corner of the band costs one look-up
per group instead of a scan.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fairjax.metrics import thresholds as thresholds_lib

Array = jax.Array

CONSTRAINTS = ("equalized_odds", "equal_opportunity", "demographic_parity")
# Slack of every rate comparison: rates are float32 ratios of counts, compared after arithmetic.
TOLERANCE = 1e-7


def roc_cuts(scores, num_thresholds: int = 256) -> np.ndarray:
  """The thresholds of the group ROCs, ascending float32: every distinct finite score where there are at
  most ``num_thresholds`` (the exact ROC), else ``num_thresholds`` quantiles of the scores."""
  scores = np.asarray(scores, np.float32)
  finite = scores[np.isfinite(scores)]
  distinct = np.unique(finite)
  if len(distinct) <= num_thresholds:
    return distinct
  return np.unique(np.quantile(finite, np.linspace(0, 1, num_thresholds)).astype(np.float32))


def vertex_thresholds(cuts) -> np.ndarray:
  """``[T + 2]`` float32: the threshold of each vertex of ``group_roc`` (predict 1 where score >= it):
  +inf for (0, 0), the cuts descending, -inf for (1, 1)."""
  return np.concatenate([[np.inf], np.asarray(cuts, np.float32)[::-1], [-np.inf]]).astype(np.float32)


def group_roc(scores, y_true, groups, *, num_groups: int, num_thresholds: int = 256,
              cuts=None) -> tuple[np.ndarray, np.ndarray]:
  """``(fpr, tpr)``, each ``[G, T + 2]`` float32: every group's ROC at the ``cuts`` (default
  ``roc_cuts``), with the end points (0, 0) and (1, 1), ordered by FPR (and TPR): vertex k predicts 1
  where the score is at least ``vertex_thresholds(cuts)[k]``. A group without negatives (positives) has
  FPR (TPR) 0 but at (1, 1)."""
  scores = np.asarray(scores, np.float32)
  cuts = roc_cuts(scores, num_thresholds) if cuts is None else np.asarray(cuts, np.float32)
  counts = thresholds_lib.threshold_counts(scores, y_true, groups, cuts, num_groups=num_groups)  # [T,G,y,p]
  counts = np.asarray(counts, np.float32)  # the rest on the host: a few small arrays, nothing to compile
  tpr = counts[:, :, 1, 1] / np.maximum(counts[:, :, 1].sum(-1), 1)
  fpr = counts[:, :, 0, 1] / np.maximum(counts[:, :, 0].sum(-1), 1)
  ones, zeros = np.ones((1, num_groups), np.float32), np.zeros((1, num_groups), np.float32)
  fpr, tpr = np.concatenate([ones, fpr, zeros]).T, np.concatenate([ones, tpr, zeros]).T
  return fpr[:, ::-1].copy(), tpr[:, ::-1].copy()  # cuts ascend, so rates descend: flip to ascending FPR


def hull_vertices(fpr, tpr) -> np.ndarray:
  """``[G, V]`` int32: the ROC vertices (indices into ``group_roc``'s) on each group's upper convex hull,
  left to right with strictly increasing FPR, padded by repeating the last, (1, 1)."""
  fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
  out = np.empty(fpr.shape, np.int32)
  for g, (f, t) in enumerate(zip(fpr, tpr)):
    # Of vertices at one FPR only the highest (the last: rates ascend together) can be on the top.
    candidates = [k for k in range(len(f)) if k == len(f) - 1 or f[k + 1] > f[k]]
    chain = []
    for k in candidates:  # Andrew's monotone chain, upper half: keep right turns only
      while len(chain) >= 2:
        i, j = chain[-2], chain[-1]
        if (f[j] - f[i]) * (t[k] - t[i]) - (t[j] - t[i]) * (f[k] - f[i]) >= 0:
          chain.pop()
        else:
          break
      chain.append(k)
    out[g] = chain + [chain[-1]] * (len(f) - len(chain))
  return out


def upper_hull(fpr, tpr, grid) -> Array:
  """``[G, X]``: the top of each group's ROC convex hull at the FPRs ``grid`` (``[X]``, or ``[G, X]``
  for one grid per group) — the highest TPR that mixing two of its thresholds reaches there."""
  hull = hull_vertices(fpr, tpr)
  fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
  grid = np.broadcast_to(np.asarray(grid, np.float64), (fpr.shape[0], np.shape(grid)[-1]))
  top = [np.interp(x, f[h], t[h]) for x, f, t, h in zip(grid, fpr, tpr, hull)]
  return jnp.asarray(np.stack(top) if top else np.zeros(grid.shape), jnp.float32)


def hull_point(fpr: Array, tpr: Array, hull: Array, x: Array) -> tuple[Array, Array, Array, Array]:
  """Each group's point on its upper hull at FPR ``x`` (``[G]``) as a mix of two ROC vertices: ``(left,
  right, weight, top)``, each ``[G]``, where ``(1 - weight) * vertex[left] + weight * vertex[right]`` is
  ``(x, top)`` and ``left <= right`` (so ``left``'s threshold is the higher). Jit-able; ``hull`` is
  ``hull_vertices``."""

  def one_group(f, t, h, x):
    hull_fpr, hull_tpr = f[h], t[h]
    i = jnp.clip(jnp.searchsorted(hull_fpr, x, side="right") - 1, 0, h.shape[0] - 1)
    j = jnp.minimum(i + 1, h.shape[0] - 1)
    span = hull_fpr[j] - hull_fpr[i]
    w = jnp.where(span > 0, jnp.clip((x - hull_fpr[i]) / jnp.where(span > 0, span, 1.0), 0.0, 1.0), 0.0)
    return h[i], h[j], w, hull_tpr[i] + w * (hull_tpr[j] - hull_tpr[i])

  return jax.vmap(one_group)(fpr, tpr, hull, x)


def candidate_fprs(fpr, resolution: int = 400) -> np.ndarray:
  """``[G, resolution + 1 + V]``: the FPRs each group may take in the search, ascending: the grid of
  ``resolution`` steps and the group's own ROC vertices."""
  fpr = np.asarray(fpr, np.float32)
  grid = np.linspace(0.0, 1.0, resolution + 1, dtype=np.float32)
  return np.sort(np.concatenate([np.broadcast_to(grid, (fpr.shape[0], resolution + 1)), fpr], axis=1), axis=1)


def _group_points(x, top_tpr, prevalence, corner, epsilon, constraint):
  """``(accuracy, tpr, feasible)`` of a group's best point at FPR ``x`` whose TPR (or, for demographic
  parity, selection rate) lies in ``[corner, corner + epsilon]``, its hull's TPR there being
  ``top_tpr``; broadcasts."""
  p = prevalence
  if constraint == "demographic_parity":
    # Selection rate p * tpr + (1 - p) * x, as high as the hull and the band allow; no division by p,
    # so that a group without positives (p = 0, tpr undefined) is fitted by its FPR alone.
    top = jnp.minimum(x + p * (top_tpr - x), corner + epsilon)
    feasible = top >= jnp.maximum(x, corner) - TOLERANCE
    accuracy = (1 - p) * (1 - x) + p * x + (top - x)
    tpr = jnp.where(p > 0, x + (top - x) / jnp.where(p > 0, p, 1.0), x)
    return accuracy, tpr, feasible
  top = jnp.minimum(top_tpr, corner + epsilon)
  feasible = top >= jnp.maximum(x, corner) - TOLERANCE  # below the diagonal is never better
  return (1 - p) * (1 - x) + p * top, top, feasible


@functools.partial(jax.jit, static_argnames=("constraint", "resolution"))
def best_rates(fprs: Array, hull_tpr: Array, prevalence: Array, counts: Array, epsilon: Array, *,
               constraint: str = "equalized_odds", resolution: int = 400) -> dict[str, Array]:
  """The most accurate group-threshold predictor whose groups' rates differ by at most ``epsilon``.

  ``fprs`` ``[G, X]`` are each group's candidate FPRs, ascending (``candidate_fprs``), ``hull_tpr``
  its hull there (``upper_hull``), ``prevalence`` and ``counts`` ``[G]`` its share of positives and its
  rows. Equalized odds bounds FPRs and TPRs (an epsilon box), equal opportunity the TPRs, demographic
  parity the selection rates (bands); the box's and bands' lower corners run over a grid of
  ``resolution`` steps. Returns ``accuracy`` (expected, over the G groups' rows), ``box`` (the corner:
  (FPR, TPR), or (0, selection rate)) and per group ``fpr``, ``tpr`` (at or under the hull) and
  ``accuracy_by_group``. Jit-compiled once per shape: ``epsilon`` is traced, so it vmaps.
  """
  if constraint not in CONSTRAINTS:
    raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
  corners = jnp.linspace(0.0, 1.0, resolution + 1)
  last = fprs.shape[1] - 1
  p = prevalence[None, :]

  def along_fpr(corner):
    """Per group, for the band at ``corner``: the first and last feasible candidate (an interval, the
    accuracy being concave along it) and the best."""
    accuracy, _, feasible = _group_points(fprs, hull_tpr, prevalence[:, None], corner, epsilon, constraint)
    first = jnp.argmax(feasible, axis=-1)
    final = last - jnp.argmax(feasible[:, ::-1], axis=-1)
    best = jnp.argmax(jnp.where(feasible, accuracy, -jnp.inf), axis=-1)
    return first, final, best

  first, final, best = jax.lax.map(along_fpr, corners)                  # [B, G] each

  def for_corner_a(a):
    if constraint == "equalized_odds":
      low = jax.vmap(lambda f: jnp.searchsorted(f, a - TOLERANCE, side="left"))(fprs)
      high = jax.vmap(lambda f: jnp.searchsorted(f, a + epsilon + TOLERANCE, side="right"))(fprs) - 1
    else:  # the FPR is free
      low, high = jnp.zeros(fprs.shape[0], jnp.int32), jnp.full(fprs.shape[0], last, jnp.int32)
    lower, upper = jnp.maximum(first, low[None]), jnp.minimum(final, high[None])
    chosen = jnp.clip(best, lower, upper)                                # [B, G]
    x = jnp.take_along_axis(fprs[None], chosen[..., None], axis=-1)[..., 0]
    top = jnp.take_along_axis(hull_tpr[None], chosen[..., None], axis=-1)[..., 0]
    accuracy, tpr, feasible = _group_points(x, top, p, corners[:, None], epsilon, constraint)
    group_acc = jnp.where(feasible & (lower <= upper), accuracy, -jnp.inf)
    total = jnp.sum(group_acc * counts[None], axis=-1) / jnp.sum(counts)  # -inf if a group has no point
    i = jnp.argmax(total)
    return total[i], corners[i], x[i], tpr[i], group_acc[i]

  a_corners = corners if constraint == "equalized_odds" else corners[:1]
  totals, bs, xs, ts, accs = jax.lax.map(for_corner_a, a_corners)
  k = jnp.argmax(totals)
  return {"accuracy": totals[k], "box": (a_corners[k], bs[k]), "fpr": xs[k], "tpr": ts[k],
          "accuracy_by_group": accs[k]}


def group_threshold_frontier(scores, y_true, groups, epsilons, *, num_groups: int,
                             constraint: str = "equalized_odds", resolution: int = 400,
                             num_thresholds: int = 256) -> list[dict]:
  """For each epsilon, the best accuracy of group-threshold predictors whose ``constraint`` gap is at
  most epsilon on these rows (see the module docstring), as a dict: ``epsilon``, ``accuracy``,
  ``fpr`` / ``tpr`` / ``selection_rate`` / ``accuracy_by_group`` (lists, one per group) and the
  corner ``box``. All epsilons are searched at once (one compilation).

  ``scores`` [N] (any monotone score of class 1), ``y_true`` [N] in {0, 1}, ``groups`` [N] in
  [0, num_groups); rows with another label or group, or a non-finite score, are left out. Under
  equalized odds and equal opportunity every group must hold both classes: a group without positives
  (or negatives) has no ROC, and is named. Demographic parity needs every group to have rows.
  """
  if constraint not in CONSTRAINTS:
    raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)}, got {constraint!r}")
  scores, y_true, groups = (np.ravel(np.asarray(a)) for a in (scores, y_true, groups))
  valid = np.isfinite(scores) & np.isin(y_true, (0, 1)) & (groups >= 0) & (groups < num_groups)
  scores, y_true, groups = scores[valid], y_true[valid].astype(np.int32), groups[valid].astype(np.int32)
  positives = np.bincount(groups[y_true == 1], minlength=num_groups)
  negatives = np.bincount(groups[y_true == 0], minlength=num_groups)
  if constraint == "demographic_parity":
    lacking = [g for g in range(num_groups) if not positives[g] + negatives[g]]
    if lacking:
      raise ValueError(f"groups {lacking} have no rows: their selection rate, and so the frontier, is "
                       "undefined")
  else:
    lacking = [g for g in range(num_groups) if not positives[g] or not negatives[g]]
    if lacking:
      raise ValueError(f"groups {lacking} lack positives or negatives (positives {positives.tolist()}, "
                       f"negatives {negatives.tolist()}): their ROC, and so the frontier, is undefined")
  epsilons = [float(e) for e in epsilons]
  for epsilon in epsilons:
    if not 0 <= epsilon <= 1:
      raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
  if not epsilons:
    return []
  fpr, tpr = group_roc(scores, y_true, groups, num_groups=num_groups, num_thresholds=num_thresholds)
  fprs = candidate_fprs(fpr, resolution)
  hull = upper_hull(fpr, tpr, fprs)
  counts = jnp.asarray(positives + negatives, jnp.float32)
  prevalence = jnp.asarray(positives / (positives + negatives), jnp.float32)
  search = functools.partial(best_rates, constraint=constraint, resolution=resolution)
  found = jax.vmap(search, in_axes=(None, None, None, None, 0))(jnp.asarray(fprs), hull, prevalence, counts,
                                                                 jnp.asarray(epsilons, jnp.float32))
  found = jax.tree.map(np.asarray, found)
  out = []
  for k, epsilon in enumerate(epsilons):
    selection = np.asarray(prevalence) * found["tpr"][k] + (1 - np.asarray(prevalence)) * found["fpr"][k]
    out.append({"epsilon": epsilon, "accuracy": float(found["accuracy"][k]),
                "box": (float(found["box"][0][k]), float(found["box"][1][k])),
                "fpr": found["fpr"][k].tolist(), "tpr": found["tpr"][k].tolist(),
                "selection_rate": selection.tolist(),
                "accuracy_by_group": found["accuracy_by_group"][k].tolist()})
  return out


def equalized_odds_frontier(scores, y_true, groups, epsilons, *, num_groups: int, resolution: int = 400,
                            num_thresholds: int = 256) -> list[dict]:
  """``group_threshold_frontier`` under equalized odds: for each epsilon, the best accuracy of
  group-threshold predictors with every pair of groups' TPRs and FPRs within epsilon on these rows."""
  return group_threshold_frontier(scores, y_true, groups, epsilons, num_groups=num_groups,
                                  constraint="equalized_odds", resolution=resolution,
                                  num_thresholds=num_thresholds)


def model_as_is(scores, y_true, groups, num_groups: int) -> dict:
  """The model's own accuracy and equalized-odds gap at its decision threshold (score 0, a logit), the
  point that the frontier is compared with. Known labels and groups only."""
  scores, y_true, groups = (np.asarray(a) for a in (scores, y_true, groups))
  predicted, positive = scores > 0, y_true == 1
  tpr = [np.mean(predicted[(groups == k) & positive]) for k in range(num_groups)]
  fpr = [np.mean(predicted[(groups == k) & ~positive]) for k in range(num_groups)]
  return {"accuracy": float(np.mean(predicted == positive)), "gap": float(max(np.ptp(tpr), np.ptp(fpr)))}
