"""Group thresholds (Hardt et al. 2016): by hand, against the exact linear program, fairlearn and
error-parity, and as a saved file."""

import jax
import numpy as np
import pytest
from scipy.optimize import linprog

from fairjax.postprocess import derive
from fairjax.postprocess import thresholds

CONSTRAINTS = thresholds.CONSTRAINTS


def _hand_example():
  """Two groups of four positives and four negatives. Group 0's ROC hull is (0, 0) - (1/4, 3/4) - (1, 1)
  (vertices at thresholds 0.8 and 0.2), group 1's is (0, 0) - (0, 1/2) - (1, 1) (thresholds 0.9, 0.4).
  At a common point (x, t) accuracy is 1/2 + (t - x) / 2, and the lower of the two hulls is 3x up to
  x = 1/5 (group 0's) and 1/2 + x/2 after it (group 1's): the exact equalized-odds rule puts both groups
  at (1/5, 3/5), accuracy 0.7. Group 0 gets there by taking the rows scoring in [0.4, 0.9) with
  probability 4/5 (the segment from (0, 0) to (1/4, 3/4)), group 1 by taking all rows at 0.9 and up
  and the rest with probability 1/5 (the segment from (0, 1/2) to (1, 1))."""
  scores = np.array([.8, .8, .8, .2, .8, .2, .2, .2, .9, .9, .4, .4, .4, .4, .4, .4], np.float32)
  labels = np.array([1, 1, 1, 1, 0, 0, 0, 0] * 2)
  groups = np.repeat([0, 1], 8)
  return scores, labels, groups


def _synthetic(seed=0, n=3000, decimals=None):
  """Three groups of different sizes, prevalences and score quality (probabilities)."""
  rng = np.random.default_rng(seed)
  groups = rng.choice(3, n, p=[.5, .3, .2])
  labels = (rng.random(n) < np.array([.3, .5, .6])[groups]).astype(np.int32)
  logit = rng.normal(np.array([2.0, 1.2, .7])[groups] * (labels - .5) + np.array([0, .3, -.2])[groups], 1.0)
  scores = 1 / (1 + np.exp(-logit))
  return (np.round(scores, decimals) if decimals is not None else scores).astype(np.float32), labels, groups


def _rates(p_post, labels, groups, num_groups):
  """Per group (tpr, fpr, selection rate) of expected decisions, in float64."""
  p_post = np.asarray(p_post, np.float64)
  out = []
  for g in range(num_groups):
    mine = groups == g
    positive, negative = mine & (labels == 1), mine & (labels == 0)
    out.append((p_post[positive].mean(), p_post[negative].mean(), p_post[mine].mean()))
  return np.array(out)


def _gap(rates, constraint):
  spread = np.ptp(rates, axis=0)
  return {"equalized_odds": max(spread[0], spread[1]), "equal_opportunity": spread[0],
          "demographic_parity": spread[2]}[constraint]


def _accuracy(p_post, labels):
  p_post = np.asarray(p_post, np.float64)
  return float(np.mean(np.where(labels == 1, p_post, 1 - p_post)))


def _exact(scores, labels, groups, constraint, epsilon):
  """The linear program over every group's ROC vertices (all thresholds): convex mixtures, within one
  band of width epsilon in the bounded rates, maximising accuracy."""
  thresholds_ = np.concatenate([[np.inf], np.unique(scores)[::-1], [-np.inf]])
  num_groups, size = groups.max() + 1, len(thresholds_)
  cost, bounds_rows, bounds, equal_rows = np.zeros(num_groups * size + 2), [], [], []
  base = 0.0
  for g in range(num_groups):
    mine = groups == g
    positive, share = labels[mine].mean(), mine.mean()
    fpr = np.array([np.mean(scores[mine & (labels == 0)] >= c) for c in thresholds_])
    tpr = np.array([np.mean(scores[mine & (labels == 1)] >= c) for c in thresholds_])
    block = slice(g * size, (g + 1) * size)
    cost[block] = -share * (positive * tpr - (1 - positive) * fpr)
    base += share * (1 - positive)
    banded = {"equalized_odds": [(fpr, 0), (tpr, 1)], "equal_opportunity": [(tpr, 1)],
              "demographic_parity": [(positive * tpr + (1 - positive) * fpr, 1)]}[constraint]
    for rate, corner in banded:  # corner <= rate <= corner + epsilon
      row = np.zeros_like(cost); row[block] = rate; row[-2 + corner] = -1
      bounds_rows += [row, -row]; bounds += [epsilon, 0.0]
    row = np.zeros_like(cost); row[block] = 1; equal_rows.append(row)
  result = linprog(cost, A_ub=np.array(bounds_rows), b_ub=bounds, A_eq=np.array(equal_rows),
                   b_eq=np.ones(num_groups), bounds=[(0, None)] * (num_groups * size) + [(0, 1), (0, 1)],
                   method="highs")
  assert result.status == 0
  return -result.fun + base


def test_the_hand_example_is_solved_exactly():
  scores, labels, groups = _hand_example()
  rule = thresholds.fit(scores, labels, groups, num_groups=2, min_group_size=1)
  np.testing.assert_allclose(rule.probabilities(scores, groups),
                             [.8, .8, .8, 0, .8, 0, 0, 0, 1, 1, .2, .2, .2, .2, .2, .2], atol=1e-6)
  np.testing.assert_allclose(rule.rules, [[.4, .9, 0, .8, 1], [-np.inf, .8, 0, .2, 1]], atol=1e-6)
  assert rule.fit["accuracy"] == pytest.approx(0.7, abs=1e-6)
  assert rule.fit["gap"] == pytest.approx(0, abs=1e-6)
  for group in rule.fit["by_group"]:
    assert (group["target_fpr"], group["target_tpr"]) == pytest.approx((0.2, 0.6), abs=1e-6)
  # Unbounded, each group takes its most accurate threshold, 0.8 and 0.9 (6 of 8 right each): a gap of 1/4.
  loose = thresholds.fit(scores, labels, groups, num_groups=2, min_group_size=1, epsilon=1.0)
  best = (scores >= np.repeat(np.float32([.8, .9]), 8)).astype(float)
  np.testing.assert_allclose(loose.probabilities(scores, groups), best)
  assert loose.fit["accuracy"] == pytest.approx(0.75) and loose.fit["gap"] == pytest.approx(0.25)
  # One threshold per group: at gap 0 only the trivial rules (all 0 here), at 1/4 thresholds 0.8 and 0.9.
  trivial = thresholds.fit(scores, labels, groups, num_groups=2, min_group_size=1, randomized=False)
  assert trivial.fit["accuracy"] == pytest.approx(0.5) and "trivial" in trivial.note
  single = thresholds.fit(scores, labels, groups, num_groups=2, min_group_size=1, epsilon=0.25,
                          randomized=False)
  np.testing.assert_allclose(single.probabilities(scores, groups), best)
  assert single.fit["accuracy"] == pytest.approx(0.75) and not single.note


@pytest.mark.parametrize("constraint", CONSTRAINTS)
@pytest.mark.parametrize("epsilon", [0.0, 0.05])
def test_fit_rows_reach_the_chosen_points_within_the_bound_near_the_exact_optimum(constraint, epsilon):
  scores, labels, groups = _synthetic(1, n=900, decimals=2)  # <= 256 distinct scores: the exact ROC
  rule = thresholds.fit(scores, labels, groups, num_groups=3, constraint=constraint, epsilon=epsilon)
  p_post = rule.probabilities(scores, groups)
  rates = _rates(p_post, labels, groups, 3)
  for g, group in enumerate(rule.fit["by_group"]):
    assert rates[g, 1] == pytest.approx(group["target_fpr"], abs=1e-6)
    assert rates[g, 0] == pytest.approx(group["target_tpr"], abs=1e-6)
  assert _gap(rates, constraint) <= epsilon + 1e-6
  assert rule.fit["accuracy"] == pytest.approx(_accuracy(p_post, labels), abs=1e-6)
  exact = _exact(scores, labels, groups, constraint, epsilon)
  assert exact - 0.006 <= rule.fit["accuracy"] <= exact + 1e-5


def test_epsilon_one_is_each_groups_most_accurate_threshold():
  scores, labels, groups = _synthetic(2, n=900, decimals=2)  # the exact ROC: every distinct score a threshold
  rule = thresholds.fit(scores, labels, groups, num_groups=3, epsilon=1.0)
  for g in range(3):
    s, y = scores[groups == g], labels[groups == g]
    best = max(np.mean((s >= c) == (y == 1)) for c in np.concatenate([s, [np.inf]]))
    assert rule.fit["by_group"][g]["accuracy"] == pytest.approx(best, abs=1e-6)


def test_one_threshold_per_group_is_the_best_choice_within_the_bound():
  scores, labels, groups = _synthetic(3, n=600, decimals=1)
  cuts = np.concatenate([[np.inf], np.unique(scores)])
  decided = scores[None, :] >= cuts[:, None]                                     # [cut, row]
  # Every group's rates and correct rows at every cut; then every choice of one cut per group at once.
  per_group = []
  for g in range(3):
    mine, positive = groups == g, labels == 1
    tpr, fpr = decided[:, mine & positive].mean(1), decided[:, mine & ~positive].mean(1)
    correct = (decided[:, mine] == positive[mine]).sum(1)
    per_group.append(np.stack([tpr, fpr, decided[:, mine].mean(1), correct], axis=1))
  grid = np.stack(np.meshgrid(*[np.arange(len(cuts))] * 3, indexing="ij"), -1).reshape(-1, 3)  # [choice, g]
  chosen = np.stack([per_group[g][grid[:, g]] for g in range(3)], axis=1)        # [choice, g, 4]
  accuracy = chosen[..., 3].sum(1) / len(scores)
  for constraint, epsilon in zip(CONSTRAINTS, (0.1, 0.05, 0.05)):
    rule = thresholds.fit(scores, labels, groups, num_groups=3, constraint=constraint, epsilon=epsilon,
                          randomized=False)
    p_post = np.asarray(rule.probabilities(scores, groups))
    assert set(np.unique(p_post)) <= {0.0, 1.0}
    spread = np.ptp(chosen[..., :3], axis=1)
    gap = {"equalized_odds": np.maximum(spread[:, 0], spread[:, 1]), "equal_opportunity": spread[:, 0],
           "demographic_parity": spread[:, 2]}[constraint]
    assert _gap(_rates(p_post, labels, groups, 3), constraint) <= epsilon + 1e-6
    best = accuracy[gap <= epsilon + 1e-9].max()
    assert _accuracy(p_post, labels) == pytest.approx(best, abs=1e-6), constraint


def test_small_and_one_class_groups_get_the_pooled_rule_with_a_warning():
  scores, labels, groups = _synthetic(4, n=1000, decimals=2)  # every score a threshold of the ROCs
  groups = np.where(np.arange(1000) < 20, 3, groups)  # group 3: 20 rows
  labels = np.where(groups == 2, 1, labels)           # group 2: positives only
  names = ["a", "b", "c", "tiny"]
  with pytest.warns(thresholds.PoolingWarning, match=r"c \(\d+ rows, \d+ positive\), tiny \(20 rows"):
    rule = thresholds.fit(scores, labels, groups, num_groups=4, group_names=names)
  assert rule.pooled.tolist() == [False, False, True, True]
  np.testing.assert_array_equal(rule.rules[2], rule.pooled_rule)
  np.testing.assert_array_equal(rule.rules[3], rule.pooled_rule)
  assert [g["pooled"] for g in rule.to_json()["groups"]] == [False, False, True, True]
  # The pooled rule is the single threshold most accurate on all rows; unknown groups get it too.
  best = max(np.mean((scores >= c) == (labels == 1)) for c in np.unique(scores))
  pooled = rule.probabilities(scores, np.full(1000, -1))
  assert _accuracy(pooled, labels) == pytest.approx(best, abs=1e-6)
  assert rule.fit["gap"] <= 1e-6  # over the fitted groups


def test_saved_rule_gives_the_same_probabilities_and_draws(tmp_path):
  scores, labels, groups = _synthetic(5, n=1000)
  rule = thresholds.fit(scores, labels, groups, num_groups=3, epsilon=0.02, group_names=["x", "y", "z"])
  rule.save(str(tmp_path / "rule.json"))
  again = thresholds.GroupThresholds.load(str(tmp_path / "rule.json"))
  assert again.group_names == ["x", "y", "z"] and again.fit["by_group"] == rule.fit["by_group"]
  np.testing.assert_array_equal(again.probabilities(scores, groups), rule.probabilities(scores, groups))
  key = jax.random.PRNGKey(7)
  np.testing.assert_array_equal(again.predict(scores, groups, key), rule.predict(scores, groups, key))
  # Decisions are drawn with their probabilities: 100 copies of every row, one key.
  draws = np.asarray(rule.predict(np.tile(scores, 100), np.tile(groups, 100), key)).reshape(100, -1).mean(0)
  assert np.abs(draws - np.asarray(rule.probabilities(scores, groups))).max() < 0.2
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".thresholds-")]
  with pytest.raises(FileNotFoundError, match="predictor file not found"):
    thresholds.GroupThresholds.load(str(tmp_path / "nope.json"))
  (tmp_path / "bad.json").write_text('{"constraint": "equalized_odds"}')
  with pytest.raises(ValueError, match="not a saved group-threshold rule"):
    thresholds.GroupThresholds.load(str(tmp_path / "bad.json"))


def test_one_compilation_serves_every_epsilon_and_the_frontier():
  scores, labels, groups = _synthetic(6, n=2000)
  thresholds.fit(scores, labels, groups, num_groups=3, epsilon=0.0)
  compiled = derive.randomized_rules._cache_size()  # pylint: disable=protected-access
  for epsilon in (0.03, 0.1, 1.0):
    thresholds.fit(scores, labels, groups, num_groups=3, epsilon=epsilon)
  assert derive.randomized_rules._cache_size() == compiled  # pylint: disable=protected-access
  fit_rows = tuple(a[:1000] for a in (scores, labels, groups))
  apply_rows = tuple(a[1000:] for a in (scores, labels, groups))
  found = thresholds.frontier(fit_rows, apply_rows, [0.0, 0.05, 0.1, 1.0], num_groups=3, num_resamples=160)
  found += thresholds.frontier(fit_rows, apply_rows, [0.02, 0.04, 0.06, 0.08], num_groups=3,
                               num_resamples=160)
  assert thresholds._frontier._cache_size() == 1  # pylint: disable=protected-access
  for row in found:
    assert row["fit_gap"] <= row["epsilon"] + 1e-6
    assert row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1]
    assert row["gap_ci"][0] - 1e-6 <= row["gap"] <= row["gap_ci"][1] + 1e-6
    assert row["oracle_gap"] <= row["epsilon"] + 1e-6
    # The oracle bounds the deployable rule, up to the grid and pooling.
    assert row["accuracy"] <= row["oracle_accuracy"] + 0.01
  rule = thresholds.fit(*fit_rows, num_groups=3, epsilon=0.05)
  applied = _accuracy(rule.probabilities(apply_rows[0], apply_rows[2]), apply_rows[1])
  assert found[1]["accuracy"] == pytest.approx(applied, abs=1e-5)


def test_one_vs_rest_fits_each_class_against_the_rest():
  rng = np.random.default_rng(8)
  groups = rng.integers(0, 3, 1000)
  labels = rng.integers(0, 3, 1000)
  logits = rng.normal(0, 1, (1000, 3)) + 1.5 * np.eye(3)[labels] * np.array([1.0, 0.7, 0.5])[groups, None]
  scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  rules = thresholds.fit_one_vs_rest(scores, labels, groups, num_groups=3, epsilon=0.02)
  p_post = np.asarray(thresholds.probabilities_one_vs_rest(rules, scores, groups))
  assert p_post.shape == (1000, 3)
  for c in range(3):
    assert _gap(_rates(p_post[:, c], (labels == c).astype(int), groups, 3), "equalized_odds") <= 0.02 + 1e-6


@pytest.mark.parametrize("kwargs, message", [
    ({"constraint": "parity"}, "constraint must be one of"),
    ({"epsilon": 1.5}, r"epsilon must lie in \[0, 1\]"),
    ({"min_group_size": 0}, "min_group_size"),
    ({"scores": np.array([.1, np.nan, .3, .4])}, "NaN or infinite"),
    ({"labels": np.array([0, 1, 2, 1])}, "labels must be 0 or 1"),
    ({"groups": np.array([0, 1, 2, 1])}, r"groups must be integers in \[0, 2\)"),
])
def test_bad_input_is_named(kwargs, message):
  data = {"scores": np.array([.1, .2, .3, .4]), "labels": np.array([0, 1, 0, 1]),
          "groups": np.array([0, 1, 0, 1])}
  kwargs = dict(kwargs)
  data.update({k: kwargs.pop(k) for k in list(kwargs) if k in data})
  with pytest.raises(ValueError, match=message):
    thresholds.fit(data["scores"], data["labels"], data["groups"], num_groups=2, **kwargs)


def _fairlearn_pmf(scores, labels, groups, constraints, **options):
  """fairlearn's ThresholdOptimizer on the scores; its expected decisions (``_pmf_predict``)."""
  postprocessing = pytest.importorskip("fairlearn.postprocessing")
  from sklearn.base import BaseEstimator, ClassifierMixin  # pylint: disable=g-import-not-at-top

  class Scores(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose prediction is its one feature: the score itself."""

    def fit(self, x, y):
      return self

    def predict(self, x):
      return np.asarray(x)[:, 0]

    def __sklearn_is_fitted__(self):
      return True

  x = scores[:, None].astype(np.float64)  # fairlearn (on pandas 3) writes float64 into the scores' dtype
  optimizer = postprocessing.ThresholdOptimizer(estimator=Scores(), constraints=constraints, prefit=True,
                                                objective="accuracy_score", predict_method="predict",
                                                **options)
  optimizer.fit(x, labels, sensitive_features=groups)
  return optimizer._pmf_predict(x, sensitive_features=groups)[:, 1]  # pylint: disable=protected-access


@pytest.mark.parametrize("constraint, epsilon, options", [
    ("equalized_odds", 0.0, {}),
    ("demographic_parity", 0.0, {}),
    ("demographic_parity", 0.05, {"tol": 0.05}),
])
def test_agrees_with_fairlearn(constraint, epsilon, options):
  scores, labels, groups = _synthetic(0, n=3000)
  theirs = _fairlearn_pmf(scores, labels, groups, constraint, **options)
  rule = thresholds.fit(scores, labels, groups, num_groups=3, constraint=constraint, epsilon=epsilon)
  ours = rule.probabilities(scores, groups)
  assert _accuracy(ours, labels) == pytest.approx(_accuracy(theirs, labels), abs=0.005)
  assert _gap(_rates(ours, labels, groups, 3), constraint) <= epsilon + 1e-6
  assert _gap(_rates(theirs, labels, groups, 3), constraint) <= epsilon + 0.01  # fairlearn's grid of 1000


@pytest.mark.parametrize("constraint, theirs", [
    ("equalized_odds", "equalized_odds"),
    ("equal_opportunity", "true_positive_rate_parity"),
    ("demographic_parity", "demographic_parity"),
])
def test_relaxed_rule_agrees_with_error_parity(constraint, theirs):
  error_parity = pytest.importorskip(
      "error_parity", reason="error-parity (Cruz & Hardt's relaxed post-processing) is not installed: "
      "pip install --no-deps error-parity, with cvxpy and ecos")
  scores, labels, groups = _synthetic(9, n=3000)
  for epsilon in (0.02, 0.05):
    optimizer = error_parity.RelaxedThresholdOptimizer(predictor=lambda x: x, constraint=theirs,
                                                       tolerance=epsilon, seed=0)
    optimizer.fit(X=scores, y=labels, group=groups, y_scores=scores)
    rule = thresholds.fit(scores, labels, groups, num_groups=3, constraint=constraint, epsilon=epsilon)
    assert rule.fit["accuracy"] == pytest.approx(1 - optimizer.cost(), abs=0.01)
    assert _gap(_rates(rule.probabilities(scores, groups), labels, groups, 3), constraint) <= epsilon + 1e-6
