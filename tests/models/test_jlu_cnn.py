"""Seed 004's JLU network: 96x96x3 -> 128-d representation -> 14 age bins (16-72) and gender."""

import dataclasses

import jax
import numpy as np

from fairjax import models
from fairjax.models import heads
from tests.models import util


def test_heads_and_representation_are_the_seeds():
  model = models.get_model("jlu_cnn")
  age, gender = model.heads
  assert (age.name, age.kind, age.num_outputs, age.bin_low, age.bin_width) == ("age", "binned", 14, 16, 4)
  assert (gender.name, gender.kind, gender.num_outputs) == ("gender", "multiclass", 2)
  assert util.output_shapes(model) == {"embedding": (2, 128), "age": (2, 14), "gender": (2, 2)}


def test_parameter_count_by_hand():
  # The seed gives input, representation and heads; the trunk is the documented assumption:
  # four 'same' 3x3 conv + 2x2 pool stages (96 -> 6), flatten 6*6*256, Dense(128).
  conv = lambda cin, cout: 9 * cin * cout + cout
  trunk = conv(3, 32) + conv(32, 64) + conv(64, 128) + conv(128, 256) + (6 * 6 * 256 * 128 + 128)
  count = trunk + (128 * 14 + 14) + (128 * 2 + 2)
  assert models.param_count(models.abstract_variables(models.get_model("jlu_cnn"))["params"]) == count


def test_jlu_primary_task_lowers_age_plus_confusion_loss():
  # Primary task of JLU: L_age + alpha * L_confusion, the gender head pushed towards (0.5, 0.5).
  alpha = 0.4
  base = models.get_model("jlu_cnn", conv_implementation="lax", input_shape=(32, 32, 3))
  age, gender = base.heads
  model = base.clone(heads=(age, dataclasses.replace(gender, loss_weight=alpha)))
  labels = {"age": util.random_labels(model, 8)["age"], "gender": np.full((8, 2), 0.5, np.float32)}
  before, after, _, params = util.adam_losses(model, util.images((8, 32, 32, 3)), labels)
  assert after < before
  out = jax.jit(model.apply)({"params": params}, util.images((8, 32, 32, 3)))
  decoded = heads.predict(age, out["age"])["value"]
  assert np.all((decoded >= 18) & (decoded <= 70))  # an expectation over the bin centres 18 .. 70
  np.testing.assert_allclose(jax.nn.softmax(out["gender"]).sum(-1), 1.0, rtol=1e-5)
