"""The common eraser: saved and loaded whole, jit-able, and bad input refused with one-line errors."""

import os

import jax
import numpy as np
import pytest

from fairjax import erasure
from tests.erasure import synthetic

TWO = synthetic.Population(0, [0.6, 0.4])


@pytest.mark.parametrize("method", ["leace", "inlp"])
def test_save_and_load_give_the_same_eraser(tmp_path, method):
  x, z = TWO.sample(31, 1500)
  eraser = erasure.fit(x, z, method=method)
  path = tmp_path / "nested" / "eraser.npz"
  eraser.save(path)
  assert os.listdir(path.parent) == ["eraser.npz"]  # the staging file is gone
  loaded = erasure.load(path)
  assert (loaded.method, loaded.info) == (method, eraser.info)
  np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(eraser(x)))
  eraser.save(path)  # over an existing file
  np.testing.assert_array_equal(np.asarray(erasure.load(path)(x)), np.asarray(eraser(x)))


def test_the_eraser_is_a_pytree_that_jit_takes():
  x, z = TWO.sample(32, 500)
  eraser = erasure.fit(x, z)
  erased = jax.jit(lambda e, rows: e(rows))(eraser, x)
  assert erased.dtype == np.float32 and erased.shape == x.shape
  np.testing.assert_allclose(np.asarray(erased), np.asarray(eraser(x)), rtol=1e-6, atol=1e-5)


def test_unknown_rows_are_left_out_of_the_fit():
  x, z = TWO.sample(33, 1000)
  unknown = np.where(np.arange(len(z)) % 3 == 0, -1, z)
  eraser = erasure.fit(x, unknown)
  assert eraser.info["unknown_rows"] == int(np.sum(unknown < 0))
  known = unknown >= 0
  np.testing.assert_array_equal(np.asarray(eraser(x)), np.asarray(erasure.fit(x[known], z[known])(x)))


def _error(fn):
  with pytest.raises(ValueError) as raised:
    fn()
  message = str(raised.value)
  assert "\n" not in message
  return message


def test_bad_input_is_a_one_line_value_error(tmp_path):
  x, z = TWO.sample(34, 200)
  assert "known: inlp, leace" in _error(lambda: erasure.fit(x, z, method="lace"))
  options = "its options: shrinkage, svd_tol, affine, orthogonal"
  assert options in _error(lambda: erasure.fit(x, z, shrink=0.1))
  assert "n_iterations" in _error(lambda: erasure.fit(x, z, method="inlp", iterations=3))
  assert "2 or more attribute classes" in _error(lambda: erasure.fit(x, np.zeros_like(z)))
  assert "2 or more attribute classes" in _error(lambda: erasure.fit(x, np.where(z == 1, -1, z)))
  with_nan = x.copy()
  with_nan[3, 4] = np.nan
  assert "NaN" in _error(lambda: erasure.fit(with_nan, z))
  assert "199 attribute values for 200 embeddings" in _error(lambda: erasure.fit(x, z[:-1]))
  assert "[N, D]" in _error(lambda: erasure.fit(x[:, 0], z))
  assert "integer codes" in _error(lambda: erasure.fit(x, z + 0.5))
  assert "-1 (unknown)" in _error(lambda: erasure.fit(x, z - 2))
  eraser = erasure.fit(x, z)
  assert "[M, 32]" in _error(lambda: eraser(x[:, :5]))
  assert "no eraser" in _error(lambda: erasure.load(tmp_path / "missing.npz"))
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  assert "not a saved eraser" in _error(lambda: erasure.load(tmp_path / "junk.npz"))
  assert "probes need 2 or more" in _error(lambda: erasure.linear_and_mlp_leakage(x, np.zeros_like(z), x, z))


def _relu_like(seed: int, n: int, *, awake_rows: int) -> tuple[np.ndarray, np.ndarray]:
  """A ReLU representation's shape: 8 live units with the attribute in their means, 8 units dead on every
  row but ``awake_rows`` (small values there, unrelated to the attribute)."""
  rng = np.random.default_rng(seed)
  z = rng.integers(0, 2, n)
  live = rng.normal(size=(n, 8)) * np.linspace(0.5, 3.0, 8) + 1.5 * z[:, None] * np.eye(8)[0]
  dead = np.zeros((n, 8))
  dead[rng.choice(n, awake_rows, replace=False)] = rng.uniform(0.0, 0.05, size=(awake_rows, 8))
  return np.concatenate([live, dead], axis=1).astype(np.float32), z


def _held_out_linear_leakage(x, z) -> float:
  """A standardising logistic-regression probe fitted on one half of the rows, scored on the other."""
  from sklearn import linear_model, pipeline, preprocessing  # pylint: disable=g-import-not-at-top
  half = len(z) // 2
  probe = pipeline.make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=3000))
  return probe.fit(x[:half], z[:half]).score(x[half:], z[half:]) - synthetic.majority_rate(z[half:])


@pytest.mark.parametrize("method", ["leace", "inlp"])
def test_support_keeps_dead_units_from_carrying_the_concept_to_other_rows(method):
  fit_x, fit_z = _relu_like(40, 4000, awake_rows=6)
  other_x, other_z = _relu_like(41, 2000, awake_rows=0)
  assert _held_out_linear_leakage(other_x, other_z) > 0.2
  plain = erasure.fit(fit_x, fit_z, method=method)
  within = erasure.fit(fit_x, fit_z, method=method, support=0.999)
  # On the rows it was fitted on, both erase; elsewhere the plain eraser has written the concept into
  # the units dead there, and a standardising probe reads it back.
  assert _held_out_linear_leakage(np.asarray(plain(other_x)), other_z) > 0.2
  assert _held_out_linear_leakage(np.asarray(within(other_x)), other_z) < 0.03
  assert within.info["support_components"] == 8 and within.info["support_dropped"] == 8
  assert within.rank > 8  # the 8 minor components, and what the method erased within the others
  assert within.info["options"]["support"] == 0.999


def test_support_is_the_method_within_the_principal_components_as_one_map():
  x, z = TWO.sample(35, 1500)
  within = erasure.fit(x, z, support=0.9)
  mean = x.astype(np.float64).mean(0)
  _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
  principal = vt[:within.info["support_components"]].T
  inner = erasure.fit((x - mean) @ principal, z)
  rows, _ = TWO.sample(36, 300)
  expected = mean + np.asarray(inner((rows - mean) @ principal), np.float64) @ principal.T
  np.testing.assert_allclose(np.asarray(within(rows)), expected, rtol=1e-4, atol=1e-3)
  assert 0 < within.info["support_components"] < x.shape[1]
  assert "support is the share of the variance kept" in _error(lambda: erasure.fit(x, z, support=0.0))
  assert "support is the share of the variance kept" in _error(lambda: erasure.fit(x, z, support=1.5))
