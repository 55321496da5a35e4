"""Seed 000 §6.1–§6.4 against the same networks written in tf.keras from the seed's listings.

The Keras builders below transcribe the seed (and, where it is silent, the assumptions documented in
``fairjax/models/keras_cnns.py``). Parameter counts must agree exactly; for §6.1 and §6.3 the Keras
weights, saved to HDF5, must load into our parameters and give the same outputs.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fairjax import models
from fairjax.models import convert
from tests.models import util

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
keras = tf.keras
L = keras.layers
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*")


def keras_61(shape=(128, 128, 3)):
  inputs = keras.Input(shape)
  x = inputs
  for filters in (32, 64, 128):
    x = L.MaxPooling2D((2, 2))(L.Conv2D(filters, (3, 3), activation="relu")(x))
  x = L.Dropout(0.5)(L.Dense(64, activation="relu")(L.Flatten()(x)))
  return keras.Model(inputs, L.Dense(1, activation="sigmoid")(x))


def keras_62(shape=(128, 128, 3)):
  inputs = keras.Input(shape)
  x = inputs
  for filters in (64, 128, 256, 512):
    x = L.MaxPooling2D((2, 2))(L.Conv2D(filters, (3, 3), activation="relu")(x))
  flat = L.Flatten()(x)
  outputs = []
  for units, activation in ((1, "linear"), (1, "sigmoid"), (5, "softmax")):
    b = flat
    for width in (128, 64, 32):
      b = L.Dense(width, activation="relu")(b)
    outputs.append(L.Dense(units, activation=activation)(b))
  return keras.Model(inputs, outputs)


def keras_63(shape=(100, 100, 1)):
  # The seed's code, verbatim apart from the loop.
  inputs = keras.Input(shape=shape)
  x = inputs
  for filters in (32, 64, 128, 256):
    x = L.Conv2D(filters, (3, 3), padding="same", strides=(1, 1),
                 kernel_regularizer=keras.regularizers.l2(0.001))(x)
    x = L.Dropout(0.1)(x)
    x = L.Activation("relu")(x)
    x = L.MaxPooling2D(pool_size=(2, 2))(x)
  x = L.Dense(128, activation="relu")(L.Flatten()(x))
  return keras.Model(inputs, L.Dense(2, activation="sigmoid")(L.Dropout(0.2)(x)))


def keras_64(shape=(128, 128, 1)):
  # The seed's code listing, including its shared Dropout objects.
  inputs = keras.Input(shape=shape)
  conv1 = L.Conv2D(32, kernel_size=(3, 3), activation="relu")(inputs)
  conv2 = L.Conv2D(64, kernel_size=(3, 3), activation="relu")(conv1)
  pool1 = L.MaxPooling2D(pool_size=(2, 2))(conv2)
  conv3 = L.Conv2D(128, kernel_size=(3, 3), activation="relu")(pool1)
  pool2 = L.MaxPooling2D(pool_size=(2, 2))(conv3)
  flat = L.Flatten()(L.Dropout(0.25)(pool2))
  dropout = L.Dropout(0.5)
  age = flat
  for width in (128, 64, 32):
    age = dropout(L.Dense(width, activation="relu")(age))
  age = L.Dense(1, activation="relu")(age)
  dropout = L.Dropout(0.5)
  gender = flat
  for width in (128, 64, 32, 16, 8):
    gender = dropout(L.Dense(width, activation="relu")(gender))
  gender = L.Dense(1, activation="sigmoid")(gender)
  return keras.Model(inputs, [age, gender])


SEEDS = {
    "utk_gender_cnn": keras_61,
    "utk_demographic_cnn": keras_62,
    "tripathi_gender_cnn": keras_63,
    "aghav_age_gender_cnn": keras_64,
}


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_parameter_count_equals_the_keras_network(name):
  model = models.get_model(name)
  ours = models.param_count(models.abstract_variables(model)["params"])
  assert ours == SEEDS[name](model.input_shape).count_params()


def test_parameter_counts_by_hand():
  # §6.1 at 128x128x3, 'valid': 128 -conv-> 126 -pool-> 63 -> 61 -> 30 -> 28 -> 14; flatten 14*14*128.
  conv = lambda cin, cout: 9 * cin * cout + cout
  count_61 = conv(3, 32) + conv(32, 64) + conv(64, 128) + (14 * 14 * 128 * 64 + 64) + (64 + 1)
  # §6.3 at 100x100x1, 'same': 100 -> 50 -> 25 -> 12 -> 6; flatten 6*6*256; Dense(2) output.
  count_63 = (conv(1, 32) + conv(32, 64) + conv(64, 128) + conv(128, 256)
              + (6 * 6 * 256 * 128 + 128) + (128 * 2 + 2))
  assert (count_61, count_63) == (1_699_009, 1_567_874)
  for name, count in (("utk_gender_cnn", count_61), ("tripathi_gender_cnn", count_63)):
    assert models.param_count(models.abstract_variables(models.get_model(name))["params"]) == count


@pytest.mark.parametrize("name,expected", [
    ("utk_gender_cnn", {"embedding": (2, 64), "gender": (2,)}),
    ("utk_demographic_cnn", {"embedding": (2, 6 * 6 * 512), "age": (2,), "gender": (2,), "race": (2, 5)}),
    ("tripathi_gender_cnn", {"embedding": (2, 128), "gender": (2, 2)}),
    ("aghav_age_gender_cnn", {"embedding": (2, 30 * 30 * 128), "age": (2,), "gender": (2,)}),
])
def test_output_keys_and_shapes(name, expected):
  assert util.output_shapes(models.get_model(name)) == expected


def _randomize(model, seed=0):
  """Random weights *and biases* (Keras starts biases at zero, which would hide a bias mix-up)."""
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) for w in model.get_weights()])


@pytest.mark.parametrize("name,suffix", [("utk_gender_cnn", ".h5"), ("tripathi_gender_cnn", ".weights.h5")])
def test_keras_weights_load_and_give_the_same_outputs(name, suffix, tmp_path):
  model = models.get_model(name)
  keras.backend.clear_session()
  if suffix == ".weights.h5":
    # Push Keras's auto-names past 10 (conv2d_8 .. conv2d_11): alphabetical order would then be wrong.
    for _ in range(8):
      L.Conv2D(1, 1)
  reference = SEEDS[name](model.input_shape)
  _randomize(reference)
  path = str(tmp_path / f"model{suffix}")
  if suffix == ".h5":
    reference.save(path)
  else:
    reference.save_weights(path)
  variables = convert.load_keras_weights(path, model, models.abstract_variables(model))
  images = np.random.default_rng(2).uniform(0, 1, (3, *model.input_shape)).astype(np.float32)
  expected = reference.predict(images, verbose=0)
  ours = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(images))
  np.testing.assert_allclose(jax.nn.sigmoid(ours["gender"]).reshape(expected.shape), expected,
                             rtol=1e-4, atol=1e-5)
  if name == "tripathi_gender_cnn":
    reference(images[:1])
    keras_l2 = float(sum(reference.losses))
    np.testing.assert_allclose(models.l2_penalty(model, variables["params"]), keras_l2, rtol=1e-5)


def test_keras_layer_order_and_mismatch_errors(tmp_path):
  model = models.get_model("utk_gender_cnn")
  assert model.keras_layers() == ("conv1", "conv2", "conv3", "fc1", "gender")
  assert models.get_model("aghav_age_gender_cnn").keras_layers() == (
      "conv1", "conv2", "conv3", "age_fc1", "age_fc2", "age_fc3", "age",
      "gender_fc1", "gender_fc2", "gender_fc3", "gender_fc4", "gender_fc5", "gender")
  path = str(tmp_path / "other.weights.h5")
  keras_63().save_weights(path)
  with pytest.raises(ValueError, match="layers with weights"):
    convert.load_keras_weights(path, model, models.abstract_variables(model))


def test_l2_factors_are_exposed_only_where_the_seed_regularises():
  assert models.get_model("tripathi_gender_cnn").l2_factors() == {f"conv{i}": 1e-3 for i in range(1, 5)}
  assert models.get_model("utk_gender_cnn").l2_factors() == {}


def test_dropout_is_active_only_in_training():
  model = models.get_model("aghav_age_gender_cnn", input_shape=(16, 16, 1), conv_implementation="lax")
  variables = models.init_variables(model, util.key(0), batch_size=2)
  x = util.images((2, 16, 16, 1))
  apply = jax.jit(lambda key, train: model.apply(variables, x, train=train, rngs={"dropout": key}),
                  static_argnums=1)
  a, b = apply(util.key(2), True), apply(util.key(3), True)
  assert not np.allclose(a["gender"], b["gender"])
  np.testing.assert_array_equal(apply(util.key(2), False)["gender"], apply(util.key(3), False)["gender"])


@pytest.mark.parametrize("name,shape,conv", [
    ("utk_gender_cnn", (24, 24, 3), "auto"),  # on CPU: through the im2col convolution's custom VJP
    ("utk_demographic_cnn", (46, 46, 3), "lax"),  # the rest compile faster with XLA's convolution
    ("tripathi_gender_cnn", (16, 16, 1), "lax"),
    ("aghav_age_gender_cnn", (16, 16, 1), "lax"),
])
def test_adam_lowers_the_loss_on_a_tiny_batch(name, shape, conv):
  model = models.get_model(name, input_shape=shape, conv_implementation=conv)
  before, after, _, _ = util.adam_losses(model, util.images((4, *shape)), util.random_labels(model, 4))
  assert after < before
