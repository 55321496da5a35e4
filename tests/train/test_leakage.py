"""Leakage probe, per-row outputs through the runner, and the t-SNE maps of the embedding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fairjax.report import embeddings
from fairjax.train import leakage
from fairjax.train import runner as runner_lib


def _encoded(n, num_classes, shift, seed=0, dims=32):
  """Gaussian embeddings; the class moves the mean of the first coordinates by ``shift`` (0: no code)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, n)
  x = rng.normal(size=(n, dims)).astype(np.float32)
  x[:, :num_classes] += shift * np.eye(num_classes)[labels]
  return x, labels


@pytest.mark.parametrize("num_classes", [2, 5])
def test_leakage_is_high_where_the_attribute_is_linearly_encoded_and_near_zero_where_not(num_classes):
  x, labels = _encoded(800, num_classes, shift=3.0)
  encoded = leakage.probe_leakage(x, labels, num_classes)
  assert encoded["leakage"] > 0.4, encoded
  assert encoded["accuracy"] == pytest.approx(encoded["majority_rate"] + encoded["leakage"])
  x, labels = _encoded(800, num_classes, shift=0.0, seed=1)
  assert abs(leakage.probe_leakage(x, labels, num_classes)["leakage"]) < 0.06


def test_a_nonlinear_code_is_found_by_the_mlp_probe_not_by_logistic_regression():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(1200, 8)).astype(np.float32)
  labels = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int32)  # XOR of two signs: no linear code
  assert leakage.probe_leakage(x, labels, 2)["leakage"] > 0.25
  assert abs(leakage.probe_leakage(x, labels, 2, hidden=())["leakage"]) < 0.08


def test_no_information_scores_exactly_the_majority_rate():
  labels = np.array([0] * 30 + [1] * 10 + [3] * 4)
  figures = leakage.probe_leakage(np.zeros((44, 16), np.float32), labels, 5)
  assert figures["leakage"] == 0.0
  assert figures["majority_rate"] == pytest.approx(30 / 44, abs=0.02)
  assert figures["count"] == 44


def test_probe_is_deterministic_given_its_seed_and_undefined_on_too_few_rows():
  x, labels = _encoded(300, 2, shift=1.0)
  assert leakage.probe_leakage(x, labels, 2, seed=4) == leakage.probe_leakage(x, labels, 2, seed=4)
  assert np.isnan(leakage.probe_leakage(x[:3], labels[:3], 2)["leakage"])
  with pytest.raises(ValueError, match="unknown"):
    leakage.probe_leakage(x, np.where(labels == 0, -1, labels), 2)


def test_padding_costs_less_than_a_power_of_two_beyond_1024_rows_and_changes_nothing(monkeypatch):
  assert [leakage.padded_size(n) for n in (1, 200, 300, 1024, 1025, 2100, 10_000)] == [
      256, 256, 512, 1024, 2048, 3072, 10_240]
  x, labels = _encoded(4200, 2, shift=0.5, dims=8)  # folds of 2,100 rows: padded to 3,072
  figures = leakage.probe_leakage(x, labels, 2, steps=100)
  monkeypatch.setattr(leakage, "padded_size", lambda n, minimum=256: max(minimum, 1 << (n - 1).bit_length()))
  as_power_of_two = leakage.probe_leakage(x, labels, 2, steps=100)  # padded to 4,096
  assert figures["count"] == as_power_of_two["count"] == 4200
  assert figures["leakage"] == pytest.approx(as_power_of_two["leakage"], abs=2 / 4200)  # a row either way


def test_stratified_halves_split_every_class_evenly():
  labels = np.array([0] * 7 + [1] * 4 + [2] * 1 + [3] * 10)
  fold = leakage.stratified_halves(labels, seed=0)
  for value in np.unique(labels):
    counts = np.bincount(fold[labels == value], minlength=2)
    assert abs(counts[0] - counts[1]) <= 1
  assert abs(np.sum(fold == 0) - np.sum(fold == 1)) <= 1
  assert not np.array_equal(fold, leakage.stratified_halves(labels, seed=1))


@pytest.mark.parametrize("mapper", runner_lib.MAPPERS)
def test_row_function_returns_every_row_in_order(mapper):
  assert len(jax.devices()) >= 4, "tests/conftest.py sets four fake CPU devices"

  def fn(state, batch):
    return {"y": batch["x"] @ state["w"], "mask": batch["mask"]}

  runner = runner_lib.Runner(mapper, lambda state, batch: (state, {}), lambda state, batch: {})
  state = runner.put_state({"w": np.arange(6, dtype=np.float32).reshape(3, 2)})
  x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
  rows = runner.row_function(fn)(state, {"x": x, "mask": np.arange(8) < 6})
  np.testing.assert_allclose(rows["y"], x @ np.arange(6).reshape(3, 2), rtol=1e-6)
  np.testing.assert_array_equal(rows["mask"], np.arange(8) < 6)


@pytest.mark.parametrize("mapper", runner_lib.MAPPERS)
def test_sums_and_rows_come_from_one_mapped_call(mapper):
  def step(state, batch):
    y = batch["x"] @ state["w"]
    return jax.lax.psum({"total": (y * batch["mask"][:, None]).sum(0)}, "batch"), {"y": y, "mask": batch["mask"]}

  runner = runner_lib.Runner(mapper, lambda state, batch: (state, {}), lambda state, batch: {})
  state = runner.put_state({"w": np.arange(6, dtype=np.float32).reshape(3, 2)})
  x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
  mask = np.arange(8) < 6
  sums, rows = runner.sums_and_rows_function(step)(state, {"x": x, "mask": mask})
  expected = x @ np.arange(6).reshape(3, 2)
  np.testing.assert_allclose(runner.fetch(sums)["total"], expected[:6].sum(0), rtol=1e-5)  # over all devices
  np.testing.assert_allclose(rows["y"], expected, rtol=1e-6)
  np.testing.assert_array_equal(rows["mask"], mask)


# --------------------------------------------------------------------------------------------- t-SNE

def test_conditional_probabilities_have_the_perplexity_and_ignore_padding():
  x, _ = _encoded(60, 3, shift=4.0)
  p = np.asarray(embeddings.conditional_probabilities(x, 10.0))
  np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
  assert np.all(np.diag(p) == 0)
  entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), 1)
  np.testing.assert_allclose(entropy, np.log(10.0), atol=1e-3)
  padded = np.concatenate([x, np.full((20, x.shape[1]), 9.0, np.float32)])
  p_padded = np.asarray(embeddings.conditional_probabilities(padded, 10.0, np.arange(80) < 60))
  np.testing.assert_allclose(p_padded[:60, :60], p, rtol=1e-4, atol=1e-7)
  assert np.all(p_padded[60:] == 0) and np.all(p_padded[:, 60:] == 0)


def test_tsne_keeps_separated_clusters_apart_and_writes_one_map_per_attribute(tmp_path):
  x, labels = _encoded(150, 3, shift=8.0)
  points = embeddings.tsne(x)
  assert points.shape == (150, 2) and np.all(np.isfinite(points))
  nearest = np.argsort(np.square(points[:, None] - points[None]).sum(-1), 1)[:, 1]
  assert np.mean(labels[nearest] == labels) > 0.95
  other = np.where(np.arange(150) % 7 == 0, -1, labels % 2)  # with unknowns, drawn in grey
  written = embeddings.write_embedding_plots(str(tmp_path), x, {"race": (labels, ["a", "b", "c"]),
                                                                "gender": (other, ["male", "female"])},
                                             title="test", max_points=100)
  assert written == ["embedding_race.png", "embedding_gender.png"]
  assert all((tmp_path / name).stat().st_size > 1000 for name in written)
  assert len(embeddings.subsample(150, 100, seed=0)) == 100
  np.testing.assert_array_equal(embeddings.subsample(50, 100, seed=0), np.arange(50))


def test_tsne_needs_three_points():
  with pytest.raises(ValueError, match="at least 3"):
    embeddings.tsne(jnp.zeros((2, 4)))
