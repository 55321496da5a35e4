r"""Images/second of a full train step (forward, backward, Adam) of seed 000 §6.1's CNN: fairjax vs PyTorch.

  python benchmarks/train_throughput.py [--image_size=64] [--batch_size=128] [--steps=10] [--rounds=3]
      [--implementations=auto,lax]

fairjax runs its real step: ``utk_gender_cnn`` from the registry, the ``standard`` objective, and the
per-device step under ``shard_map`` on one device (what a one-CPU run executes); ``--implementations``
picks the model's ``conv_implementation`` ('auto': the fused, chunked ``fairjax.ops.conv_pool`` on
CPU; 'lax': XLA's convolution and pooling). PyTorch (the CPU build) trains the same network — Conv
32/64/128 3x3 valid + ReLU + 2x2 max pool, Dense 64, Dropout 0.5, Dense 1, BCE, Adam, float32 like
ours — with one thread per core this process may use (``taskset -c 0`` makes it a one-core race).
Rounds alternate between the two so that load from elsewhere hits both; the median of each is
reported, with the ratio, and the minor page faults per step (each is a fresh 4 KiB page of memory
that the step touched: XLA:CPU allocates a step's temporaries anew on every call).

Measured on the project's 2-core AMD EPYC VM (AVX2), 64x64, batch 128, ``--rounds=5``, jax 0.10.2,
torch 2.13.0, with nothing else running (load average under 1.5 before each run):

  2 cores   fairjax 492 / 494 img/s vs PyTorch 339 / 311:  1.45x, 1.59x   (a new user's run: 478 vs 356, 1.34x)
  faults    fairjax 19k per step, PyTorch 109k-116k

Under load from other jobs (load average 11-15) the ratio read 2.8-3.7x: PyTorch's two OpenMP threads
wait on each other when one is descheduled, and fairjax's step does not. Those figures say how each
copes with a busy machine, not how fast either is; quote the quiet ones.
Before ``conv_pool`` (im2col convolution with its full-batch patches, then a separate reshape
pool), the same step was 0.99-1.02x PyTorch on a quieter machine; under load it made 46 img/s in
a run where a first version of the fused op made 79 and PyTorch 40.
"""

import os
import resource
import time

from absl import flags
import jax
import numpy as np
import optax

from fairjax import cli
from fairjax.models import registry
from fairjax.train import objectives
from fairjax.train import step as step_lib
from fairjax.train.state import TrainState

_SIZE = flags.DEFINE_integer("image_size", 64, "Square input size.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds of each framework.")
_IMPLEMENTATIONS = flags.DEFINE_list(
    "implementations", ["auto"],
    "fairjax convolution paths to time (the model's conv_implementation): auto, lax, im2col.")


def fairjax_runner(size, batch_size, implementation="auto"):
  model = registry.get_model("utk_gender_cnn", input_shape=(size, size, 3),
                             conv_implementation=implementation)
  variables = registry.init_variables(model, jax.random.key(0))
  params = {"model": variables.pop("params")}
  objective = objectives.get_objective("standard", model)
  tx = optax.adam(1e-4)
  state = TrainState.create(params=params, model_state=variables, tx=tx,
                            objective_state=objective.init_state(params), rng=jax.random.PRNGKey(0))
  train_step = step_lib.shard_map_step(step_lib.make_train_step(objective, tx, model.apply),
                                       step_lib.data_mesh(jax.devices()[:1]))
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 255, (batch_size, size, size, 3), dtype=np.uint8),
           "gender": rng.integers(0, 2, batch_size).astype(np.int32)}
  batch = jax.device_put(batch)
  holder = {"state": state}

  def run(steps):
    state = holder["state"]
    for _ in range(steps):
      state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics["loss"])
    holder["state"] = state

  return run


def torch_runner(size, batch_size):
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(_cores())
  nn = torch.nn
  final = ((((size - 2) // 2 - 2) // 2) - 2) // 2
  net = nn.Sequential(
      nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(64, 128, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128 * final * final, 64),
      nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 1))
  optimizer = torch.optim.Adam(net.parameters(), 1e-4)
  images = torch.rand(batch_size, 3, size, size)
  labels = torch.randint(0, 2, (batch_size,)).float()

  def run(steps):
    for _ in range(steps):
      optimizer.zero_grad()
      loss = nn.functional.binary_cross_entropy_with_logits(net(images)[:, 0], labels)
      loss.backward()
      optimizer.step()

  return run


def _cores():
  """The cores this process may run on (``taskset`` narrows them; JAX's thread pool follows them too)."""
  return len(os.sched_getaffinity(0))


def _minor_faults():
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main(argv):
  del argv
  size, batch_size, steps = _SIZE.value, _BATCH.value, _STEPS.value
  runners = {}
  for implementation in _IMPLEMENTATIONS.value:
    name = "fairjax" if implementation == "auto" else f"fairjax[{implementation}]"
    runners[name] = fairjax_runner(size, batch_size, implementation)
  runners["pytorch"] = torch_runner(size, batch_size)
  for run in runners.values():
    # Two steps: the first call compiles for host-side inputs, the second for the step's own (placed)
    # output state; from then on no step compiles.
    run(2)
  rates = {name: [] for name in runners}
  faults = {name: [] for name in runners}
  for _ in range(_ROUNDS.value):
    for name, run in runners.items():
      start, faults_before = time.perf_counter(), _minor_faults()
      run(steps)
      rates[name].append(batch_size * steps / (time.perf_counter() - start))
      faults[name].append((_minor_faults() - faults_before) / steps)
  print(f"seed 000 §6.1 CNN, {size}x{size}x3, batch {batch_size}, train step with Adam "
        f"(jax {jax.__version__} on {jax.default_backend()}, {_cores()} cores)")
  for name in runners:
    print(f"  {name:16s} {np.median(rates[name]):8.1f} images/s   {np.median(faults[name]):8.0f} page "
          f"faults/step   (rounds: {', '.join(f'{r:.0f}' for r in rates[name])})")
  theirs = float(np.median(rates["pytorch"]))
  for name in runners:
    if name != "pytorch":
      ratio = float(np.median(rates[name])) / theirs
      print(f"  {name} / pytorch {ratio:6.2f}x")


if __name__ == "__main__":
  cli.run(main)
