"""The train state: everything a resumed run needs to continue bit-for-bit, in one pytree."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Parameters, optimiser and objective state, non-trainable model state, step and base RNG.

  ``rng`` is the run's base key and never changes: the step's randomness is ``fold_in(rng, step)``,
  so a restored state draws exactly the dropout masks and augmentations the lost run would have.
  ``params`` holds ``{'model': ...}`` plus any parameters an objective adds (an adversary head).
  ``model_state`` holds mutable collections such as BatchNorm's ``batch_stats``.
  """

  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  objective_state: Any
  rng: jax.Array

  @classmethod
  def create(cls, *, params, model_state, tx: optax.GradientTransformation, objective_state, rng):
    return cls(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
               opt_state=tx.init(params), objective_state=objective_state, rng=rng)
