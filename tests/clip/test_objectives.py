"""CLIP's contrastive objective: hand values, masks and weights, and one trajectory on 1 and 4 devices
under pmap and shard_map that equals training on the whole batch on one device."""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fairjax.clip import model as clip_lib
from fairjax.models import registry
from fairjax.clip import objectives as clip_objectives
from fairjax.train import objectives
from fairjax.train import step as step_lib
from fairjax.train.state import TrainState

AXIS = step_lib.AXIS
TOKENIZER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "clip", "testdata", "eos_gelu")
TINY = {"vision": {"patch_size": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
        "text": {"context_length": 12, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
        "projection_dim": 8}


def on_one_axis(fn, *args):
  """``fn`` under a named axis of one member (vmap), so that its collectives run outside a mesh."""
  expand = lambda tree: jax.tree.map(lambda a: jnp.asarray(a)[None], tree)
  return jax.tree.map(lambda a: a[0], jax.jit(jax.vmap(fn, axis_name=AXIS))(*map(expand, args)))


def _loss(images, texts, logit_scale, valid, weights):
  return on_one_axis(lambda *a: clip_objectives.global_contrastive_loss(*a, AXIS)[0], images, texts,
                     jnp.float32(logit_scale), valid, weights)


def test_contrastive_loss_by_hand():
  images = np.array([[1.0, 0.0], [0.0, 3.0]], np.float32)   # unit: (1, 0), (0, 1)
  texts = np.array([[2.0, 0.0], [1.0, 1.0]], np.float32)    # unit: (1, 0), (1, 1) / sqrt 2
  r = 1 / math.sqrt(2)
  # scale 1: logits [[1, r], [0, r]]
  i2t = [math.log(math.e + math.exp(r)) - 1, math.log(1 + math.exp(r)) - r]
  t2i = [math.log(math.e + 1) - 1, math.log(2.0)]
  ones = np.ones(2, np.float32)
  expected = (sum(i2t) + sum(t2i)) / 4
  np.testing.assert_allclose(_loss(images, texts, 0.0, ones.astype(bool), ones), expected, rtol=1e-6)
  # The same as the model's own one-batch loss.
  logits = jnp.asarray([[1, r], [0, r]], jnp.float32)
  np.testing.assert_allclose(clip_lib.contrastive_loss(logits), expected, rtol=1e-6)
  # Weights 2 and 1: a weighted mean of the pairs' terms.
  weighted = (2 * (i2t[0] + t2i[0]) + (i2t[1] + t2i[1])) / 6
  np.testing.assert_allclose(_loss(images, texts, 0.0, ones.astype(bool), np.array([2.0, 1.0], np.float32)),
                             weighted, rtol=1e-6)
  # logit_scale ln 2 doubles the logits; it is clipped at ln 100.
  i2t2 = [math.log(math.exp(2) + math.exp(2 * r)) - 2, math.log(1 + math.exp(2 * r)) - 2 * r]
  t2i2 = [math.log(math.exp(2) + 1) - 2, math.log(2.0)]
  np.testing.assert_allclose(_loss(images, texts, math.log(2), ones.astype(bool), ones),
                             (sum(i2t2) + sum(t2i2)) / 4, rtol=1e-6)
  capped = on_one_axis(lambda *a: clip_objectives.global_contrastive_loss(*a, AXIS, max_logit_scale=0.0)[0],
                       images, texts, jnp.float32(3.0), ones.astype(bool), ones)
  np.testing.assert_allclose(capped, expected, rtol=1e-6)


def test_masked_rows_are_neither_anchors_nor_negatives():
  images = np.array([[1.0, 0.0], [0.0, 3.0], [5.0, 5.0]], np.float32)
  texts = np.array([[2.0, 0.0], [1.0, 1.0], [1.0, 0.9]], np.float32)
  valid = np.array([True, True, False])
  weights = np.array([1.0, 1.0, 7.0], np.float32)  # a padding row's weight does not count either
  got = _loss(images, texts, 0.0, valid, weights)
  np.testing.assert_allclose(got, _loss(images[:2], texts[:2], 0.0, valid[:2], weights[:2]), rtol=1e-6)
  grads = jax.grad(lambda x: _loss(x, texts, 0.0, valid, weights))(jnp.asarray(images))
  assert np.isfinite(grads).all() and np.abs(grads[2]).max() == 0
  nothing = _loss(images, texts, 0.0, np.zeros(3, bool), weights)
  assert float(nothing) == 0.0


def _model():
  return registry.get_model("clip_zero_shot", input_shape=(16, 16, 3), tokenizer=TOKENIZER, architecture=TINY,
                            heads=("gender",), gender_prompts=("male/female",))


def _batches(model, n=8, steps=2, seed=0):
  rng = np.random.default_rng(seed)
  eos = model.clip_config.text.eos_token_id
  out = []
  for _ in range(steps):
    ids = rng.integers(0, 500, (n, 12)).astype(np.int32)
    lengths = rng.integers(3, 12, n)
    ids[np.arange(n), lengths] = eos
    mask = (np.arange(12)[None] <= lengths[:, None]).astype(np.int32)
    out.append({"image": rng.integers(0, 255, (n, 16, 16, 3)).astype(np.uint8), "input_ids": ids,
                "attention_mask": mask, "gender": rng.integers(0, 2, n).astype(np.int32),
                "race": rng.integers(0, 5, n).astype(np.int32), "mask": np.ones(n, bool),
                "weight": rng.uniform(0.5, 2.0, n).astype(np.float32)})
  return out


def _setup(terms=None, **options):
  """The clip_contrastive task with ``options``, plus ``terms`` ({name: options}), as a config builds it."""
  model = _model()
  variables = registry.init_variables(model, jax.random.key(0))
  params = {"model": variables["params"]}
  config = ml_collections.ConfigDict(dict(task="clip_contrastive", task_options=options, terms=terms or {}))
  objective = objectives.build(config, model)
  # Plain SGD: Adam would turn the rounding noise of gradients that are zero in exact arithmetic (the
  # key bias's: a softmax ignores a shift shared by all its scores) into full-size steps.
  tx = optax.sgd(0.5)
  state = TrainState.create(params=params, model_state={}, tx=tx, objective_state=objective.init_state(params),
                            rng=jax.random.PRNGKey(1))
  # Host arrays, as the training loop hands them over: no weak types that would retrace the second step.
  state = jax.device_get(state)
  return model, objective, tx, state, step_lib.make_train_step(objective, tx, model.apply)


def _reference(model, tx, state, batches):
  """SGD on the whole batch of each step, one device, the model's own CLIP loss (weighted)."""
  params, opt_state = state.params, tx.init(state.params)

  def loss_fn(params, b):
    out = model.apply({"params": params["model"]}, b["image"].astype(jnp.float32) / 255.0, b["input_ids"],
                      b["attention_mask"], method="contrastive")
    scale = jnp.exp(jnp.minimum(out["logit_scale"], clip_objectives.MAX_LOGIT_SCALE))
    unit = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    logits = scale * unit(out["image_embedding"]) @ unit(out["text_embedding"]).T
    labels = jnp.arange(logits.shape[0])
    per_pair = (optax.softmax_cross_entropy_with_integer_labels(logits, labels)
                + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels)) / 2
    return jnp.sum(b["weight"] * per_pair) / jnp.sum(b["weight"])

  losses, value_and_grad = [], jax.jit(jax.value_and_grad(loss_fn))
  for b in batches:
    loss, grads = value_and_grad(params, b)
    losses.append(float(loss))
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  return params, losses


@pytest.mark.slow  # five compilations of a CLIP step: about a minute on two busy cores
def test_pmap_and_shard_map_train_as_one_device_on_the_whole_batch():
  """pmap on 4 devices, shard_map on 4 and on 1: the losses and parameters of SGD on the whole batch."""
  model, _, tx, state, step = _setup()
  batches = _batches(model)
  expected, expected_losses = _reference(model, tx, state, batches)
  results = []
  run = jax.pmap(step, axis_name=AXIS, devices=jax.devices()[:4])
  pstate = step_lib.replicate(state, 4)
  for b, want in zip(batches, expected_losses):
    pstate, metrics = run(pstate, step_lib.split_batch(b, 4))
    np.testing.assert_allclose(metrics["loss"][0], want, rtol=1e-5)
    np.testing.assert_allclose(metrics["contrastive/loss"][0], want, rtol=1e-5)
  results.append(jax.tree.map(np.asarray, step_lib.unreplicate(pstate.params)))
  for num_devices in (4, 1):
    srun = step_lib.shard_map_step(step, step_lib.data_mesh(jax.devices()[:num_devices]), donate_state=False)
    sstate = state
    for b, want in zip(batches, expected_losses):
      sstate, metrics = srun(sstate, b)
      np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)
    assert bool(metrics["finite"])
    results.append(jax.tree.map(np.asarray, sstate.params))
  for got in results:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6), got, expected)


def test_prompt_loss_and_fairness_term_are_added():
  model, objective, _, state, _ = _setup(prompt_weight=0.5,
                                         terms={"constrained": {"head": "gender", "attributes": ("race",),
                                                                "epsilon": 0.0, "multiplier_lr": 1.0}})
  batch = _batches(model, steps=1)[0]
  # Multipliers away from zero, and unequal: equal ones cancel over the pairs (g, h) and (h, g).
  state = state.replace(objective_state=jax.tree.map(
      lambda m: jax.random.uniform(jax.random.key(3), m.shape), state.objective_state))
  loss, aux = on_one_axis(lambda p, b: objective.loss(p, state, b, jax.random.key(0), model.apply, AXIS),
                          state.params, batch)
  plain = objectives.get_objective("clip_contrastive", model)
  contrastive, _ = on_one_axis(lambda p, b: plain.loss(p, state, b, jax.random.key(0), model.apply, AXIS),
                               state.params, batch)
  metrics = aux["metrics"]
  np.testing.assert_allclose(metrics["contrastive/loss"], contrastive, rtol=1e-6)
  np.testing.assert_allclose(loss, contrastive + 0.5 * metrics["loss/gender"] + metrics["term/constrained"],
                             rtol=1e-5)
  assert float(metrics["term/constrained"]) != 0.0
  assert set(aux["objective_state"]["constrained"]["multipliers"]) == {"race"}


def test_bad_options_and_batches():
  model = _model()
  with pytest.raises(ValueError, match="objective.task_options: objective task 'clip_contrastive' has no "
                     "option 'fairness'; its options: prompt_weight, max_logit_scale"):
    _setup(fairness="constrained")
  with pytest.raises(ValueError, match="no task is left"):  # the model's one prompt head is gender
    _setup(terms={"grl": {"attributes": ("gender",)}})
  with pytest.raises(ValueError, match="prompt_weight"):
    objectives.get_objective("clip_contrastive", model, prompt_weight=-1.0)
  with pytest.raises(ValueError, match="needs a CLIP model"):
    objectives.get_objective("clip_contrastive", registry.get_model("utk_gender_cnn"))
  _, objective, _, state, _ = _setup()
  batch = {k: v for k, v in _batches(model, steps=1)[0].items() if k != "input_ids"}
  with pytest.raises(KeyError, match="lacks \\['input_ids'\\]"):
    on_one_axis(lambda p, b: objective.loss(p, state, b, jax.random.key(0), model.apply, AXIS), state.params,
                batch)
