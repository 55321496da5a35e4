"""Subspace removal (seed 000 §8.3) and the biased-prompt projection (Chuang et al. 2023) on planted data."""

import numpy as np
import pytest

from fairjax.clip import debias

D = 8
E = np.eye(D)


def _counterfactual_pairs(n=20, seed=0):
  """Pairs (the same 'person' as man and woman) that differ only along e0: rows 2i, 2i+1 are pair i."""
  rng = np.random.default_rng(seed)
  base = rng.normal(size=(n, D))
  base[:, 0] = 0.0  # orthogonal to e0, so both members of a pair have the same length
  x = np.concatenate([base + 0.8 * E[0], base - 0.8 * E[0]])
  groups = np.repeat([0, 1], n)
  pair = np.tile(np.arange(n), 2)
  return x, groups, pair


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_defining_sets_find_and_remove_the_group_direction():
  x, groups, pair = _counterfactual_pairs()
  subspace = debias.fit_subspace(x, pair, variance=0.99, alpha=1.0)
  assert subspace.k == 1
  np.testing.assert_allclose(subspace.explained_variance_ratio, [1.0], atol=1e-6)
  np.testing.assert_allclose(abs(subspace.basis[:, 0] @ E[0]), 1.0, atol=1e-6)
  out = np.asarray(subspace.apply(x))
  before = _unit(x)[groups == 0, 0].mean() - _unit(x)[groups == 1, 0].mean()
  after = out[groups == 0, 0].mean() - out[groups == 1, 0].mean()
  assert before > 0.5
  np.testing.assert_allclose(after, 0.0, atol=1e-6)  # the group means coincide along e0
  # Everything orthogonal to the subspace is left as it was.
  np.testing.assert_allclose(out[:, 1:], _unit(x)[:, 1:], atol=1e-6)


def test_alpha_scales_the_removed_component_exactly():
  x, _, pair = _counterfactual_pairs()
  subspace = debias.fit_subspace(x, pair, k=1, alpha=0.4)
  h = _unit(x)
  out = np.asarray(subspace.apply(x))
  np.testing.assert_allclose(out[:, 0], 0.6 * h[:, 0], atol=1e-6)
  np.testing.assert_allclose(out[:, 1:], h[:, 1:], atol=1e-6)
  np.testing.assert_allclose(np.asarray(subspace.with_alpha(1.0).apply(x))[:, 0], 0.0, atol=1e-6)
  np.testing.assert_allclose(subspace.projector, np.outer(subspace.basis[:, 0], subspace.basis[:, 0]))


def test_random_defining_sets_from_unpaired_data_find_the_direction():
  rng = np.random.default_rng(1)
  groups = rng.integers(0, 2, 400)
  x = rng.normal(0, 0.2, (400, D)) + np.where(groups[:, None] == 0, 1.0, -1.0) * E[0] + 2.0 * E[1]
  sets = debias.defining_sets(groups, seed=0)
  assert (np.bincount(sets[sets >= 0]) == 2).all()
  subspace = debias.fit_subspace(x, sets, k=1, alpha=1.0)
  assert abs(subspace.basis[:, 0] @ E[0]) > 0.98
  # Fitted on one split, applied to another: the group gap along e0 all but vanishes.
  test_groups = rng.integers(0, 2, 200)
  test = rng.normal(0, 0.2, (200, D)) + np.where(test_groups[:, None] == 0, 1.0, -1.0) * E[0] + 2.0 * E[1]
  out = np.asarray(subspace.apply(test))
  gap = out[test_groups == 0, 0].mean() - out[test_groups == 1, 0].mean()
  assert abs(gap) < 0.05 * (_unit(test)[test_groups == 0, 0].mean() - _unit(test)[test_groups == 1, 0].mean())


def test_k_is_the_fewest_components_reaching_the_variance():
  # Pairs spread along e0, e1, e2 by 2, 1 and 0.5: residual variances 4 : 1 : 0.25.
  rows, sets = [], []
  for axis, half in ((0, 2.0), (1, 1.0), (2, 0.5)):
    for i in range(5):
      centre = np.zeros(D)
      centre[4 + i % 4] = 3.0
      rows += [centre + half * E[axis], centre - half * E[axis]]
      sets += [len(sets) // 2] * 2
  x, sets = np.array(rows), np.array(sets)
  expected = np.array([4.0, 1.0, 0.25]) / 5.25
  subspace = debias.fit_subspace(x, sets, variance=0.5, normalize=False)
  np.testing.assert_allclose(subspace.explained_variance_ratio, expected, atol=1e-6)
  np.testing.assert_allclose(subspace.cumulative_variance, np.cumsum(expected), atol=1e-6)
  for variance, k in ((0.5, 1), (0.76, 1), (0.9, 2), (0.95, 2), (0.96, 3), (1.0, 3)):
    assert debias.fit_subspace(x, sets, variance=variance, normalize=False).k == k, variance


def test_group_sets_centre_the_group_difference_away():
  """Seed 000's wording (one set per group): a gap between the group means, with no spread along it
  inside the groups, is removed by the centring and never reaches the subspace."""
  rng = np.random.default_rng(2)
  groups = np.repeat([0, 1], 50)
  x = 3.0 * E[1] + rng.normal(0, 0.3, (100, D)) * (np.arange(D) > 1)
  x[:, 0] = np.where(groups == 0, 1.0, -1.0)
  subspace = debias.fit_subspace(x, debias.group_sets(groups), variance=0.99, alpha=1.0, normalize=False)
  np.testing.assert_allclose(subspace.basis[0], 0.0, atol=1e-5)  # e0 is orthogonal to V
  out = np.asarray(subspace.apply(x))
  np.testing.assert_allclose(out[:, 0], x[:, 0], atol=1e-5)


def test_group_and_defining_sets_with_modalities():
  groups = np.array([0, 1, 0, 1, 1, 0, -1])
  modality = np.array([0, 0, 1, 1, 1, 1, 0])
  np.testing.assert_array_equal(debias.group_sets(groups, modality), [0, 2, 1, 3, 3, 1, -1])
  sets = debias.defining_sets(groups, modality=modality, seed=3)
  # Modality 0 has one of each group (one set), modality 1 two of each (two sets); the -1 row none.
  assert sets[-1] == -1
  for s in np.unique(sets[sets >= 0]):
    members = np.flatnonzero(sets == s)
    assert sorted(groups[members]) == [0, 1] and len(set(modality[members])) == 1


@pytest.mark.parametrize("make, message", [
    (lambda x, g: debias.group_sets(np.zeros(len(g), int)), "at least two groups"),
    (lambda x, g: debias.defining_sets(np.ones(len(g), int)), "at least two groups"),
    (lambda x, g: debias.fit_subspace(np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), g),
     "not finite"),
    (lambda x, g: debias.fit_subspace(x[:6], np.array([0, 0, 1, 1, 2, 2]), k=5), "rank 3"),
    (lambda x, g: debias.fit_subspace(x[:3], np.array([0, 0, 1])), "single member"),
    (lambda x, g: debias.fit_subspace(x, np.full(len(g), -1)), "no row"),
    (lambda x, g: debias.fit_subspace(x, g, variance=1.5), "variance"),
    (lambda x, g: debias.fit_subspace(x, g, alpha=-1), "alpha"),
    (lambda x, g: debias.fit_subspace(x, g.astype(float)), "integer"),
    (lambda x, g: debias.fit_subspace(x, g, k=1).apply(np.ones((2, D + 1))), "dimension"),
])
def test_degenerate_input_is_a_clear_error(make, message):
  x, _, pair = _counterfactual_pairs(n=10)
  with pytest.raises(ValueError, match=message):
    make(x, pair)


def _biased_and_pairs(seed=0):
  rng = np.random.default_rng(seed)
  biased = rng.normal(size=(4, 16))
  attribute = rng.normal(size=16)
  base = rng.normal(size=(12, 16))
  pairs = np.stack([base + 0.5 * attribute + 0.1 * rng.normal(size=(12, 16)),
                    base - 0.5 * attribute + 0.1 * rng.normal(size=(12, 16))], axis=1)
  return biased, pairs


def test_orthogonal_projection_is_the_formula_idempotent_and_kills_the_biased_span():
  biased, _ = _biased_and_pairs()
  p0 = np.asarray(debias.fit_biased_prompts(biased).matrix, np.float64)
  a = _unit(biased).T.astype(np.float64)
  formula = np.eye(16) - a @ np.linalg.inv(a.T @ a) @ a.T
  np.testing.assert_allclose(p0, formula, atol=1e-5)
  np.testing.assert_allclose(p0 @ p0, p0, atol=1e-5)
  np.testing.assert_allclose(p0, p0.T, atol=1e-6)
  np.testing.assert_allclose(p0 @ a, 0.0, atol=1e-5)
  np.testing.assert_allclose(np.trace(p0), 16 - 4, atol=1e-4)


def test_orthogonal_projection_survives_duplicate_prompts():
  biased, _ = _biased_and_pairs()
  duplicated = np.concatenate([biased, biased[:1] * 3.0])  # same direction twice: AᵀA is singular
  p0 = np.asarray(debias.fit_biased_prompts(duplicated).matrix)
  np.testing.assert_allclose(p0, np.asarray(debias.fit_biased_prompts(biased).matrix), atol=1e-5)


def test_applied_projection_is_orthogonal_to_the_biased_prompts_and_unit_length():
  biased, pairs = _biased_and_pairs()
  queries = np.random.default_rng(5).normal(size=(7, 16))
  out = np.asarray(debias.fit_biased_prompts(biased).apply(queries))
  np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
  np.testing.assert_allclose(out @ _unit(biased).T, 0.0, atol=1e-5)


def test_calibrated_projection_solves_its_objective_and_brings_pairs_together():
  biased, pairs = _biased_and_pairs()
  plain = debias.fit_biased_prompts(biased)
  calibrated = debias.fit_biased_prompts(biased, pairs, lam=50.0)
  p0, p = np.asarray(plain.matrix, np.float64), np.asarray(calibrated.matrix, np.float64)
  z = _unit(pairs)
  diff = z[:, 0] - z[:, 1]
  m = diff.T @ diff / len(diff)
  np.testing.assert_allclose((p - p0) + 50.0 * p @ m, 0.0, atol=1e-4)  # the objective's gradient / 2

  def pair_distance(matrix):
    return float(np.mean(np.sum((diff @ matrix.T) ** 2, axis=1)))

  assert pair_distance(p) < 0.5 * pair_distance(p0)
  objective = lambda q: np.sum((q - p0) ** 2) + 50.0 * pair_distance(q)
  assert objective(p) <= objective(p0)
  np.testing.assert_allclose(debias.fit_biased_prompts(biased, pairs, lam=0.0).matrix, p0, atol=1e-6)
  # P* = P0 G⁻¹ still ends in P0: what it returns is orthogonal to the biased prompts.
  np.testing.assert_allclose(np.asarray(calibrated.apply(z[:, 0])) @ _unit(biased).T, 0.0, atol=1e-5)
  assert calibrated.lam == 50.0 and calibrated.num_pairs == 12 and calibrated.num_biased == 4


@pytest.mark.parametrize("make, message", [
    (lambda b, p: debias.fit_biased_prompts(np.ones((16, 16)) + np.eye(16)), "whole space"),
    (lambda b, p: debias.fit_biased_prompts(b, p[:, :1]), "pair_embeddings must be"),
    (lambda b, p: debias.fit_biased_prompts(b, p, lam=-1.0), "lam"),
    (lambda b, p: debias.fit_biased_prompts(np.where(b > 1, np.nan, b)), "not finite"),
    (lambda b, p: debias.fit_biased_prompts(b).apply(np.ones((3, 4))), "dimension"),
])
def test_bad_prompt_projection_input_is_a_clear_error(make, message):
  biased, pairs = _biased_and_pairs()
  with pytest.raises(ValueError, match=message):
    make(biased, pairs)
