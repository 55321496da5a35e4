"""The reshape max pool equals flax's reduce_window pool, values and (tie-free) gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fairjax.ops import pool


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 4)])
def test_reshape_pool_matches_reduce_window(shape):
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  np.testing.assert_array_equal(pool.max_pool_2x2(x, "reshape"), pool.max_pool_2x2(x, "reduce_window"))
  grads = [jax.grad(lambda v, i=impl: jnp.sum(jnp.sin(pool.max_pool_2x2(v, i))))(x)
           for impl in ("reshape", "reduce_window")]
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)
  with pytest.raises(ValueError, match="implementation"):
    pool.max_pool_2x2(x, "avg")
