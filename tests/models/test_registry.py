"""The registry and the output contract every registered model keeps."""

import functools

import pytest

from fairjax import models
from fairjax.models import registry
from fairjax.models.heads import HeadSpec
from tests.models import util

EXPECTED = ("aghav_age_gender_cnn", "clip_zero_shot", "jlu_cnn", "resnet18", "se_resnet101", "tripathi_gender_cnn",
            "utk_demographic_cnn", "utk_gender_cnn", "vgg16", "vgg_face", "vgg_face_age", "vgg_face_gender")
# TF.js graphs of files fetched once (tests/models/test_pretrained_tfjs.py checks their contract).
PRETRAINED = ("face_classification_gender", "gear", "ssrnet_age", "ssrnet_gender_imdb")


def test_list_models():
  assert models.list_models() == tuple(sorted(EXPECTED + PRETRAINED))


def test_unknown_name_lists_the_known_ones():
  with pytest.raises(ValueError, match="unknown model 'vgg19'.*resnet18.*vgg_face_age"):
    models.get_model("vgg19")


def test_names_register_once():
  with pytest.raises(ValueError, match="already registered"):
    registry.register("resnet18")(lambda **kw: None)


def test_overrides_replace_defaults():
  heads = (HeadSpec("race", "multiclass", num_outputs=5),)
  model = models.get_model("resnet18", heads=heads, width=16)
  assert model.heads == heads and model.width == 16 and model.stage_sizes == (2, 2, 2, 2)


@functools.lru_cache(maxsize=None)
def _shapes(name):
  return util.output_shapes(models.get_model(name))


@pytest.mark.parametrize("name", EXPECTED)
def test_every_model_returns_an_embedding_and_one_raw_output_per_head(name):
  model = models.get_model(name)
  shapes = _shapes(name)
  assert set(shapes) == {"embedding"} | {spec.name for spec in model.heads}
  assert len(shapes["embedding"]) == 2 and shapes["embedding"][0] == 2
  for spec in model.heads:
    single = spec.num_outputs == 1 and spec.kind in ("binary", "regression")
    assert shapes[spec.name] == ((2,) if single else (2, spec.num_outputs))


def test_l2_penalty_is_zero_without_regularised_layers():
  model = models.get_model("jlu_cnn")
  assert float(models.l2_penalty(model, models.abstract_variables(model)["params"])) == 0.0
