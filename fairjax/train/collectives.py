"""Cross-device statistics for objectives written against one named batch axis.

Objectives see only their device's slice of the global batch, yet their losses (a mean over the global
batch, a gap between groups' rates over the global batch) are functions of sums over all devices. The
rule that makes one step function exact under ``jax.pmap`` and under ``jax.shard_map`` alike:

  * the step casts parameters to device-varying (``lax.pcast``) before differentiating, so each
    device's gradient is the gradient of its own contribution, and then ``psum``s the gradients;
  * objectives build every statistic with ``global_sum``: its *value* is the sum over devices, its
    *gradient* is the local part only. For any loss F(S) of global sums S, device d's gradient is
    dF/dS . dS_d/dtheta, and the psum over devices is exactly dF/dtheta.

Without the first point shard_map would already sum gradients of replicated parameters (and a psum
would count them N times); without the second, pmap would differentiate through psum and over-count.
"""

import jax
from jax import lax

Array = jax.Array


def global_sum(x, axis_name: str):
  """Sum of ``x`` over the devices of ``axis_name`` in value; the local ``x`` in gradient."""
  return jax.tree.map(
      lambda v: lax.psum(lax.stop_gradient(v), axis_name) + v - lax.stop_gradient(v), x)


def global_mean(total, count, axis_name: str):
  """``global_sum(total) / global_sum(count)`` with the count kept out of the gradient."""
  count = lax.psum(lax.stop_gradient(count), axis_name)
  return jax.tree.map(lambda t: global_sum(t, axis_name) / count.clip(min=1), total)


def to_varying(tree, axis_name: str):
  """Marks a replicated pytree as device-varying (a no-op under pmap, needed under shard_map)."""
  return jax.tree.map(lambda v: lax.pcast(v, axis_name, to="varying"), tree)


def replicated_term(x, axis_name: str):
  """A loss term that depends only on replicated values (an L2 penalty on the parameters).

  Every device computes the same ``x``; its value is kept whole, but each device takes 1/N of its
  gradient, so that the psum of gradients counts it once.
  """
  share = x / lax.psum(1, axis_name)
  return share + lax.stop_gradient(x - share)
