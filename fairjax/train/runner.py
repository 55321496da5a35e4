"""Where the state and the batches live on the devices, for the two ways of mapping the step.

The training loop speaks host numpy: it hands a ``Runner`` this process's slice of a global batch and
gets back host values. The runner owns the layout:

  pmap       the state carries a leading axis of this process's devices; a batch is reshaped to
             ``[local devices, per device, ...]``; outputs are read from the first device.
  shard_map  the state is one array replicated over a mesh of all devices of all processes; a batch
             becomes a global array sharded over the mesh from each process's slice
             (``jax.make_array_from_process_local_data``); outputs are replicated.

Either way the same per-device step runs, and a checkpoint holds the plain (unreplicated) host state,
so a run may be resumed under the other mapper or on another number of devices.
"""

from typing import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fairjax.train import step as step_lib

MAPPERS = ("pmap", "shard_map")


def _first_copy(x) -> np.ndarray:
  """Host value of a replicated array (any process may hold only some of its devices' copies)."""
  return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)


def _local_rows(x: jax.Array) -> np.ndarray:
  """This process's rows of an array sharded over the batch axis, in row order."""
  shards = sorted(x.addressable_shards, key=lambda shard: shard.index[0].start or 0)
  return np.concatenate([np.asarray(shard.data) for shard in shards])


class Runner:
  """Runs a per-device train step and eval step under ``mapper`` over all devices."""

  def __init__(self, mapper: str, train_step: Callable, eval_step: Callable):
    if mapper not in MAPPERS:
      raise ValueError(f"unknown mapper {mapper!r}; known: {', '.join(MAPPERS)}")
    self.mapper = mapper
    self.num_local = jax.local_device_count()
    if mapper == "pmap":
      self._train = step_lib.pmap_step(train_step, donate_state=True)
      self._eval = step_lib.pmap_step(eval_step, donate_state=False)
    else:
      self.mesh = step_lib.data_mesh(jax.devices())
      self._train = step_lib.shard_map_step(train_step, self.mesh, donate_state=True)
      self._eval = step_lib.shard_map_step(eval_step, self.mesh, donate_state=False)

  def check_batch_size(self, global_batch_size: int, what: str) -> None:
    devices = jax.device_count()
    if global_batch_size % devices:
      raise ValueError(f"{what} {global_batch_size} does not split over {devices} devices "
                       f"({jax.process_count()} processes x {self.num_local}); use a multiple of {devices}")

  def put_state(self, host_state):
    """Host state → the mapper's device layout."""
    if self.mapper == "pmap":
      local = NamedSharding(step_lib.data_mesh(jax.local_devices()), P(step_lib.AXIS))
      return jax.device_put(jax.tree.map(lambda x: np.broadcast_to(x, (self.num_local,) + np.shape(x)),
                                         host_state), local)
    return jax.device_put(host_state, NamedSharding(self.mesh, P()))

  def get_state(self, state):
    """The mapper's device layout → plain host state (what checkpoints hold)."""
    if self.mapper == "pmap":
      return jax.tree.map(lambda x: np.asarray(x[0]), state)
    return jax.tree.map(_first_copy, state)

  def put_batch(self, local_batch: dict):
    """This process's rows of a global batch → the step's batch argument."""
    if self.mapper == "pmap":
      return step_lib.split_batch(local_batch, self.num_local)
    sharding = NamedSharding(self.mesh, P(step_lib.AXIS))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}

  def fetch(self, outputs) -> dict:
    """Replicated step outputs (metrics, eval sums) as host numpy."""
    if self.mapper == "pmap":
      return jax.tree.map(lambda x: np.asarray(x[0]), outputs)
    return jax.tree.map(_first_copy, outputs)

  def row_function(self, fn: Callable) -> Callable:
    """``fn(state, batch) -> {name: [rows, ...]}``, one output row per batch row, run under the mapper.

    For outputs that are per row rather than reduced over the batch axis (a model's embeddings):
    under pmap they come back ``[local devices, per device, ...]`` and under shard_map as one array
    sharded like the batch (``out_specs=P(AXIS)``); either way the returned function gives this
    process's rows as host numpy ``[local rows, ...]``, in the order of its slice of the batch.
    """
    mapped, to_host = self._mapped(fn, P(step_lib.AXIS))

    def run(state, local_batch: dict) -> dict:
      return jax.tree.map(to_host, mapped(state, self.put_batch(local_batch)))

    return run

  def sums_and_rows_function(self, step: Callable) -> Callable:
    """``step(state, batch) -> (sums, rows)`` (``step.make_eval_rows_step``) run under the mapper: the
    sums replicated, as ``eval_step`` returns them (``fetch`` reads them), the rows as
    ``row_function``'s (this process's rows, host numpy)."""
    mapped, to_host = self._mapped(step, (P(), P(step_lib.AXIS)))

    def run(state, local_batch: dict):
      sums, rows = mapped(state, self.put_batch(local_batch))
      return sums, jax.tree.map(to_host, rows)

    return run

  def _mapped(self, fn: Callable, out_specs):
    """``fn`` under the mapper (shard_map with ``out_specs``), and the function that turns one of its
    per-row outputs into this process's rows as host numpy."""
    if self.mapper == "pmap":
      return (jax.pmap(fn, axis_name=step_lib.AXIS),
              lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]))
    return (jax.jit(jax.shard_map(fn, mesh=self.mesh, in_specs=(P(), P(step_lib.AXIS)), out_specs=out_specs)),
            _local_rows)

  def train_step(self, state, local_batch: dict):
    return self._train(state, self.put_batch(local_batch))

  def eval_step(self, state, local_batch: dict):
    return self._eval(state, self.put_batch(local_batch))
