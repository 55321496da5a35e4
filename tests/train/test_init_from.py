"""``config.model.init_from``: a run starts from a fairjax workdir, a Keras .h5 or a torchvision state dict."""

import json
import os
import subprocess
import sys

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch

from configs import default as default_config
from fairjax import models
from fairjax.models import convert
from fairjax.models.heads import HeadSpec
from fairjax.train import init_from
from fairjax.train import loop
from fairjax.train import objectives
from tests.models import torch_reference

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
  """A finished smoke run of the default (selection: lowest validation loss) and its reported params."""
  workdir = tmp_path_factory.mktemp("source") / "run"
  loop.train_and_evaluate(default_config.get_config("smoke"), str(workdir))
  context = loop.reported_context(default_config.get_config("smoke"), str(workdir))
  params = jax.device_get(context.runner.get_state(context.state).params["model"])
  return workdir, params


def _initial_params(config):
  model = loop.build_model(config)
  state, _, notes = loop.initial_state(config, model, objectives.build(config.objective, model), 10)
  return state.params["model"], notes


def test_a_run_starts_from_the_reported_checkpoint_of_a_workdir(source_run):
  workdir, reported = source_run
  config = default_config.get_config("smoke")
  config.model.init_from = str(workdir)
  params, notes = _initial_params(config)
  jax.tree.map(np.testing.assert_array_equal, params, reported)
  assert notes[0].startswith(f"started from {workdir}, checkpoint of step ")
  fresh, _ = _initial_params(default_config.get_config("smoke"))
  assert not np.array_equal(fresh["fc1"]["kernel"], reported["fc1"]["kernel"])

  # A head of another shape keeps its initialisation; the trunk still loads.
  config.model.kwargs.heads = (HeadSpec("gender", "multiclass", num_outputs=2),)
  params, notes = _initial_params(config)
  assert params["gender"]["kernel"].shape[-1] == 2
  np.testing.assert_array_equal(params["conv1"]["kernel"], reported["conv1"]["kernel"])
  assert notes[-1].startswith("head 'gender' keeps its fresh initialisation")

  # A trunk of other shapes is an error naming the layer (64x64 input: fc1 reads 4x more features).
  config.data.image_size = 64
  with pytest.raises(ValueError, match=f"model.init_from={workdir}: params/fc1/kernel has shape \\(512, 64\\) there and \\(4608, 64\\) here"):
    _initial_params(config)


def test_bad_init_from_is_one_clear_error(tmp_path):
  model = models.get_model("utk_gender_cnn", input_shape=(32, 32, 3))
  variables = models.init_variables(model, jax.random.PRNGKey(0))
  for path, message in ((tmp_path / "missing.h5", "no such file or folder"),
                        (tmp_path, "a folder must be a fairjax workdir"),
                        (tmp_path / "weights.npz", "cannot tell the checkpoint's kind from its name")):
    if path.suffix == ".npz":
      path.write_bytes(b"")
    with pytest.raises(ValueError, match=message):
      init_from.load(str(path), model, variables)


def _keras_vgg_face(widths, fc_units, classes, size):
  """serengil's VGG-Face layout (fc6 a 'valid' convolution over the last map, fc7 and the output 1x1
  convolutions), narrow."""
  import keras  # pylint: disable=g-import-not-at-top
  layers = [keras.Input((size, size, 3))]
  for depth, width in zip((2, 2, 3, 3, 3), widths):
    layers += [keras.layers.Conv2D(width, 3, padding="same", activation="relu") for _ in range(depth)]
    layers.append(keras.layers.MaxPooling2D(2, strides=2))
  side = size // 32
  layers += [keras.layers.Conv2D(fc_units, side, activation="relu"), keras.layers.Dropout(0.5),
             keras.layers.Conv2D(fc_units, 1, activation="relu", name="fc7"), keras.layers.Dropout(0.5),
             keras.layers.Conv2D(classes, 1), keras.layers.Flatten(), keras.layers.Activation("softmax")]
  return keras.Sequential(layers)


def test_serengils_vgg_face_h5_loads_by_layer_order_and_the_new_head_stays_fresh(tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  widths, fc_units, size = (4, 4, 8, 8, 8), 16, 64  # a 2x2x8 map before fc6
  reference = _keras_vgg_face(widths, fc_units, 26, size)
  path = str(tmp_path / "vgg_face_weights.h5")
  reference.save(path)  # legacy HDF5, as serengil's file: the layer order is recorded
  model = models.get_model("vgg_face_age", widths=widths, fc_units=fc_units, input_shape=(size, size, 3))
  variables, notes = convert.load_weights(path, model, models.init_variables(model, jax.random.PRNGKey(0)))
  assert len(notes) == 1 and notes[0].startswith("head 'age' keeps its fresh initialisation")
  images = np.random.default_rng(0).uniform(size=(2, size, size, 3)).astype(np.float32)
  fc7 = keras.Model(reference.inputs, reference.get_layer("fc7").output)(images).numpy().reshape(2, -1)
  ours = model.apply(variables, jnp.asarray(images), train=False)
  np.testing.assert_allclose(ours["embedding"], fc7, rtol=1e-4, atol=1e-5)


def test_a_torchvision_state_dict_file_loads_with_its_classifier_where_it_fits(tmp_path):
  torch.manual_seed(0)
  reference = torch_reference.ResNet(torch_reference.BasicBlock, [2, 2, 2, 2], 3)
  torch_reference.randomize_batch_norm(reference, torch.Generator().manual_seed(1))
  path = str(tmp_path / "resnet18.pt")
  torch.save(reference.state_dict(), path)
  model = models.get_model("resnet18", heads=(HeadSpec("out", "multiclass", num_outputs=3),),
                           conv_implementation="lax", input_shape=(32, 32, 3))
  variables, notes = convert.load_weights(path, model, models.init_variables(model, jax.random.PRNGKey(0)))
  expected = convert.load_torch_resnet(reference.state_dict(), model, models.abstract_variables(model), head="out")
  assert notes == []
  jax.tree.map(np.testing.assert_array_equal, variables, jax.device_get(expected))
  other = models.get_model("resnet18", heads=(HeadSpec("gender", "multiclass", num_outputs=2),),
                           conv_implementation="lax", input_shape=(32, 32, 3))
  fresh = models.init_variables(other, jax.random.PRNGKey(0))
  loaded, notes = convert.load_weights(path, other, fresh)
  assert notes and "heads keep their fresh initialisation" in notes[0]
  np.testing.assert_array_equal(loaded["params"]["gender"]["kernel"], fresh["params"]["gender"]["kernel"])
  np.testing.assert_array_equal(loaded["params"]["conv1"]["kernel"],
                                reference.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))


@pytest.mark.slow
def test_the_command_as_typed_audits_a_relative_workdir_s_weights_without_training(source_run, tmp_path):
  """``train.num_epochs=0``: the report of the starting weights, here the source run's reported ones, so its
  figures are the source report's."""
  workdir, _ = source_run
  os.symlink(workdir, tmp_path / "source")
  result = subprocess.run(
      [sys.executable, "-m", "fairjax.main", f"--config={REPO}/configs/default.py:smoke", "--workdir=out/audit",
       "--config.model.init_from=source", "--config.train.num_epochs=0"],
      cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"model.init_from: started from {tmp_path / 'source'}, checkpoint of step" in result.stdout + result.stderr
  report = tmp_path / "out" / "audit" / "report"
  text = (report / "report.md").read_text()
  assert "model.init_from: started from" in text and "Not trained (train.num_epochs = 0)" in text
  ours, theirs = (json.loads((folder / "final_metrics.json").read_text()) for folder in (report, workdir / "report"))
  for key in ("test/gender/accuracy", "test/gender/race/equalized_odds_difference", "validation/loss"):
    assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key
