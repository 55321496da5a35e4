"""The fused, chunked conv + ReLU + 2x2 max pool equals lax.conv + ReLU + nn.max_pool, and stays small."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fairjax.ops import conv
from fairjax.ops import conv_pool


def reference(x, kernel, bias, strides=(1, 1), padding="VALID"):
  """What accelerators run: XLA's convolution, ReLU and reduce_window max pooling."""
  y = nn.relu(conv.conv2d(x, kernel, strides, padding, "lax") + bias)
  return nn.max_pool(y, (2, 2), strides=(2, 2), padding="VALID")


def fused(x, kernel, bias, strides=(1, 1), padding="VALID"):
  return conv_pool.conv_relu_max_pool(x, kernel, bias, strides, padding, "im2col")


def grads(fn, x, kernel, bias, weights, **kwargs):
  return jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a, **kwargs) * weights), argnums=(0, 1, 2)))(
      x, kernel, bias)


@pytest.fixture
def small_chunks(monkeypatch):
  # A few output pixels per chunk, so that every case runs several chunks and pads the last one.
  monkeypatch.setattr(conv_pool, "ROWS_PER_CHUNK", 100)


@pytest.mark.parametrize("shape, padding, strides", [
    ((5, 11, 10, 4), "VALID", (1, 1)),   # odd conv output (9x8): the last row is dropped
    ((7, 12, 9, 3), "SAME", (1, 1)),
    ((3, 13, 13, 2), "SAME", (2, 2)),
    ((4, 10, 12, 3), ((1, 0), (2, 1)), (1, 2)),
])
def test_fused_matches_reference_in_value_and_gradients(small_chunks, shape, padding, strides):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, shape[-1], 6)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
  want = reference(x, kernel, bias, strides, padding)
  got = fused(x, kernel, bias, strides, padding)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  weights = jnp.asarray(rng.normal(size=want.shape), jnp.float32)
  for g, w in zip(grads(fused, x, kernel, bias, weights, strides=strides, padding=padding),
                  grads(reference, x, kernel, bias, weights, strides=strides, padding=padding)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_ties_get_the_gradient_where_select_and_scatter_puts_it(small_chunks):
  # Small integers: every sum is exact in float32, and many windows hold several equal positive maxima.
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.integers(-2, 3, size=(5, 9, 11, 3)), jnp.float32)
  kernel = jnp.asarray(rng.integers(-1, 2, size=(3, 3, 3, 4)), jnp.float32)
  bias = jnp.asarray([0.0, 1.0, -1.0, 0.5])
  z = (conv.conv2d(x, kernel, padding="VALID", implementation="lax") + bias)[:, :6, :8]
  windows = z.reshape(5, 3, 2, 4, 2, 4)
  top = windows.max(axis=(2, 4), keepdims=True)
  assert int(jnp.sum((jnp.sum(windows == top, axis=(2, 4)) > 1) & (top[:, :, 0, :, 0] > 0))) > 0
  np.testing.assert_array_equal(fused(x, kernel, bias), reference(x, kernel, bias))
  weights = jnp.asarray(rng.integers(-3, 4, size=(5, 3, 4, 4)), jnp.float32)
  for g, w in zip(grads(fused, x, kernel, bias, weights), grads(reference, x, kernel, bias, weights)):
    np.testing.assert_array_equal(g, w)


def test_training_holds_no_full_batch_patches():
  # The point of the op: a gradient step's temporaries stay well below the block's im2col patches.
  x = jnp.zeros((64, 34, 34, 16))
  kernel = jnp.zeros((3, 3, 16, 32))
  bias = jnp.zeros((32,))
  full_patches = 64 * 32 * 32 * 3 * 3 * 16 * 4
  step = jax.jit(jax.grad(lambda *a: jnp.sum(fused(*a)), argnums=(0, 1, 2)))
  temp = step.lower(x, kernel, bias).compile().memory_analysis().temp_size_in_bytes
  assert temp < full_patches / 4, (temp, full_patches)


def test_module_is_conv_relu_pool_with_conv_parameters():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 10, 10, 3)), jnp.float32)
  params = conv.Conv(8, (3, 3), padding="VALID").init(jax.random.key(0), x)
  module = conv_pool.ConvReluMaxPool(8, (3, 3), padding="VALID", implementation="im2col")
  assert jax.tree.map(jnp.shape, module.init(jax.random.key(0), x)) == jax.tree.map(jnp.shape, params)
  want = nn.max_pool(nn.relu(nn.Conv(8, (3, 3), padding="VALID").apply(params, x)), (2, 2), (2, 2))
  np.testing.assert_allclose(module.apply(params, x), want, rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_clear_errors():
  x, kernel, bias = jnp.ones((2, 4, 4, 3)), jnp.ones((3, 3, 3, 8)), jnp.ones((8,))
  with pytest.raises(ValueError, match="implementation"):
    conv_pool.conv_relu_max_pool(x, kernel, bias, implementation="fft")
  with pytest.raises(ValueError, match="too small for 2x2 max pooling"):
    fused(x[:, :3, :3], kernel, bias)
