"""INLP: a linear probe reads the attribute near chance after it, its map is an orthogonal projection
(symmetric, idempotent) around the fit split's mean, applied as such to new rows; and its classifier is
scikit-learn's logistic regression."""

import numpy as np
import pytest
from sklearn import linear_model

from fairjax import erasure
from fairjax.erasure import probes
from tests.erasure import synthetic

FOUR = synthetic.Population(1, [0.4, 0.3, 0.2, 0.1])


@pytest.fixture(scope="module")
def fitted():
  fit_x, fit_z = FOUR.sample(21, 3000)
  return fit_x, fit_z, erasure.fit(fit_x, fit_z, method="inlp")


def test_a_linear_probe_reads_the_attribute_near_chance_after_inlp(fitted):
  fit_x, fit_z, eraser = fitted
  test_x, test_z = FOUR.sample(22, 3000)
  info = eraser.info
  assert info["stopped"] == "chance" and 3 <= eraser.rank < synthetic.DIM, info
  assert info["held_out_accuracy"][0] > info["majority_rate"] + 0.3
  probe = lambda a, b: linear_model.LogisticRegression(max_iter=2000).fit(a, fit_z).score(b, test_z)
  majority = synthetic.majority_rate(test_z)
  assert probe(fit_x, test_x) > majority + 0.3
  assert abs(probe(eraser(fit_x), eraser(test_x)) - majority) <= 0.03


def test_the_map_is_an_orthogonal_projection_around_the_mean(fitted):
  fit_x, _, eraser = fitted
  projection = eraser.projection.astype(np.float64)
  np.testing.assert_allclose(projection, projection.T, atol=1e-6)
  np.testing.assert_allclose(projection @ projection, projection, atol=1e-5)
  assert np.isclose(np.trace(projection), synthetic.DIM - eraser.rank, atol=1e-4)
  np.testing.assert_allclose(np.asarray(eraser.bias), fit_x.mean(0), rtol=1e-5, atol=1e-5)
  new_x, _ = FOUR.sample(23, 100)
  expected = (new_x - fit_x.mean(0)) @ projection + fit_x.mean(0)
  np.testing.assert_allclose(np.asarray(eraser(new_x)), expected, atol=1e-4 * np.abs(new_x).max())
  twice = np.asarray(eraser(eraser(new_x)))
  np.testing.assert_allclose(twice, np.asarray(eraser(new_x)), atol=1e-4 * np.abs(new_x).max())


def test_options_and_determinism(fitted):
  fit_x, fit_z, eraser = fitted
  one = erasure.fit(fit_x, fit_z, method="inlp", n_iterations=1)
  assert one.rank == 3 and one.info["stopped"] == "n_iterations"  # one multinomial classifier: K - 1 rows
  again = erasure.fit(fit_x, fit_z, method="inlp")
  np.testing.assert_array_equal(np.asarray(again.left), np.asarray(eraser.left))
  # A gain no classifier reaches stops at once: nothing erased.
  assert erasure.fit(fit_x, fit_z, method="inlp", min_accuracy_gain=1.0).rank == 0


def test_the_classifier_is_scikit_learns_logistic_regression():
  x, z = FOUR.sample(24, 1000)
  x = (x - x.mean(0)) / x.std(0)
  l2 = 1e-2  # scikit-learn: 0.5 ||w||^2 + C * sum of cross-entropies, so C = 1 / (l2 * N)
  kernel, bias = probes.logistic_regression(x, z, l2, num_classes=4)
  reference = linear_model.LogisticRegression(C=1.0 / (l2 * len(z)), tol=1e-10, max_iter=10_000).fit(x, z)
  logits = x @ np.asarray(kernel) + np.asarray(bias)
  expected = reference.decision_function(x)
  # Logits are defined up to a constant per row; compare them centred.
  centre = lambda a: a - a.mean(1, keepdims=True)
  np.testing.assert_allclose(centre(logits), centre(expected), atol=1e-3 * np.abs(expected).max())
