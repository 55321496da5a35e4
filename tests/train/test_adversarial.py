"""Gradient reversal and JLU: the layer, the losses against hand values, where each gradient goes,
pmap against shard_map, and both default configs end to end."""

import importlib.util
import json
import os

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

from fairjax.models import heads as heads_lib
from fairjax.models.heads import HeadSpec
from fairjax.train import adversarial
from fairjax.train import collectives
from fairjax.train import loop
from fairjax.train import objectives
from fairjax.train import step as step_lib
from fairjax.train.state import TrainState

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGE = heads_lib.binned_head("age", 16, 72, 4)
GENDER = HeadSpec("gender", "multiclass", num_outputs=2)


class TinyModel(nn.Module):
  """A registry-contract model small enough to differentiate by hand: flatten, Dense(8) embedding, heads."""

  heads: tuple = (AGE, GENDER)
  input_shape: tuple = (2, 2, 3)

  @nn.compact
  def __call__(self, x, train=False):
    embedding = nn.tanh(nn.Dense(8, name="fc1")(x.reshape(x.shape[0], -1)))
    return {"embedding": embedding, **heads_lib.head_outputs(self.heads, embedding, train)}


def _batch(size=8, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, (size, 2, 2, 3), dtype=np.uint8),
          "age": rng.integers(16, 72, size).astype(np.int32),
          "gender": rng.integers(0, 2, size).astype(np.int32),
          "race": np.concatenate([[-1], rng.integers(0, 5, size - 1)]).astype(np.int32),  # one unknown
          "mask": np.ones(size, bool)}


def _state(objective, model, tx=None):
  variables = model.init(jax.random.key(0), jnp.zeros((1, *model.input_shape)))
  params = {"model": variables["params"]}
  params.update(objective.init_params(jax.random.key(1), params["model"]))
  return TrainState.create(params=params, model_state={}, tx=tx or optax.sgd(0.1),
                           objective_state=objective.init_state(params), rng=jax.random.PRNGKey(2))


def _loss_and_grads(objective, model, state, batch):
  """The objective's loss, gradients (psummed, as the step does) and metrics on one device."""

  def per_device(state, batch):
    params = collectives.to_varying(state.params, step_lib.AXIS)
    (loss, aux), grads = jax.value_and_grad(objective.loss, has_aux=True)(
        params, state, batch, jax.random.key(3), model.apply, step_lib.AXIS)
    return lax.pmean(loss, step_lib.AXIS), lax.psum(grads, step_lib.AXIS), aux["metrics"]

  mesh = step_lib.data_mesh(jax.devices()[:1])
  mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(step_lib.AXIS)), out_specs=P())
  return jax.tree.map(np.asarray, jax.jit(mapped)(state, batch))


def _inputs(batch):
  return jnp.asarray(batch["image"], jnp.float32) / 255.0


def _mean_ce(spec, output, labels):
  total, count = heads_lib.loss_terms(spec, output, labels)
  return total / count


def _close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7, **kw), a, b)


# ------------------------------------------------------------------------------------------ the layer

def test_gradient_reversal_is_the_identity_forward_and_flips_and_scales_the_gradient():
  x = jnp.array([1.0, 2.0, 3.0])
  w = jnp.array([0.5, -1.0, 2.0])
  np.testing.assert_array_equal(adversarial.gradient_reversal(x, 0.3), x)
  grad_x, grad_scale = jax.grad(lambda x, s: jnp.sum(w * adversarial.gradient_reversal(x, s)),
                                argnums=(0, 1))(x, 0.3)
  np.testing.assert_allclose(grad_x, [-0.15, 0.3, -0.6], rtol=1e-6)  # -0.3 * w, by hand
  assert float(grad_scale) == 0.0
  # Inside a chain: d/dx sin(grl(x^2)) = -s * cos(x^2) * 2x; and nothing changes under jit.
  chained = jax.jit(jax.grad(lambda x: jnp.sin(adversarial.gradient_reversal(x ** 2, 2.0))))(1.5)
  np.testing.assert_allclose(chained, -2.0 * np.cos(2.25) * 3.0, rtol=1e-6)


def test_norm_preserving_reversal_drops_the_radial_part_of_the_flipped_gradient():
  x = jnp.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
  w = jnp.array([[1.0, 2.0], [0.5, -1.0], [2.0, 1.0]])
  np.testing.assert_array_equal(adversarial.norm_preserving_reversal(x, 0.5), x)
  grad_x, grad_scale = jax.grad(lambda x, s: jnp.sum(w * adversarial.norm_preserving_reversal(x, s)),
                                argnums=(0, 1))(x, 0.5)
  # Row 0: -0.5 * (1, 2) = (-0.5, -1); along (3, 4) / 5 that is -1.1, i.e. (-0.66, -0.88); what is left
  # is (0.16, -0.12). Row 1: (-0.25, 0.5) less its part along (1, 0). Row 2 (zero) has no direction.
  np.testing.assert_allclose(grad_x, [[0.16, -0.12], [0.0, 0.5], [-1.0, -0.5]], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(jnp.sum(grad_x[:2] * x[:2], -1), 0.0, atol=1e-6)  # it never stretches x
  assert float(grad_scale) == 0.0


def test_dann_schedule_by_hand():
  assert float(adversarial.dann_lambda(0.0)) == 0.0
  np.testing.assert_allclose(adversarial.dann_lambda(0.5, 2.0), 2.0 * (2 / (1 + np.exp(-5.0)) - 1), rtol=1e-6)
  np.testing.assert_allclose(adversarial.dann_lambda(1.0), 2 / (1 + np.exp(-10.0)) - 1, rtol=1e-6)
  assert float(adversarial.dann_lambda(3.0)) == float(adversarial.dann_lambda(1.0))  # past the ramp


# -------------------------------------------------------------------------------------- confusion loss

def test_confusion_loss_against_hand_values_and_its_gradient():
  logits = jnp.array([[np.log(3.0), 0.0], [0.0, 0.0]])
  total, count = adversarial.confusion_loss_terms(GENDER, logits)
  # Row 1: p = (3/4, 1/4), -(log 3/4 + log 1/4) / 2; row 2: p = (1/2, 1/2), log 2.
  np.testing.assert_allclose(total, -(np.log(0.75) + np.log(0.25)) / 2 + np.log(2.0), rtol=1e-6)
  assert float(count) == 2.0
  grad = jax.grad(lambda z: adversarial.confusion_loss_terms(GENDER, z)[0])(logits)
  np.testing.assert_allclose(grad, [[0.25, -0.25], [0.0, 0.0]], atol=1e-7)  # softmax - uniform
  # A one-unit sigmoid head is confused to p = 0.5: the same loss as the two-way softmax of (z, 0).
  binary = HeadSpec("gender", "binary")
  total, _ = adversarial.confusion_loss_terms(binary, jnp.array([np.log(3.0)]))
  np.testing.assert_allclose(total, -(np.log(0.75) + np.log(0.25)) / 2, rtol=1e-6)
  # Five races: the target is 1/5 each, so equal logits cost log 5; the mask drops rows.
  race = HeadSpec("race", "multiclass", num_outputs=5)
  total, count = adversarial.confusion_loss_terms(race, jnp.zeros((3, 5)), mask=jnp.array([1, 0, 1]))
  np.testing.assert_allclose(total, 2 * np.log(5.0), rtol=1e-6)
  assert float(count) == 2.0


# ------------------------------------------------------------------------------------------------- JLU

def _jlu_reference(model, params, batch):
  """By hand: the task loss, the protected head's CE and its confusion loss as functions of params."""
  images = _inputs(batch)

  def task(p):
    return _mean_ce(AGE, model.apply({"params": p}, images)["age"], batch["age"])

  def embedding(p):
    return model.apply({"params": p}, images)["embedding"]

  def gender_logits(head, emb):
    return emb @ head["kernel"] + head["bias"]

  return task, embedding, gender_logits


def test_jlu_sends_each_gradient_only_where_it_should():
  model = TinyModel()
  batch = _batch()
  grads = {}
  for alpha in (0.0, 1.0):
    objective = objectives.get_objective("jlu", model, attributes=("gender",), alpha=alpha)
    state = _state(objective, model)
    loss, grads[alpha], metrics = _loss_and_grads(objective, model, state, batch)
  assert "adversary" not in state.params  # jlu_cnn-like: the model's own gender head is the protected head
  params = state.params["model"]
  task, embedding, gender_logits = _jlu_reference(model, params, batch)

  # (a): the gender head gets the gradient of its CE on the frozen embedding, and only that.
  emb = embedding(params)
  head_grad = jax.grad(lambda h: _mean_ce(GENDER, gender_logits(h, emb), batch["gender"]))(params["gender"])
  _close(grads[0.0]["model"]["gender"], head_grad)
  _close(grads[1.0]["model"]["gender"], head_grad)  # the confusion term gives the head nothing

  # (b) with alpha = 0 is the task alone: the head's own loss gives the trunk nothing.
  task_grad = jax.grad(task)(params)
  for layer in ("fc1", "age"):
    _close(grads[0.0]["model"][layer], task_grad[layer])

  # alpha = 1 adds exactly the confusion loss's gradient through the (fixed) head to the trunk.
  def confusion(p):
    return adversarial.confusion_loss_terms(GENDER, gender_logits(params["gender"], embedding(p)))

  conf_grad = jax.grad(lambda p: confusion(p)[0] / confusion(p)[1])(params)
  assert np.abs(conf_grad["fc1"]["kernel"]).max() > 1e-4
  _close(grads[1.0]["model"]["fc1"], jax.tree.map(jnp.add, task_grad["fc1"], conf_grad["fc1"]))
  _close(grads[1.0]["model"]["age"], task_grad["age"])

  head_loss = _mean_ce(GENDER, gender_logits(params["gender"], emb), batch["gender"])
  np.testing.assert_allclose(loss, task(params) + confusion(params)[0] / confusion(params)[1] + head_loss,
                             rtol=1e-5)
  assert set(metrics) >= {"loss/age", "unlearn/gender_loss", "unlearn/gender_confusion",
                          "unlearn/gender_accuracy"}
  assert "loss/gender" not in metrics  # a protected head is never a task head


def test_jlu_adversary_head_gets_no_gradient_from_the_confusion_term():
  model = TinyModel(heads=(GENDER,))
  batch = _batch()
  grads = {}
  for alpha in (0.0, 0.4):
    objective = objectives.get_objective("jlu", model, attributes=("race",), alpha=alpha)
    state = _state(objective, model)
    _, grads[alpha], _ = _loss_and_grads(objective, model, state, batch)
  assert set(state.params["adversary"]) == {"race"}  # a softmax on the embedding (hidden=())
  assert state.params["adversary"]["race"]["kernel"].shape == (8, 5)
  _close(grads[0.4]["adversary"], grads[0.0]["adversary"])
  assert np.abs(grads[0.4]["model"]["fc1"]["kernel"] - grads[0.0]["model"]["fc1"]["kernel"]).max() > 1e-5


# ------------------------------------------------------------------------------------- gradient reversal

def test_grl_reverses_and_scales_the_adversary_gradient_into_the_trunk_only():
  model = TinyModel(heads=(GENDER,))
  batch = _batch()
  objective = objectives.get_objective("grl", model, attributes=("race",), hidden=(4,), weight=0.5,
                                       schedule="constant")
  state = _state(objective, model)
  loss, grads, metrics = _loss_and_grads(objective, model, state, batch)
  params = state.params
  adversary = adversarial.HeadsOnly((objective.terms["grl"].protected["race"][0],))
  images = _inputs(batch)

  def task(p):
    return _mean_ce(GENDER, model.apply({"params": p["model"]}, images)["gender"], batch["gender"])

  def attribute(p):  # the adversary's CE on the plain embedding; rows of unknown race drop out
    emb = model.apply({"params": p["model"]}, images)["embedding"]
    return _mean_ce(objective.terms["grl"].protected["race"][0], adversary.apply({"params": p["adversary"]}, emb)["race"],
                    batch["race"])

  task_grad, attribute_grad = jax.grad(task)(params), jax.grad(attribute)(params)
  # Trunk: task gradient minus 0.5 x the adversary's; gender head: the task's; adversary: its own, unreversed.
  _close(grads["model"]["fc1"], jax.tree.map(lambda t, a: t - 0.5 * a, task_grad["model"]["fc1"],
                                             attribute_grad["model"]["fc1"]))
  _close(grads["model"]["gender"], task_grad["model"]["gender"])
  _close(grads["adversary"], attribute_grad["adversary"])
  np.testing.assert_allclose(loss, task(params) + attribute(params), rtol=1e-5)
  assert float(metrics["grl_lambda"]) == 0.5
  # Race is unknown on row 0: the adversary's accuracy is over the 7 known rows.
  emb = model.apply({"params": params["model"]}, images)["embedding"]
  predicted = np.argmax(adversary.apply({"params": params["adversary"]}, emb)["race"], -1)
  np.testing.assert_allclose(metrics["adversary/race_accuracy"], np.mean(predicted[1:] == batch["race"][1:]),
                             rtol=1e-6)


def test_grl_with_keep_norm_reverses_only_the_tangential_part_into_the_trunk():
  model = TinyModel(heads=(GENDER,))
  batch = _batch()
  objective = objectives.get_objective("grl", model, attributes=("race",), hidden=(4,), weight=0.5,
                                       schedule="constant", keep_norm=True)
  state = _state(objective, model)
  _, grads, _ = _loss_and_grads(objective, model, state, batch)
  params = state.params
  adversary = adversarial.HeadsOnly((objective.terms["grl"].protected["race"][0],))
  images = _inputs(batch)
  embed = lambda p: model.apply({"params": p}, images)["embedding"]
  emb, pull_back = jax.vjp(embed, params["model"])
  spec = objective.terms["grl"].protected["race"][0]
  g = jax.grad(lambda e: _mean_ce(spec, adversary.apply({"params": params["adversary"]}, e)["race"],
                                  batch["race"]))(emb)
  tangential = g - jnp.sum(g * emb, -1, keepdims=True) / jnp.sum(emb * emb, -1, keepdims=True) * emb
  (reversed_part,) = pull_back(-0.5 * tangential)
  task_grad = jax.grad(lambda p: _mean_ce(GENDER, model.apply({"params": p}, images)["gender"],
                                          batch["gender"]))(params["model"])
  _close(grads["model"]["fc1"], jax.tree.map(jnp.add, task_grad["fc1"], reversed_part["fc1"]))
  _close(grads["model"]["gender"], task_grad["gender"])


def test_grl_ramps_lambda_over_the_run():
  model = TinyModel()
  objective = objectives.get_objective("grl", model, attributes=("race", "gender"))
  with pytest.raises(ValueError, match="ramp_steps"):
    objective.terms["grl"].reversal_weight(0)
  objective.set_total_steps(10)
  state = _state(objective, model)
  _, _, metrics = _loss_and_grads(objective, model, state, _batch())
  assert float(metrics["grl_lambda"]) == 0.0  # step 0
  _, _, metrics = _loss_and_grads(objective, model, state.replace(step=jnp.int32(5)), _batch())
  np.testing.assert_allclose(metrics["grl_lambda"], adversarial.dann_lambda(0.5), rtol=1e-6)
  objective = objectives.get_objective("grl", model, attributes=("race",), ramp_steps=4)
  objective.set_total_steps(10)  # a configured horizon wins over the run's length
  assert objective.terms["grl"].ramp_steps == 4


def test_invalid_options_fail_at_construction():
  model = TinyModel(heads=(GENDER,))
  with pytest.raises(ValueError, match="attributes"):
    objectives.get_objective("grl", model, attributes=("age",))
  with pytest.raises(ValueError, match="no task is left"):
    objectives.get_objective("jlu", model, attributes=("gender",))
  with pytest.raises(ValueError, match="schedule"):
    objectives.get_objective("grl", model, schedule="linear")
  with pytest.raises(ValueError, match="predicts no classes"):
    objectives.get_objective("jlu", TinyModel(heads=(AGE, HeadSpec("gender", "regression"))),
                             attributes=("gender",))


# ------------------------------------------------------------------------------- pmap against shard_map

def _trajectory(objective, model, batches, mapper, devices):
  tx = optax.adam(0.05)
  state = _state(objective, model, tx)
  step = step_lib.make_train_step(objective, tx, model.apply)
  if mapper == "pmap":
    run = jax.pmap(step, axis_name=step_lib.AXIS, devices=devices)
    state = step_lib.replicate(state, len(devices))
    for b in batches:
      state, metrics = run(state, step_lib.split_batch(b, len(devices)))
    return jax.tree.map(np.asarray, step_lib.unreplicate(state.params)), jax.tree.map(lambda m: m[0], metrics)
  run = step_lib.shard_map_step(step, step_lib.data_mesh(devices), donate_state=False)
  for b in batches:
    state, metrics = run(state, b)
  return jax.tree.map(np.asarray, state.params), metrics


@pytest.mark.slow
@pytest.mark.parametrize("name, options", [
    ("grl", dict(attributes=("race", "gender"), hidden=(6,), ramp_steps=3)),
    ("jlu", dict(attributes=("gender",), alpha=0.4)),
])
def test_pmap_and_shard_map_on_four_devices_match_one_device(name, options):
  assert len(jax.devices()) >= 4, "tests/conftest.py sets four fake CPU devices"
  model = TinyModel()
  objective = objectives.get_objective(name, model, **options)
  batches = [_batch(16, seed) for seed in range(3)]
  expected, expected_metrics = _trajectory(objective, model, batches, "shard_map", jax.devices()[:1])
  for mapper in ("pmap", "shard_map"):
    params, metrics = _trajectory(objective, model, batches, mapper, jax.devices()[:4])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6), params, expected)
    for key, value in expected_metrics.items():
      np.testing.assert_allclose(metrics[key], value, rtol=2e-5, atol=2e-6, err_msg=f"{mapper} {key}")


# ------------------------------------------------------------------------------------------ end to end

def _config(name):
  spec = importlib.util.spec_from_file_location(f"_test_{name}", os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("smoke")
  config.data.num_examples.train = 192
  config.data.num_examples.validation = 32
  config.data.num_examples.test = 64
  return config


def test_configs_change_only_the_objective():
  default = _config("default")
  for name, objective in (("default_grl", "grl"), ("default_jlu", "jlu")):
    config = _config(name)
    assert list(config.objective.terms) == [objective]
    assert tuple(config.objective.terms[objective].attributes) == ("race",)
    config.objective = default.objective
    assert config.to_dict() == default.to_dict()


@pytest.mark.slow
@pytest.mark.parametrize("name, mapper", [("default_grl", "pmap"), ("default_jlu", "shard_map")])
def test_smoke_run_reports_leakage(tmp_path, name, mapper):
  config = _config(name)
  config.train.mapper = mapper
  final = loop.train_and_evaluate(config, str(tmp_path))
  for split in ("validation", "test"):
    summary = json.loads((tmp_path / "report" / split / "summary.json").read_text())
    for attribute in ("race", "gender"):
      assert -1.0 <= summary[f"leakage_{attribute}"] <= 1.0
      assert summary[f"leakage_{attribute}"] == pytest.approx(final[f"{split}/leakage_{attribute}"])
      assert (tmp_path / "report" / split / f"embedding_{attribute}.png").exists()
  history = (tmp_path / "history.jsonl").read_text()
  assert ("train/adversary/race_loss" if name == "default_grl" else "train/unlearn/race_confusion") in history
  assert "## Leakage" in (tmp_path / "report" / "report.md").read_text()
