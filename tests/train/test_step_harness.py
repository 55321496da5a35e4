"""The one per-device step under pmap and under shard_map, on 1 and 4 devices, gives one trajectory."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fairjax.train import collectives
from fairjax.train import step as step_lib
from fairjax.train.state import TrainState


class TinyNet(nn.Module):

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Dense(8)(x))
    return {"embedding": x, "y": nn.Dense(1)(x)[:, 0]}


class GroupGapObjective:
  """Mean logistic loss plus a nonlinear function of global per-group sums (a squared score gap),
  i.e. the kind of statistic that must be summed across devices before it is differentiated."""

  def loss(self, params, state, batch, rng, apply_fn, axis_name):
    del rng
    out = apply_fn({"params": params["model"]}, batch["x"])
    logit = out["y"]
    per_example = optax.sigmoid_binary_cross_entropy(logit, batch["y"])
    mean_loss = collectives.global_mean(per_example.sum(), batch["y"].shape[0] * 1.0, axis_name)
    g = batch["g"]
    score = jax.nn.sigmoid(logit)
    sums = collectives.global_sum(jnp.stack([(score * g).sum(), (score * (1 - g)).sum()]), axis_name)
    counts = jax.lax.psum(jnp.stack([g.sum(), (1 - g).sum()]), axis_name)
    gap = sums[0] / counts[0] - sums[1] / counts[1]
    loss = mean_loss + 2.0 * gap ** 2
    metrics = {"count": jax.lax.psum(jnp.float32(batch["y"].shape[0]), axis_name)}
    return loss, {"model_state": state.model_state, "objective_state": state.objective_state,
                  "metrics": metrics}


def _setup(seed=0):
  rng = np.random.default_rng(seed)
  batches = [{"x": rng.normal(size=(16, 5)).astype(np.float32),
              "y": rng.integers(0, 2, 16).astype(np.float32),
              "g": rng.integers(0, 2, 16).astype(np.float32)} for _ in range(4)]
  model = TinyNet()
  params = {"model": model.init(jax.random.key(0), batches[0]["x"])["params"]}
  tx = optax.adam(0.05)
  state = TrainState.create(params=params, model_state={}, tx=tx, objective_state={},
                            rng=jax.random.PRNGKey(1))
  step = step_lib.make_train_step(GroupGapObjective(), tx, model.apply)
  return state, batches, step, model


def _reference(state, batches, model):
  """The same objective on one host, no mapping: the ground truth."""
  tx = optax.adam(0.05)
  params, opt_state = state.params, tx.init(state.params)

  def loss_fn(params, b):
    score_logit = model.apply({"params": params["model"]}, b["x"])["y"]
    mean_loss = optax.sigmoid_binary_cross_entropy(score_logit, b["y"]).mean()
    s = jax.nn.sigmoid(score_logit)
    gap = (s * b["g"]).sum() / b["g"].sum() - (s * (1 - b["g"])).sum() / (1 - b["g"]).sum()
    return mean_loss + 2.0 * gap ** 2

  for b in batches:
    grads = jax.grad(loss_fn)(params, b)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  return params


def _run_pmap(state, batches, step, devices):
  n = len(devices)
  run = jax.pmap(step, axis_name=step_lib.AXIS, devices=devices, donate_argnums=(0,))
  state = step_lib.replicate(state, n)
  for b in batches:
    state, metrics = run(state, step_lib.split_batch(b, n))
  assert bool(metrics["finite"][0])
  return jax.tree.map(np.asarray, step_lib.unreplicate(state.params))


def _run_shard_map(state, batches, step, devices):
  run = step_lib.shard_map_step(step, step_lib.data_mesh(devices))
  for b in batches:
    state, metrics = run(state, b)
  assert bool(metrics["finite"])
  assert float(metrics["count"]) == 16
  return jax.tree.map(np.asarray, state.params)


@pytest.mark.parametrize("num_devices", [1, 4])
def test_pmap_and_shard_map_agree_with_the_unmapped_reference(num_devices):
  assert len(jax.devices()) >= 4, "tests/conftest.py sets four fake CPU devices"
  devices = jax.devices()[:num_devices]
  state, batches, step, model = _setup()
  expected = _reference(state, batches, model)
  by_pmap = _run_pmap(state, batches, step, devices)
  by_shard_map = _run_shard_map(state, batches, step, devices)
  for got in (by_pmap, by_shard_map):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), got, expected)
