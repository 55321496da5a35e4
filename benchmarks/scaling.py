r"""Data-parallel scaling: measured here on 1, 2 and 4 processes, projected to pods from XLA's cost analysis.

  python benchmarks/scaling.py [--processes=1,2,4] [--global_batch=64] [--steps=10]
      [--models=cnn,resnet18,clip_vit_b32] [--devices=8,64,256] [--mfu=0.5] [--skip_measure]

**Measured.** The seed 000 CNN (``utk_gender_cnn``, 64x64, the ``standard`` objective, Adam) runs its
real per-device step under ``shard_map`` over one CPU device in each of P local processes joined by
``jax.distributed`` (gloo collectives), at one global batch: each process feeds its slice. Process 0
reports the median step time and the bytes the compiled step moves through collectives (every
all-reduce / all-gather / reduce-scatter in the optimised HLO, by its result shape). On this 2-core
machine more than two processes share cores, so the times say what gloo and the extra processes cost
here, not how a pod scales.

**Projected.** For the seed 000 CNN (128x128, its config), ResNet-18 (224x224, seed 002) and CLIP
ViT-B/32 (224 px, 77 tokens), the FLOPs and memory bytes of one train step (forward, backward, Adam)
come from XLA's cost analysis of the compiled (fused) step at per-device batches 1 and 2 (linear in the
batch: the fit gives the per-example and the fixed part), without running it. The compilation is XLA:CPU's,
so the bytes are those of XLA:CPU's fusion decisions, which keep far more intermediates in memory than
an accelerator's: the HBM column (bytes(b) / HBM bandwidth) is an upper bound of the memory time, shown
beside the compute term rather than folded into it. On N devices, each with the
per-device batch b (weak scaling: global batch N x b), a step costs

  compute     FLOPs(b) / (peak x mfu)
  all-reduce  2 (N-1)/N x gradient bytes / link bandwidth + 2 (N-1) x link latency   (ring, float32)

summed (no overlap of the gradient all-reduce with the backward pass: an upper bound; XLA overlaps
some). Targets, from the vendors' spec sheets:

  tpu_v5e   197 TFLOP/s bf16 (float32 matmuls run as bf16 passes by default on TPU), HBM 819 GB/s,
            ICI 1,600 Gbit/s = 200 GB/s per chip, 5 us per hop
  h100_ib   495 TFLOP/s TF32 dense (float32 matmuls use TF32 by default on GPU), HBM 3.35 TB/s,
            one 400 Gbit/s InfiniBand NIC per GPU = 50 GB/s across nodes, 10 us per hop

The table says which term dominates at each N. Measured on this machine (see the closing note of issue
17 for the figures and the load they were taken at).
"""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fairjax import cli
from fairjax.train import step as step_lib

_PROCESSES = flags.DEFINE_list("processes", ["1", "2", "4"], "Process counts to measure here.")
_GLOBAL_BATCH = flags.DEFINE_integer("global_batch", 64, "Global batch of the measured runs.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per measured run.")
_MODELS = flags.DEFINE_list("models", ["cnn", "resnet18", "clip_vit_b32"], "Models to project.")
_DEVICES = flags.DEFINE_list("devices", ["8", "64", "256"], "Device counts to project to.")
_MFU = flags.DEFINE_float("mfu", 0.5, "Fraction of peak FLOP/s a step reaches on the target.")
_SKIP_MEASURE = flags.DEFINE_bool("skip_measure", False, "Only the projection.")
_WORKER = flags.DEFINE_bool("worker", False, "Internal: one process of a measured run.")

TARGETS = {
    "tpu_v5e": {"flops": 197e12, "hbm": 819e9, "link": 200e9, "latency": 5e-6},
    "h100_ib": {"flops": 495e12, "hbm": 3.35e12, "link": 50e9, "latency": 10e-6},
}
# Per-device batch of each projected model: what one chip of a data-parallel pod run typically holds.
PER_DEVICE_BATCH = {"cnn": 32, "resnet18": 128, "clip_vit_b32": 128}
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_BYTES = {"f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2, "s8": 1, "u8": 1, "pred": 1, "f64": 8, "s64": 8}


def collective_bytes(hlo_text: str) -> int:
  """Bytes of the results of every collective in an optimised HLO module (``compiled.as_text()``)."""
  total = 0
  for line in hlo_text.splitlines():
    match = re.search(r"=\s*(.*?)\s+(" + "|".join(_COLLECTIVES) + r")(-start)?\(", line)
    if not match:
      continue
    for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", match.group(1)):
      if dtype in _BYTES:
        total += _BYTES[dtype] * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
  return total


# ---------------------------------------------------------------------------------------------- steps

def _classifier_step(model_name: str, image_size: int, **kwargs):
  """(step, state, batch) of a registry classifier's real per-device train step (standard objective, Adam)."""
  from fairjax.models import registry  # pylint: disable=g-import-not-at-top
  from fairjax.train import objectives
  from fairjax.train.state import TrainState
  model = registry.get_model(model_name, input_shape=(image_size, image_size, 3), **kwargs)
  tx = optax.adam(1e-4)
  objective = objectives.get_objective("standard", model)

  def make_state(rng):
    variables = dict(model.init(rng, registry.dummy_input(model)))
    params = {"model": variables.pop("params")}
    return TrainState.create(params=params, model_state=variables, tx=tx,
                             objective_state=objective.init_state(params), rng=jax.random.PRNGKey(0))

  head = model.heads[0].name
  def batch(size):
    return {"image": jax.ShapeDtypeStruct((size, image_size, image_size, 3), jnp.uint8),
            head: jax.ShapeDtypeStruct((size,), jnp.int32)}
  return step_lib.make_train_step(objective, tx, model.apply), make_state, batch


def _clip_step():
  """(step, state, batch) of a CLIP ViT-B/32 train step: symmetric InfoNCE on the device's pairs, Adam."""
  from fairjax.clip import model as clip_model  # pylint: disable=g-import-not-at-top
  config = clip_model.vit_b32()
  model = clip_model.CLIP(config)
  tx = optax.adam(1e-4)
  size, length = config.vision.image_size, config.text.context_length

  def make_state(rng):
    params = model.init(rng, jnp.zeros((1, size, size, 3)), jnp.zeros((1, length), jnp.int32))["params"]
    return {"params": params, "opt": tx.init(params)}

  def step(state, batch):
    def loss(params):
      out = model.apply({"params": params}, batch["image"], batch["input_ids"])
      return clip_model.contrastive_loss(out["logits_per_image"])
    value, grads = jax.value_and_grad(loss)(state["params"])
    grads = jax.lax.pmean(grads, step_lib.AXIS)
    updates, opt = tx.update(grads, state["opt"], state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt": opt}, jax.lax.pmean(value, step_lib.AXIS)

  def batch(b):
    return {"image": jax.ShapeDtypeStruct((b, size, size, 3), jnp.float32),
            "input_ids": jax.ShapeDtypeStruct((b, length), jnp.int32)}
  return step, make_state, batch


def _projected_step(name: str):
  if name == "cnn":
    # XLA's convolutions, as on an accelerator (the fused conv_pool op is the CPU path).
    return _classifier_step("utk_gender_cnn", 128, conv_implementation="lax")
  if name == "resnet18":
    return _classifier_step("resnet18", 224, bn_axis_name=step_lib.AXIS)  # BatchNorm statistics over the pod
  if name == "clip_vit_b32":
    return _clip_step()
  raise ValueError(f"unknown model {name!r}; known: cnn, resnet18, clip_vit_b32")


def step_costs(name: str) -> dict:
  """Per-step FLOPs and bytes at per-device batch b (``a + b * per_example``), and gradient bytes."""
  step, make_state, batch = _projected_step(name)
  state = jax.eval_shape(make_state, jax.random.key(0))
  params = state.params["model"] if hasattr(state, "params") else state["params"]
  gradient_bytes = sum(4 * int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  mapped = step_lib.shard_map_step(step, step_lib.data_mesh(jax.devices()[:1]), donate_state=False)
  costs = []
  for b in (1, 2):
    analysis = mapped.lower(state, batch(b)).compile().cost_analysis()  # after fusion, as it would run
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    costs.append((float(analysis["flops"]), float(analysis["bytes accessed"])))
  (f1, m1), (f2, m2) = costs
  return {"flops": (f1 - (f2 - f1), f2 - f1), "bytes": (m1 - (m2 - m1), m2 - m1),
          "gradient_bytes": gradient_bytes, "params": gradient_bytes // 4}


def project(costs: dict, target: dict, devices: int, per_device: int, mfu: float) -> dict:
  """One step's terms on ``devices`` devices of ``target``, ``per_device`` examples each."""
  flops = costs["flops"][0] + per_device * costs["flops"][1]
  memory = costs["bytes"][0] + per_device * costs["bytes"][1]
  compute = flops / (target["flops"] * mfu)
  ring = 2 * (devices - 1) / devices * costs["gradient_bytes"] / target["link"] + 2 * (devices - 1) * target["latency"]
  return {"compute_s": compute, "memory_s": memory / target["hbm"], "allreduce_s": ring, "step_s": compute + ring,
          "dominant": "all-reduce" if ring > compute else "compute"}


# ------------------------------------------------------------------------------------------- measured

def worker() -> None:
  """One process of a measured run (environment from ``measure``)."""
  from fairjax.train import distributed  # pylint: disable=g-import-not-at-top
  from fairjax.train import runner as runner_lib
  distributed.initialize()
  step, make_state, batch_spec = _classifier_step("utk_gender_cnn", 64)
  runner = runner_lib.Runner("shard_map", step, step)
  state = runner.put_state(jax.tree.map(np.asarray, make_state(jax.random.key(0))))
  local = _GLOBAL_BATCH.value // jax.process_count()
  rng = np.random.default_rng(jax.process_index())
  spec = batch_spec(local)
  host = {k: rng.integers(0, 2 if v.dtype == jnp.int32 else 255, v.shape).astype(v.dtype) for k, v in spec.items()}
  batch = runner.put_batch(host)
  hlo = runner._train.lower(state, batch).compile().as_text()  # pylint: disable=protected-access
  times = []
  for i in range(_STEPS.value + 2):
    start = time.perf_counter()
    state, metrics = runner._train(state, batch)  # pylint: disable=protected-access
    jax.block_until_ready(metrics)
    if i >= 2:  # the first two calls compile (host inputs, then the step's own placed output)
      times.append(time.perf_counter() - start)
  if jax.process_index() == 0:
    print("RESULT " + json.dumps({"processes": jax.process_count(), "devices": jax.device_count(),
                                  "step_s": statistics.median(times), "collective_bytes": collective_bytes(hlo)}))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def measure(processes: int) -> dict:
  port = _free_port()
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
         "FAIRJAX_COORDINATOR": f"127.0.0.1:{port}", "FAIRJAX_NUM_PROCESSES": str(processes)}
  command = [sys.executable, os.path.abspath(__file__), "--worker", f"--global_batch={_GLOBAL_BATCH.value}",
             f"--steps={_STEPS.value}"]
  jobs = [subprocess.Popen(command, env={**env, "FAIRJAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for i in range(processes)]
  outputs = [job.communicate(timeout=900) for job in jobs]
  failed = [i for i, job in enumerate(jobs) if job.returncode != 0]
  if failed:
    raise RuntimeError(f"process {failed[0]} failed: {outputs[failed[0]][1].strip().splitlines()[-1:]}")
  line = next(l for l in outputs[0][0].splitlines() if l.startswith("RESULT "))
  return json.loads(line[len("RESULT "):])


def main(argv):
  del argv
  if _WORKER.value:
    worker()
    return
  if not _SKIP_MEASURE.value:
    print(f"Measured here: seed 000 CNN 64x64, global batch {_GLOBAL_BATCH.value}, shard_map over one CPU device "
          f"per process, gloo ({os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} before)")
    base = None
    for processes in map(int, _PROCESSES.value):
      result = measure(processes)
      base = base or result["step_s"]
      payload = result["collective_bytes"]
      print(f"  {processes} process{'es' if processes > 1 else '  '}: {1e3 * result['step_s']:7.1f} ms/step "
            f"({base / result['step_s']:.2f}x the speed of one), collectives {payload / 1e6:.3f} MB per step "
            f"(a ring sends {2 * (processes - 1) / processes * payload / 1e6:.3f} MB per process)")
    print(f"  (load average after: {os.getloadavg()[0]:.2f}, the last run's own processes included)")
  print(f"\nProjected (weak scaling, mfu {_MFU.value}, gradient all-reduce in float32 on a ring, no overlap):")
  print("| model | params | per-device batch | target | devices | compute ms | HBM ms (upper bound) | all-reduce ms "
        "| step ms | dominant |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  notes = []
  for name in _MODELS.value:
    costs = step_costs(name)
    b = PER_DEVICE_BATCH[name]
    for target_name, target in TARGETS.items():
      for devices in map(int, _DEVICES.value):
        p = project(costs, target, devices, b, _MFU.value)
        print(f"| {name} | {costs['params'] / 1e6:.1f} M | {b} | {target_name} | {devices} | "
              f"{1e3 * p['compute_s']:.2f} | {1e3 * p['memory_s']:.2f} | {1e3 * p['allreduce_s']:.2f} | {1e3 * p['step_s']:.2f} | {p['dominant']} |")
    notes.append(f"{name}: {costs['flops'][1] / 1e9:.2f} GFLOP and {costs['bytes'][1] / 1e6:.1f} MB per example, "
                 f"{costs['flops'][0] / 1e9:.2f} GFLOP fixed (XLA's cost analysis)")
  print("\n".join(["", *notes]))


if __name__ == "__main__":
  cli.run(main)
