r"""Images/second of a full train step (forward, backward, Adam) of seed 000 §6.1's CNN: fairjax vs PyTorch.

  python benchmarks/train_throughput.py [--image_size=64] [--batch_size=128] [--steps=10] [--rounds=3]

fairjax runs its real step: ``utk_gender_cnn`` from the registry, the ``standard`` objective, and the
per-device step under ``shard_map`` on one device (what a one-CPU run executes). PyTorch (the CPU build)
trains the same network — Conv 32/64/128 3x3 valid + ReLU + 2x2 max pool, Dense 64, Dropout 0.5,
Dense 1, BCE, Adam — with as many threads as JAX has cores. Rounds alternate between the two so that
load from elsewhere hits both; the median of each is reported, with the ratio.
"""

import os
import time

from absl import app
from absl import flags
import jax
import numpy as np
import optax

from fairjax.models import registry
from fairjax.train import objectives
from fairjax.train import step as step_lib
from fairjax.train.state import TrainState

_SIZE = flags.DEFINE_integer("image_size", 64, "Square input size.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds of each framework.")


def fairjax_runner(size, batch_size):
  model = registry.get_model("utk_gender_cnn", input_shape=(size, size, 3))
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
  torch.set_num_threads(os.cpu_count() or 1)
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


def main(argv):
  del argv
  size, batch_size, steps = _SIZE.value, _BATCH.value, _STEPS.value
  runners = {"fairjax": fairjax_runner(size, batch_size), "pytorch": torch_runner(size, batch_size)}
  for run in runners.values():
    # Two steps: the first call compiles for host-side inputs, the second for the step's own (placed)
    # output state; from then on no step compiles.
    run(2)
  rates = {name: [] for name in runners}
  for _ in range(_ROUNDS.value):
    for name, run in runners.items():
      start = time.perf_counter()
      run(steps)
      rates[name].append(batch_size * steps / (time.perf_counter() - start))
  ours, theirs = float(np.median(rates["fairjax"])), float(np.median(rates["pytorch"]))
  print(f"seed 000 §6.1 CNN, {size}x{size}x3, batch {batch_size}, train step with Adam "
        f"(jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} cores)")
  print(f"  fairjax {ours:8.1f} images/s   (rounds: {', '.join(f'{r:.0f}' for r in rates['fairjax'])})")
  print(f"  pytorch {theirs:8.1f} images/s   (rounds: {', '.join(f'{r:.0f}' for r in rates['pytorch'])})")
  print(f"  ratio   {ours / theirs:8.2f}x   goal >= 1.0x: {'met' if ours >= theirs else 'NOT met'}")


if __name__ == "__main__":
  app.run(main)
