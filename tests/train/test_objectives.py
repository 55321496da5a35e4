"""The `standard` objective on registry models, through the one step under pmap and shard_map."""

import jax
import numpy as np
import optax
import pytest

from fairjax.models import registry
from fairjax.train import objectives
from fairjax.train import step as step_lib
from fairjax.train.state import TrainState


def _setup(name, **overrides):
  model = registry.get_model(name, **overrides)
  variables = registry.init_variables(model, jax.random.key(0))
  params = {"model": variables.pop("params")}
  objective = objectives.get_objective("standard", model)
  tx = optax.adam(1e-3)
  state = TrainState.create(params=params, model_state=variables, tx=tx,
                            objective_state=objective.init_state(params), rng=jax.random.PRNGKey(3))
  rng = np.random.default_rng(0)
  h, w, c = model.input_shape
  batches = [{"image": rng.integers(0, 255, (8, h, w, c), dtype=np.uint8),
              "gender": rng.integers(0, 2, 8).astype(np.int32),
              "mask": np.array([True] * 7 + [False])} for _ in range(3)]
  return model, objective, tx, state, batches


def _pmap(state, batches, train_step, devices):
  run = jax.pmap(train_step, axis_name=step_lib.AXIS, devices=devices)
  state = step_lib.replicate(state, len(devices))
  for b in batches:
    state, metrics = run(state, step_lib.split_batch(b, len(devices)))
  return jax.tree.map(np.asarray, step_lib.unreplicate(state.params)), jax.tree.map(lambda m: m[0], metrics)


def _shard_map(state, batches, train_step, devices):
  run = step_lib.shard_map_step(train_step, step_lib.data_mesh(devices), donate_state=False)
  for b in batches:
    state, metrics = run(state, b)
  return jax.tree.map(np.asarray, state.params), metrics


def _reference_loss(model, params, batch):
  """Masked mean BCE + Keras L2 on one host, no mapping, no dropout."""
  out = model.apply({"params": params["model"]}, batch["image"].astype(np.float32) / 255.0, train=False)
  logits = out["gender"].reshape(len(batch["gender"]), -1)
  labels = jax.nn.one_hot(batch["gender"], 2) if logits.shape[-1] == 2 else batch["gender"][:, None]
  per_example = optax.sigmoid_binary_cross_entropy(logits, labels).mean(-1)
  mask = batch["mask"].astype(np.float32)
  return (per_example * mask).sum() / mask.sum() + registry.l2_penalty(model, params["model"])


# Each model under both mappers, one on one device and the other on four, so that the two models
# together cover every mapper x device count (each combination compiles the step anew: seconds apiece).
@pytest.mark.slow
@pytest.mark.parametrize("name, overrides, layouts", [
    ("utk_gender_cnn", dict(input_shape=(32, 32, 3), dropout=0.0, conv_implementation="lax"),
     (("pmap", 1), ("shard_map", 4))),
    # seed 000 §6.3: two sigmoid units and an L2 penalty on every convolution.
    ("tripathi_gender_cnn", dict(input_shape=(16, 16, 1), conv_dropout=0.0, dropout=0.0, conv_implementation="lax"),
     (("pmap", 4), ("shard_map", 1))),
])
def test_standard_objective_is_the_global_loss_on_1_and_4_devices(name, overrides, layouts):
  model, objective, tx, state, batches = _setup(name, **overrides)
  train_step = step_lib.make_train_step(objective, tx, model.apply)
  # Reference: plain Adam on the unmapped loss.
  params, opt_state = state.params, tx.init(state.params)
  for b in batches:
    grads = jax.grad(_reference_loss, argnums=1)(model, params, b)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  for mapper, count in layouts:
    run = {"pmap": _pmap, "shard_map": _shard_map}[mapper]
    got, metrics = run(state, batches, train_step, jax.devices()[:count])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), got, params)
    assert bool(metrics["finite"])
  if model.l2_factors():
    assert float(metrics["l2_penalty"]) > 0


@pytest.mark.slow
def test_dropout_masks_agree_between_pmap_and_shard_map():
  model, objective, tx, state, batches = _setup("utk_gender_cnn", input_shape=(32, 32, 3),
                                                conv_implementation="lax")
  train_step = step_lib.make_train_step(objective, tx, model.apply)
  devices = jax.devices()[:4]
  by_pmap, _ = _pmap(state, batches, train_step, devices)
  by_shard_map, _ = _shard_map(state, batches, train_step, devices)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), by_pmap, by_shard_map)


def test_unknown_objective_lists_the_known_ones():
  with pytest.raises(ValueError, match="known: .*standard"):
    objectives.get_objective("fair", None)
