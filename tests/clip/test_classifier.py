"""``clip_zero_shot``: its heads are CLIP's own logits on the prompts, it starts from and exports to Hugging
Face CLIP folders, and it refuses what it cannot be."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fairjax import clip
from fairjax.clip import zero_shot
from fairjax.data import captions
from fairjax.clip import classifier as clip_classifier
from fairjax.models import registry

TESTDATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "clip", "testdata")
CHECKPOINT = os.path.join(TESTDATA, "eos_gelu")
TINY = {"vision": {"patch_size": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
        "text": {"context_length": 16, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
        "projection_dim": 8}


@pytest.fixture(scope="module")
def pretrained():
  model = registry.get_model("clip_zero_shot", input_shape=(32, 32, 3), checkpoint=CHECKPOINT,
                             heads=("gender", "race"), gender_prompts=("male/female", "man/woman, templated"),
                             race_prompts=("race",))
  variables = registry.init_variables(model, jax.random.key(0))
  images = jax.random.normal(jax.random.key(1), (5, 32, 32, 3))
  return model, variables, images


def _apply(model, variables, *args, **kwargs):
  """``model.apply`` jitted: one compiled program instead of hundreds of dispatched operations."""
  return jax.jit(lambda v, *a: model.apply(v, *a, **kwargs))(variables, *args)


def _text_embeddings(clip_model, params, texts, length):
  tokenizer = captions.load_tokenizer(CHECKPOINT)
  batch = tokenizer(list(texts), padding="max_length", max_length=length, return_tensors="np")
  return _apply(clip_model, {"params": params}, batch["input_ids"], batch["attention_mask"],
                method=clip_model.encode_text)


def test_starts_from_the_checkpoint_and_its_logits_are_clips(pretrained):
  model, variables, images = pretrained
  clip_model, params = clip.from_pretrained(CHECKPOINT)
  jax.tree.map(np.testing.assert_array_equal, variables["params"]["clip"], params)
  out = _apply(model, variables, images)
  image = _apply(clip_model, {"params": params}, images, method=clip_model.encode_image)
  np.testing.assert_allclose(out["embedding"], image, rtol=1e-6)
  # One text per class: exactly CLIP's logits_per_image against "male" and "female".
  text = _text_embeddings(clip_model, params, ["male", "female"], 16)
  bare = _apply(clip_model, {"params": params}, image, text, method=clip_model.logits)
  single = registry.get_model("clip_zero_shot", input_shape=(32, 32, 3), checkpoint=CHECKPOINT,
                              gender_prompts=("male/female",))
  np.testing.assert_allclose(_apply(single, variables, images)["gender"], bare, rtol=1e-5, atol=1e-6)
  # Several sets: the softmax of the output is the zero-shot audit's ensemble of the sets' probabilities.
  sets = clip_classifier.prompt_sets()
  templated = sets["man/woman, templated"].texts
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  classes = np.stack([unit(unit(np.asarray(_text_embeddings(clip_model, params, t, 16))).mean(0))
                      for t in templated])
  scale = float(params["logit_scale"])
  expected = zero_shot.ensemble_probabilities([zero_shot.class_probabilities(image, text, scale),
                                               zero_shot.class_probabilities(image, classes, scale)])
  np.testing.assert_allclose(jax.nn.softmax(out["gender"]), expected, rtol=1e-5, atol=1e-6)
  assert out["race"].shape == (5, 5) and model.prompts.set_names("race") == ("race",)


def test_export_loads_back_to_the_same_embeddings(pretrained, tmp_path):
  model, variables, images = pretrained
  params = jax.tree.map(lambda p: p * 1.01, variables["params"])  # "trained": not the checkpoint's
  folder = model.export(params, str(tmp_path / "export"), (0.5,), (0.25, 0.5, 0.75))
  clip_model, loaded = clip.from_pretrained(folder)
  jax.tree.map(np.testing.assert_array_equal, loaded, params["clip"])
  back = registry.get_model("clip_zero_shot", input_shape=(32, 32, 3), checkpoint=folder,
                            heads=("gender", "race"), gender_prompts=("male/female", "man/woman, templated"))
  got = _apply(back, registry.init_variables(back, jax.random.key(5)), images)
  want = _apply(model, {"params": params}, images)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
  processor = clip.load_processor(folder)
  assert list(processor.image_processor.image_mean) == [0.5, 0.5, 0.5]
  assert list(processor.image_processor.image_std) == [0.25, 0.5, 0.75]
  assert processor.image_processor.crop_size["height"] == 32
  assert processor.tokenize("a photo of a man")["input_ids"].shape == (1, 16)
  # transformers reads the folder as a CLIPModel.
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  hf = transformers.CLIPModel.from_pretrained(folder)
  with torch.no_grad():
    features = hf.get_image_features(pixel_values=torch.tensor(np.asarray(images).transpose(0, 3, 1, 2)))
  features = getattr(features, "pooler_output", features)
  np.testing.assert_allclose(features.numpy(), want["embedding"], rtol=1e-4, atol=1e-5)


def test_a_fresh_model_from_an_architecture(tmp_path):
  model = registry.get_model("clip_zero_shot", input_shape=(16, 16, 3), tokenizer=CHECKPOINT, architecture=TINY,
                             heads=("race", "gender"))
  tokenizer = captions.load_tokenizer(CHECKPOINT)
  text = model.clip_config.text
  assert (text.vocab_size, text.eos_token_id, text.pad_token_id) == (
      len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
  assert model.clip_config.vision.image_size == 16 and [h.name for h in model.heads] == ["race", "gender"]
  variables = registry.init_variables(model, jax.random.key(0))
  assert set(variables["params"]) == {"clip"}
  out = _apply(model, variables, jnp.zeros((2, 16, 16, 3)))
  assert out["gender"].shape == (2, 2) and out["race"].shape == (2, 5) and out["embedding"].shape == (2, 8)
  ids = model.text_inputs()({"age": 30, "gender": 1, "race": 0}, 3)["input_ids"]
  assert ids.shape == (16,) and ids[0] == tokenizer.bos_token_id
  # A config's ConfigDict architecture works as a dict does.
  as_config = registry.get_model("clip_zero_shot", input_shape=(16, 16, 3), tokenizer=CHECKPOINT,
                                 architecture=ml_collections.ConfigDict(TINY))
  assert as_config.clip_config == model.clip_config


def test_the_caption_tokenizer_is_built_once_and_holds_the_caption_words(tmp_path):
  folder = clip_classifier.caption_tokenizer_dir(vocab_size=800, context_length=24, cache_dir=str(tmp_path))
  assert clip_classifier.caption_tokenizer_dir(800, 24, cache_dir=str(tmp_path)) == folder
  tokenizer = captions.load_tokenizer(folder)
  assert tokenizer.model_max_length == 24 and len(tokenizer) <= 800
  tokens = tokenizer.convert_ids_to_tokens(tokenizer("a photo of a young Latino female person.")["input_ids"])
  assert "female</w>" in tokens and "latino</w>" in tokens and "person</w>" in tokens


def test_checks_data_normalisation_against_the_checkpoint(pretrained):
  model = pretrained[0]
  config = ml_collections.ConfigDict(dict(grayscale=False, mean=(0.48145466, 0.4578275, 0.40821073),
                                          std=(0.26862954, 0.26130258, 0.27577711)))
  model.check_data(config)
  config.mean = (0.0,)
  with pytest.raises(ValueError, match="normalises with image_mean"):
    model.check_data(config)
  config.grayscale = True
  with pytest.raises(ValueError, match="RGB"):
    model.check_data(config)


def test_bad_arguments_are_clear_errors(tmp_path):
  get = lambda **kw: registry.get_model("clip_zero_shot", **{"input_shape": (32, 32, 3), **kw})
  with pytest.raises(ValueError, match="takes 32x32 images; set data.image_size=32"):
    get(checkpoint=CHECKPOINT, input_shape=(64, 64, 3))
  with pytest.raises(FileNotFoundError, match="no such folder"):
    get(checkpoint=str(tmp_path / "none"))
  with pytest.raises(ValueError, match="checkpoint or architecture, not both"):
    get(checkpoint=CHECKPOINT, architecture=TINY)
  with pytest.raises(ValueError, match="unknown prompt set 'woman/man'"):
    get(checkpoint=CHECKPOINT, gender_prompts=("woman/man",))
  with pytest.raises(ValueError, match="is a race set, not one for head 'gender'"):
    get(checkpoint=CHECKPOINT, gender_prompts=("race",))
  with pytest.raises(ValueError, match="heads must be distinct names"):
    get(checkpoint=CHECKPOINT, heads=("age",))
  with pytest.raises(ValueError, match="comes from the tokenizer"):
    get(tokenizer=CHECKPOINT, architecture={**TINY, "text": {**TINY["text"], "vocab_size": 10}})
  with pytest.raises(ValueError, match="unknown field"):
    get(tokenizer=CHECKPOINT, architecture={**TINY, "depth": 3})
  with pytest.raises(ValueError, match="square RGB"):
    get(tokenizer=CHECKPOINT, architecture=TINY, input_shape=(32, 32, 1))
  with pytest.raises(FileNotFoundError, match="no CLIP tokenizer"):
    get(tokenizer=str(tmp_path), architecture=TINY)
  with open(os.path.join(CHECKPOINT, "config.json")) as f:
    assert json.load(f)["model_type"] == "clip"
