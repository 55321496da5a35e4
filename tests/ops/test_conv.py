"""The im2col convolution equals lax.conv in value and in both gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fairjax.ops import conv


@pytest.mark.parametrize("padding, strides, kernel", [
    ("VALID", (1, 1), (3, 3)),
    ("SAME", (1, 1), (3, 3)),
    ("SAME", (2, 2), (7, 7)),   # ResNet stem
    ("SAME", (2, 2), (1, 1)),   # ResNet projection shortcut
    (((1, 2), (0, 1)), (1, 2), (3, 2)),
])
def test_im2col_matches_lax_in_value_and_gradients(padding, strides, kernel):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 11, 10, 4)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(*kernel, 4, 5)), jnp.float32)

  def loss(impl):
    return lambda x, k: jnp.sum(jnp.sin(conv.conv2d(x, k, strides, padding, impl)))

  np.testing.assert_allclose(conv.conv2d(x, k, strides, padding, "im2col"),
                             conv.conv2d(x, k, strides, padding, "lax"), rtol=1e-5, atol=1e-5)
  got = jax.jit(jax.grad(loss("im2col"), argnums=(0, 1)))(x, k)
  want = jax.jit(jax.grad(loss("lax"), argnums=(0, 1)))(x, k)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_conv_module_is_a_drop_in_for_flax_conv():
  x = jnp.ones((2, 9, 9, 3))
  ours = conv.Conv(8, (3, 3), padding="VALID", implementation="im2col")
  theirs = nn.Conv(8, (3, 3), padding="VALID")
  params = theirs.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(jnp.shape, params)
  np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="implementation"):
    conv.conv2d(x, jnp.ones((3, 3, 3, 8)), implementation="fft")
