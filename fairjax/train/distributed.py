"""Multi-host start-up: one call before any JAX computation, and host-aware logging after it.

``jax.distributed.initialize()`` finds the coordinator and this process's rank by itself on Cloud TPU
pod slices (GCE or GKE), under SLURM (``srun``), Open MPI and Kubernetes; elsewhere the three
variables below name them. A single process (a laptop, one GPU box, the tests) skips it entirely.
"""

import os

from absl import logging
import jax

# Explicit multi-process set-up for clusters that JAX cannot detect.
COORDINATOR_ENV = "FAIRJAX_COORDINATOR"   # host:port of process 0
NUM_PROCESSES_ENV = "FAIRJAX_NUM_PROCESSES"
PROCESS_ID_ENV = "FAIRJAX_PROCESS_ID"

_DETECTED = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def initialize(mode: str = "auto") -> None:
  """Joins the multi-process job if there is one.

  Args:
    mode: 'auto' (initialise under a detected cluster or when FAIRJAX_COORDINATOR is set), 'on'
      (always: fails loudly if no cluster is found) or 'off'.
  """
  if mode not in ("auto", "on", "off"):
    raise ValueError(f"distributed mode must be auto, on or off, got {mode!r}")
  if mode == "off":
    return
  explicit = os.environ.get(COORDINATOR_ENV)
  if explicit or mode == "on" or any(v in os.environ for v in _DETECTED):
    # CPU devices of several processes reduce through gloo (no MPI needed); accelerators are unaffected.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if explicit:
    jax.distributed.initialize(coordinator_address=explicit,
                               num_processes=int(os.environ[NUM_PROCESSES_ENV]),
                               process_id=int(os.environ[PROCESS_ID_ENV]))
  elif mode == "on" or any(v in os.environ for v in _DETECTED):
    jax.distributed.initialize()
  else:
    return
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def is_chief() -> bool:
  """Whether this process writes logs, reports and summaries (checkpoints are written by all)."""
  return jax.process_index() == 0
