"""MaxSkew@k, MinSkew@k and NDKL of text-to-image retrieval against hand-computed values."""

import math

import numpy as np
import pytest

from fairjax.metrics import retrieval

# One query along e0; images ranked x0 > x1 > x3 > x2 by cosine to it.
QUERY = np.array([[1.0, 0.0]])
IMAGES = np.array([[1.0, 0.1], [1.0, 0.2], [0.0, 1.0], [1.0, 0.3]])
GROUPS = np.array([0, 0, 1, 1])


def test_top_two_of_one_group():
  result = retrieval.bias_at_k(QUERY, IMAGES, GROUPS, k=2, num_groups=2)
  np.testing.assert_allclose(result.top_k_share, [[1.0, 0.0]])
  # Group 1 is absent from the top 2: its share is taken as 1/k = 1/2, so its skew is ln(0.5/0.5) = 0.
  np.testing.assert_allclose(result.skew, [[math.log(2.0), 0.0]], atol=1e-6)
  np.testing.assert_allclose(result.max_skew, [math.log(2.0)], atol=1e-6)
  np.testing.assert_allclose(result.min_skew, [0.0], atol=1e-6)
  # Both prefixes are all group 0: KL = ln 2 each, so the discounted mean is ln 2.
  np.testing.assert_allclose(result.ndkl, [math.log(2.0)], atol=1e-6)


def test_top_three_by_hand():
  result = retrieval.bias_at_k(QUERY, IMAGES, GROUPS, k=3, num_groups=2)
  np.testing.assert_allclose(result.skew, [[math.log(4 / 3), math.log(2 / 3)]], atol=1e-6)
  np.testing.assert_allclose(result.max_skew, [math.log(4 / 3)], atol=1e-6)
  kl3 = 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)
  z = 1 + 1 / math.log2(3) + 1 / 2
  expected = (math.log(2) + math.log(2) / math.log2(3) + kl3 / 2) / z
  np.testing.assert_allclose(result.ndkl, [expected], atol=1e-6)


def test_proportional_desired_distribution():
  groups = np.array([0, 0, 0, 1])  # the gallery is 3/4 group 0
  result = retrieval.bias_at_k(QUERY, IMAGES, groups, k=2, num_groups=2, desired="proportional")
  np.testing.assert_allclose(result.desired, [0.75, 0.25])
  np.testing.assert_allclose(result.skew, [[math.log(1 / 0.75), math.log(0.5 / 0.25)]], atol=1e-6)
  # The smoothed absent group has the largest skew here, yet MaxSkew is its smoothed value, as Berg et al.
  np.testing.assert_allclose(result.max_skew, [math.log(2.0)], atol=1e-6)
  np.testing.assert_allclose(result.ndkl, [math.log(1 / 0.75)], atol=1e-6)


def test_alternating_ranking_has_zero_max_skew_at_even_k():
  images = np.array([[1.0, 0.01 * i] for i in range(8)])  # ranked in index order
  groups = np.array([0, 1] * 4)
  result = retrieval.bias_at_k(QUERY, images, groups, k=8, num_groups=2)
  np.testing.assert_allclose(result.max_skew, [0.0], atol=1e-6)
  # Odd prefixes are unbalanced by one image: KL(((i+1)/2i, (i-1)/2i) ‖ uniform) at i = 1, 3, 5, 7.
  kl = [0.0] * 8
  for i in (1, 3, 5, 7):
    p = np.array([(i + 1) / (2 * i), (i - 1) / (2 * i)])
    kl[i - 1] = float(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / 0.5), 0)))
  discount = [1 / math.log2(i + 1) for i in range(1, 9)]
  np.testing.assert_allclose(result.ndkl, [np.dot(kl, discount) / sum(discount)], atol=1e-6)


def _reference(queries, images, groups, k, desired):
  """The formulas row by row in numpy (ranked by argsort, stable on ties)."""
  q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
  x = images / np.linalg.norm(images, axis=1, keepdims=True)
  max_skew, ndkl = [], []
  for row in q:
    order = np.argsort(-(x @ row), kind="stable")[:k]
    counts = np.zeros(desired.size)
    total = 0.0
    for i, image in enumerate(order, start=1):
      counts[groups[image]] += 1
      p = counts / i
      total += np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / desired), 0)) / math.log2(i + 1)
    ndkl.append(total / sum(1 / math.log2(i + 1) for i in range(1, k + 1)))
    share = np.where(counts > 0, counts / k, 1 / k)
    max_skew.append(np.max(np.log(share / desired)))
  return np.array(max_skew), np.array(ndkl)


@pytest.mark.parametrize("desired", ["uniform", "proportional"])
def test_many_queries_match_the_formulas(desired):
  rng = np.random.default_rng(0)
  images = rng.normal(size=(300, 8))
  groups = rng.integers(0, 3, 300)
  images[:, 0] += groups  # group 2 leans towards e0, group 0 away
  queries = rng.normal(size=(6, 8))
  queries[:, 0] += 2.0
  result = retrieval.bias_at_k(queries, images, groups, k=40, num_groups=3, desired=desired)
  target = np.bincount(groups, minlength=3) / 300 if desired == "proportional" else np.full(3, 1 / 3)
  max_skew, ndkl = _reference(queries, images, groups, 40, target)
  np.testing.assert_allclose(result.max_skew, max_skew, atol=1e-5)
  np.testing.assert_allclose(result.ndkl, ndkl, atol=1e-5)
  assert (result.max_skew > 0.2).all()  # queries along e0 over-retrieve group 2
  summary = result.summary(["a", "b", "c"])
  assert summary["max_skew"] == pytest.approx(max_skew.mean(), abs=1e-5)
  assert summary["mean_top_k_share"]["c"] > 0.5


def test_group_absent_from_the_gallery_is_left_out():
  result = retrieval.bias_at_k(QUERY, IMAGES, GROUPS, k=3, num_groups=3)
  np.testing.assert_allclose(result.desired, [0.5, 0.5, 0.0])
  assert np.isnan(result.skew[0, 2])
  np.testing.assert_allclose(result.max_skew, [math.log(4 / 3)], atol=1e-6)
  assert result.summary()["mean_skew"]["2"] is None


def test_given_desired_distribution_is_renormalised_over_present_groups():
  result = retrieval.bias_at_k(QUERY, IMAGES, GROUPS, k=2, num_groups=2, desired=np.array([2.0, 2.0]))
  np.testing.assert_allclose(result.desired, [0.5, 0.5])


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 5}, "k must be"),
    ({"k": 0}, "k must be"),
    ({"desired": np.array([1.0, 0.0])}, "probability 0"),
    ({"desired": "parity"}, "desired must be"),
    ({"num_groups": 1}, "group codes"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
  arguments = {"k": 2, "num_groups": 2, **kwargs}
  with pytest.raises(ValueError, match=message):
    retrieval.bias_at_k(QUERY, IMAGES, GROUPS, **arguments)


def test_non_finite_embeddings_are_errors():
  images = IMAGES.copy()
  images[1, 0] = np.nan
  with pytest.raises(ValueError, match="not finite"):
    retrieval.bias_at_k(QUERY, images, GROUPS, k=2, num_groups=2)
  with pytest.raises(ValueError, match="dimension"):
    retrieval.bias_at_k(np.ones((1, 3)), IMAGES, GROUPS, k=2, num_groups=2)
