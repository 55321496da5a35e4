"""One per-device train step and eval step, and the two thin wrappers that run them on many devices.

The step is written once against a named batch axis (``AXIS``) and knows nothing of how it is mapped:
``pmap_step`` runs it under ``jax.pmap`` (the state replicated with a leading device axis) and
``shard_map_step`` under ``jax.jit(jax.shard_map(...))`` on a one-axis mesh (the state replicated,
the batch sharded). Both donate the incoming state. Gradients, BatchNorm statistics and metric sums
are reduced across the axis inside the step (see ``collectives`` for why it is exact in both).
"""

from typing import Callable, Optional, Sequence

import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
import optax

from fairjax.train import collectives
from fairjax.train.state import TrainState

AXIS = "batch"


def make_train_step(objective, tx: optax.GradientTransformation, apply_fn: Callable,
                    prepare: Optional[Callable] = None) -> Callable:
  """The per-device step ``(state, batch) -> (state, metrics)``.

  ``objective.loss(params, state, batch, rng, apply_fn, axis_name)`` returns ``(loss, aux)``, its loss
  built from ``collectives.global_sum`` statistics, and ``aux`` holding ``model_state`` (updated
  mutable collections), ``objective_state`` and ``metrics`` (global sums for logging).
  ``prepare(batch, rng) -> float32 images`` (e.g. ``fairjax.data.augment.train_images``) turns the
  batch's uint8 images into the model's input on the device, with random augmentation keyed by the
  step; without it the objective scales the uint8 images to [0, 1].
  """

  def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
    step_rng = jax.random.fold_in(state.rng, state.step)
    rng = jax.random.fold_in(step_rng, 0)
    if prepare is not None:
      batch = {**batch, "image": prepare(batch, jax.random.fold_in(step_rng, 1))}
    params = collectives.to_varying(state.params, AXIS)
    grad_fn = jax.value_and_grad(objective.loss, has_aux=True)
    (loss, aux), grads = grad_fn(params, state, batch, rng, apply_fn, AXIS)
    grads = lax.psum(grads, AXIS)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        model_state=aux["model_state"],
        opt_state=opt_state,
        objective_state=aux["objective_state"])
    grad_norm = optax.tree.norm(grads)
    metrics = dict(aux["metrics"])
    metrics["loss"] = lax.pmean(loss, AXIS)
    metrics["grad_norm"] = grad_norm
    metrics["finite"] = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
    return new_state, metrics

  return train_step


def make_eval_step(evaluator: Callable, apply_fn: Callable) -> Callable:
  """The per-device eval step ``(state, batch) -> sums``: ``evaluator`` returns local sums, psummed."""

  def eval_step(state: TrainState, batch):
    return lax.psum(evaluator(state, batch, apply_fn), AXIS)

  return eval_step


def make_eval_rows_step(evaluator: Callable, apply_fn: Callable, row_keys: Sequence[str]) -> Callable:
  """The per-device step ``(state, batch) -> (sums, rows)``: ``make_eval_step``'s psummed sums and, from
  the same forward pass, per batch row the model's ``embedding`` and the batch's ``row_keys`` columns.
  The final report needs both for every evaluated split; one pass instead of two halves its cost
  (the default's 20,000 test faces, a pretrained model's forward passes)."""

  def eval_rows_step(state: TrainState, batch):
    sums, outputs = evaluator(state, batch, apply_fn, with_outputs=True)
    rows = {"embedding": outputs["embedding"], **{key: batch[key] for key in row_keys}}
    return lax.psum(sums, AXIS), rows

  return eval_rows_step


def pmap_step(step: Callable, donate_state: bool = True) -> Callable:
  """``step`` under ``jax.pmap``: state with a leading device axis, batch ``[devices, per_device, ...]``."""
  return jax.pmap(step, axis_name=AXIS, donate_argnums=(0,) if donate_state else ())


def shard_map_step(step: Callable, mesh: Mesh, donate_state: bool = True) -> Callable:
  """``step`` under ``jit(shard_map)`` on ``mesh`` (one axis named AXIS): replicated state, sharded batch.

  The batch is a global array whose leading dimension is split over the mesh; outputs other than the
  batch are replicated (``P()``), which the step guarantees by reducing them over the axis.
  """
  mapped = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P())
  return jax.jit(mapped, donate_argnums=(0,) if donate_state else ())


def data_mesh(devices=None) -> Mesh:
  """A one-axis mesh over ``devices`` (default: all), for ``shard_map_step``."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


def replicate(tree, num_devices: int):
  """Stacks ``num_devices`` copies of every leaf: the state layout that ``pmap_step`` expects."""
  return jax.tree.map(lambda a: jnp.broadcast_to(a, (num_devices,) + jnp.shape(a)), tree)


def unreplicate(tree):
  """The first device's copy of a pmapped pytree."""
  return jax.tree.map(lambda a: a[0], tree)


def split_batch(batch, num_devices: int):
  """``[global, ...]`` host arrays → ``[num_devices, global / num_devices, ...]`` for ``pmap_step``."""
  return jax.tree.map(lambda a: a.reshape((num_devices, -1) + a.shape[1:]), batch)
