"""The equalized-odds frontier of group thresholds, against an exact linear program and by hand."""

import numpy as np
import pytest
from scipy.optimize import linprog

from fairjax.metrics import frontier


def _scores(seed=0, n=(3000, 1000), separation=(2.5, 1.0)):
  """Two groups whose scores separate the classes well (group 0) and badly (group 1)."""
  rng = np.random.default_rng(seed)
  z, y, g = [], [], []
  for group, (count, d) in enumerate(zip(n, separation)):
    labels = rng.integers(0, 2, count)
    z.append(rng.normal(d * (labels - 0.5), 1.0))
    y.append(labels)
    g.append(np.full(count, group))
  return np.concatenate(z), np.concatenate(y), np.concatenate(g)


def _roc(z, y):
  cuts = np.concatenate([[np.inf], np.sort(z)[::-1], [-np.inf]])
  return np.array([np.mean(z[y == 0] >= c) for c in cuts]), np.array([np.mean(z[y == 1] >= c) for c in cuts])


def _exact(z, y, g, epsilon):
  """Hardt et al.'s LP: per-group convex mixtures of ROC points, all within one epsilon box (both rates),
  maximising accuracy; box corner and mixtures solved jointly."""
  groups = np.unique(g)
  rocs = [_roc(z[g == k], y[g == k]) for k in groups]
  sizes = [len(r[0]) for r in rocs]
  n_w = sum(sizes)
  c, a_ub, b_ub, a_eq, b_eq = np.zeros(n_w + 2), [], [], [], []
  offset = 0
  for k, (fpr, tpr) in zip(groups, rocs):
    p, share = np.mean(y[g == k] == 1), np.mean(g == k)
    sl = slice(offset, offset + len(fpr))
    c[sl] = -share * (p * tpr - (1 - p) * fpr)
    for rate, column in ((fpr, n_w), (tpr, n_w + 1)):  # corner <= rate <= corner + epsilon
      row = np.zeros(n_w + 2); row[sl] = rate; row[column] = -1; a_ub.append(row.copy()); b_ub.append(epsilon)
      row[sl] = -rate; row[column] = 1; a_ub.append(row); b_ub.append(0.0)
    row = np.zeros(n_w + 2); row[sl] = 1; a_eq.append(row); b_eq.append(1.0)
    offset += len(fpr)
  result = linprog(c, A_ub=np.array(a_ub), b_ub=b_ub, A_eq=np.array(a_eq), b_eq=b_eq,
                   bounds=[(0, None)] * n_w + [(0, 1), (0, 1)], method="highs")
  assert result.status == 0
  return -result.fun + sum(np.mean(g == k) * (1 - np.mean(y[g == k] == 1)) for k in groups)


@pytest.mark.parametrize("epsilon", [0.0, 0.03, 0.1])
def test_frontier_matches_the_exact_linear_program(epsilon):
  z, y, g = _scores()
  (got,) = frontier.equalized_odds_frontier(z, y, g, [epsilon], num_groups=2, num_thresholds=512)
  exact = _exact(z, y, g, epsilon)
  assert exact - 0.005 <= got["accuracy"] <= exact + 1e-6  # the grid only ever undershoots
  assert abs(got["fpr"][0] - got["fpr"][1]) <= epsilon + 1e-6
  assert abs(got["tpr"][0] - got["tpr"][1]) <= epsilon + 1e-6
  weights = np.bincount(g) / len(g)
  assert got["accuracy"] == pytest.approx(float(np.dot(weights, got["accuracy_by_group"])), abs=1e-5)


def test_no_bound_is_each_groups_best_threshold_and_tighter_bounds_cost_accuracy():
  z, y, g = _scores(1)
  results = frontier.equalized_odds_frontier(z, y, g, [0.0, 0.02, 0.05, 0.2, 1.0], num_groups=2)
  accuracies = [r["accuracy"] for r in results]
  assert accuracies == sorted(accuracies) and accuracies[0] < accuracies[-1] - 0.05
  best = sum(np.mean(g == k) * max(np.mean((z[g == k] >= c) == (y[g == k] == 1)) for c in z[g == k])
             for k in (0, 1))
  assert best - 0.003 <= accuracies[-1] <= best + 0.003


def test_groups_alike_lose_nothing_to_a_zero_gap():
  z, y, g = _scores(2, n=(2000, 2000), separation=(2.0, 2.0))
  tight, loose = frontier.equalized_odds_frontier(z, y, g, [0.0, 1.0], num_groups=2)
  assert tight["accuracy"] > loose["accuracy"] - 0.02


def test_a_group_without_one_class_is_named():
  z, y, g = _scores(3)
  y[g == 1] = 1
  with pytest.raises(ValueError, match=r"groups \[1\] lack positives or negatives"):
    frontier.equalized_odds_frontier(z, y, g, [0.05], num_groups=2)
  with pytest.raises(ValueError, match="epsilon must lie in"):
    frontier.equalized_odds_frontier(*_scores(3), [1.5], num_groups=2)
