"""How accurate a classifier's scores can be made under an equalized-odds bound by group thresholds.

Hardt, Price & Srebro (2016) show that any predictor derived from a score and the group alone (group
thresholds, randomised between two thresholds where needed) reaches exactly the points under each
group's ROC convex hull. So for a bound epsilon on the equalized-odds gap (every pair of groups' TPRs
and FPRs within epsilon, ``disparity.difference`` of both), the best such predictor puts every group's
(FPR, TPR) in one epsilon-by-epsilon box and, inside it, as high on the group's hull as accuracy asks.
``equalized_odds_frontier`` searches the boxes and returns that best accuracy for each epsilon: what
post-processing (fairlearn's ThresholdOptimizer, Hardt et al.'s LP) can reach on these scores, and the
yardstick for an in-training mitigation, which beats it only by improving some group's ROC itself.

Computed on the rows it is evaluated on (the test split's labels), the figure is an oracle: an upper
bound on what a post-processing fit elsewhere would get there. The search runs on a grid of ``1 /
resolution`` in FPR and TPR (box corners and points on the hull), so the figure is within about that
step's worth of rates below the exact optimum; the default 400 steps is 0.0025.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fairjax.metrics import thresholds as thresholds_lib

Array = jax.Array


def group_roc(scores, y_true, groups, *, num_groups: int, num_thresholds: int = 256) -> tuple[Array, Array]:
  """``(fpr, tpr)``, each ``[G, T + 2]``: every group's ROC at ``num_thresholds`` quantiles of the scores,
  with the end points (0, 0) and (1, 1), ordered by FPR."""
  scores = np.asarray(scores, np.float32)
  cuts = np.unique(np.quantile(scores[np.isfinite(scores)], np.linspace(0, 1, num_thresholds)))
  counts = thresholds_lib.threshold_counts(scores, y_true, groups, cuts, num_groups=num_groups)  # [T, G, y, p]
  tpr = counts[:, :, 1, 1] / jnp.maximum(counts[:, :, 1].sum(-1), 1)
  fpr = counts[:, :, 0, 1] / jnp.maximum(counts[:, :, 0].sum(-1), 1)
  ones, zeros = jnp.ones((1, num_groups)), jnp.zeros((1, num_groups))
  fpr, tpr = jnp.concatenate([ones, fpr, zeros]).T, jnp.concatenate([ones, tpr, zeros]).T
  return fpr[:, ::-1], tpr[:, ::-1]  # thresholds ascend, so rates descend: flip to ascending FPR


def upper_hull(fpr: Array, tpr: Array, grid: Array) -> Array:
  """``[G, X]``: the top of each group's ROC convex hull at the FPRs ``grid`` — the highest TPR that
  mixing two of its thresholds reaches there."""

  def one_group(f, t):
    fi, fj, ti, tj = f[:, None, None], f[None, :, None], t[:, None, None], t[None, :, None]
    x = grid[None, None, :]
    span = fj - fi
    inside = (fi <= x) & (x <= fj) & (span >= 0)
    w = jnp.where(span > 0, (x - fi) / jnp.where(span > 0, span, 1.0), 0.0)
    value = jnp.where(span > 0, ti + w * (tj - ti), jnp.maximum(ti, tj))
    return jnp.max(jnp.where(inside, value, -jnp.inf), axis=(0, 1))

  return jax.lax.map(lambda ft: one_group(*ft), (fpr, tpr))


@functools.partial(jax.jit, static_argnames=("resolution",))
def _best_boxes(hull: Array, prevalence: Array, counts: Array, epsilon: Array, resolution: int):
  """Best accuracy over boxes [a, a + eps] x [b, b + eps] (a, b on the grid), its box and group points."""
  grid = jnp.linspace(0.0, 1.0, resolution + 1)
  x = grid[None, :]                                                     # [1, X] candidate FPRs
  p = prevalence[:, None]

  def for_corner_a(a):
    in_fpr = (x >= a - 1e-7) & (x <= a + epsilon + 1e-7)                # [1, X]
    b = grid[:, None, None]                                             # [B, 1, 1]
    top = jnp.minimum(hull[None], b + epsilon)                          # [B, G, X]
    bottom = jnp.maximum(b, x[None])                                    # below the diagonal: never better
    feasible = in_fpr[None] & (top >= bottom - 1e-7)
    accuracy = jnp.where(feasible, (1 - p)[None] * (1 - x[None]) + p[None] * top, -jnp.inf)
    best_x = jnp.argmax(accuracy, axis=-1)                              # [B, G]
    group_acc = jnp.max(accuracy, axis=-1)
    total = jnp.sum(group_acc * counts[None], axis=-1) / jnp.sum(counts)  # -inf if a group has no point
    i = jnp.argmax(total)
    chosen_x = grid[best_x[i]]
    chosen_t = jnp.take_along_axis(top[i], best_x[i][:, None], axis=-1)[:, 0]
    return total[i], grid[i], chosen_x, chosen_t, group_acc[i]

  totals, bs, xs, ts, accs = jax.lax.map(for_corner_a, grid)
  k = jnp.argmax(totals)
  return totals[k], grid[k], bs[k], xs[k], ts[k], accs[k]


def equalized_odds_frontier(scores, y_true, groups, epsilons, *, num_groups: int, resolution: int = 400,
                            num_thresholds: int = 256) -> list[dict]:
  """For each epsilon, the best accuracy of group-threshold predictors with an equalized-odds gap of at
  most epsilon on these rows (see the module docstring), as a dict: ``epsilon``, ``accuracy``,
  ``fpr`` / ``tpr`` / ``accuracy_by_group`` (lists, one per group) and the box's corner ``box``.

  ``scores`` [N] (any monotone score of class 1), ``y_true`` [N] in {0, 1}, ``groups`` [N] in
  [0, num_groups); rows with another label or group, or a non-finite score, are left out. Every group
  must hold both classes: a group without positives (or negatives) has no ROC, and is named.
  """
  scores, y_true, groups = (np.ravel(np.asarray(a)) for a in (scores, y_true, groups))
  valid = np.isfinite(scores) & np.isin(y_true, (0, 1)) & (groups >= 0) & (groups < num_groups)
  scores, y_true, groups = scores[valid], y_true[valid], groups[valid]
  positives = np.bincount(groups[y_true == 1], minlength=num_groups)
  negatives = np.bincount(groups[y_true == 0], minlength=num_groups)
  lacking = [g for g in range(num_groups) if not positives[g] or not negatives[g]]
  if lacking:
    raise ValueError(f"groups {lacking} lack positives or negatives (positives {positives.tolist()}, "
                     f"negatives {negatives.tolist()}): their ROC, and so the frontier, is undefined")
  fpr, tpr = group_roc(scores, y_true, groups, num_groups=num_groups, num_thresholds=num_thresholds)
  hull = upper_hull(fpr, tpr, jnp.linspace(0.0, 1.0, resolution + 1))
  counts = jnp.asarray(positives + negatives, jnp.float32)
  prevalence = jnp.asarray(positives / (positives + negatives), jnp.float32)
  out = []
  for epsilon in epsilons:
    if not 0 <= epsilon <= 1:
      raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    accuracy, a, b, xs, ts, accs = _best_boxes(hull, prevalence, counts, jnp.float32(epsilon), resolution)
    out.append({"epsilon": float(epsilon), "accuracy": float(accuracy), "box": (float(a), float(b)),
                "fpr": np.asarray(xs).tolist(), "tpr": np.asarray(ts).tolist(),
                "accuracy_by_group": np.asarray(accs).tolist()})
  return out


def model_as_is(scores, y_true, groups, num_groups: int) -> dict:
  """The model's own accuracy and equalized-odds gap at its decision threshold (score 0, a logit), the
  point that the frontier is compared with. Known labels and groups only."""
  scores, y_true, groups = (np.asarray(a) for a in (scores, y_true, groups))
  predicted, positive = scores > 0, y_true == 1
  tpr = [np.mean(predicted[(groups == k) & positive]) for k in range(num_groups)]
  fpr = [np.mean(predicted[(groups == k) & ~positive]) for k in range(num_groups)]
  return {"accuracy": float(np.mean(predicted == positive)), "gap": float(max(np.ptp(tpr), np.ptp(fpr)))}
