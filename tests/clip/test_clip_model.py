"""CLIP model: parity with transformers on the committed tiny checkpoints (no torch), presets, training.

The checkpoints and transformers' outputs in ``testdata/`` come from ``make_tiny_clip.py``; see its
docstring for what each one exercises (legacy vs first-eos pooling, quick_gelu vs gelu, a masked
token, an added-token id above the end token).
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fairjax import clip
from fairjax.clip import model as clip_lib
from fairjax.models import registry

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")
CHECKPOINTS = ("legacy_quick_gelu", "eos_gelu")
TOLERANCE = dict(atol=1e-5, rtol=1e-5)


def _load(name):
  folder = os.path.join(TESTDATA, name)
  model, params = clip.from_pretrained(folder)
  return model, params, dict(np.load(os.path.join(folder, "reference.npz")))


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_embeddings_and_logits_match_transformers(name):
  model, params, ref = _load(name)

  @jax.jit
  def outputs(variables, images, ids, mask):  # one program: the method API and the full call
    return (model.apply(variables, images, method=model.encode_image),
            model.apply(variables, ids, mask, method=model.encode_text),
            model.apply(variables, images, ids, mask))

  image, text, out = outputs({"params": params}, ref["images"], ref["input_ids"], ref["attention_mask"])
  np.testing.assert_allclose(image, ref["image_embeds"], **TOLERANCE)
  np.testing.assert_allclose(text, ref["text_embeds"], **TOLERANCE)
  np.testing.assert_allclose(out["logits_per_image"], ref["logits_per_image"], **TOLERANCE)
  np.testing.assert_allclose(out["logits_per_text"], ref["logits_per_text"], **TOLERANCE)
  np.testing.assert_allclose(out["image_pooled"], ref["image_pooled"], **TOLERANCE)
  np.testing.assert_allclose(out["text_pooled"], ref["text_pooled"], **TOLERANCE)
  assert out["image_embeddings"].dtype == jnp.float32


def test_the_references_tell_the_pooling_rules_and_the_mask_apart():
  """Guards the test data: with the other pooling rule or without the mask, the outputs do differ."""
  for name in CHECKPOINTS:
    model, params, ref = _load(name)
    text = model.config.text
    other = 2 if text.eos_token_id != 2 else int(ref["input_ids"][0].max())
    swapped = clip.CLIP(dataclasses.replace(model.config, text=dataclasses.replace(text, eos_token_id=other)))
    pooled_elsewhere = swapped.apply({"params": params}, ref["input_ids"], ref["attention_mask"],
                                     method=swapped.encode_text)
    unmasked = model.apply({"params": params}, ref["input_ids"], method=model.encode_text)
    assert np.abs(pooled_elsewhere - ref["text_embeds"]).max() > 0.1
    assert np.abs(unmasked - ref["text_embeds"]).max() > 0.1


def test_text_pool_positions_follow_hf_rules():
  ids = jnp.array([[5, 9, 7, 9, 0], [5, 3, 9, 0, 0]])
  np.testing.assert_array_equal(clip_lib.text_pool_positions(ids, 2), [1, 2])  # legacy: argmax
  np.testing.assert_array_equal(clip_lib.text_pool_positions(ids, 7), [2, 0])  # first eos (none: 0)


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  model, params, ref = _load("eos_gelu")
  half = clip.CLIP(model.config, dtype=jnp.bfloat16)
  image = half.apply({"params": params}, ref["images"], method=half.encode_image)
  assert image.dtype == jnp.float32
  scale = np.abs(ref["image_embeds"]).max()
  np.testing.assert_allclose(image, ref["image_embeds"], atol=0.05 * scale)


def _count_by_hand(cfg):
  def tower(width, layers, mlp):
    block = 3 * (width * width + width) + width * width + width + 2 * 2 * width
    block += width * mlp + mlp + mlp * width + width
    return layers * block
  v, t = cfg.vision, cfg.text
  vision = 3 * v.patch_size ** 2 * v.width + v.width + (v.num_patches + 1) * v.width + 2 * 2 * v.width
  vision += tower(v.width, v.layers, v.mlp_dim)
  text = (t.vocab_size + t.context_length) * t.width + 2 * t.width + tower(t.width, t.layers, t.mlp_dim)
  return vision + text + (v.width + t.width) * cfg.projection_dim + 1


# transformers' CLIPModel(config).num_parameters() for each preset's config (openai/clip-vit-*).
HF_PARAMETER_COUNTS = {"vit_b32": 151_277_313, "vit_b16": 149_620_737, "vit_l14": 427_616_513}


@pytest.mark.parametrize("name", sorted(clip.PRESETS))
def test_preset_parameter_counts(name):
  cfg = clip.PRESETS[name]()
  abstract = clip.abstract_params(clip.CLIP(cfg))  # shapes only: nothing is allocated
  assert registry.param_count(abstract) == _count_by_hand(cfg) == HF_PARAMETER_COUNTS[name]


def test_vit_b32_is_transformers_default_config():
  transformers = pytest.importorskip("transformers")
  assert clip.config_from_hf(transformers.CLIPConfig()) == clip.vit_b32()
  shapes = jax.tree.map(lambda a: a.shape, clip.abstract_params(clip.CLIP(clip.vit_b32())))
  assert shapes["vision"]["patch_kernel"] == (32, 32, 3, 768)
  assert shapes["vision"]["position_embedding"] == (50, 768)
  assert shapes["vision"]["encoder"]["layer_11"]["attn"]["qkv_kernel"] == (768, 3, 12, 64)
  assert shapes["text"]["token_embedding"]["embedding"] == (49408, 512)
  assert shapes["visual_projection"]["kernel"] == (768, 512)


def test_wrong_inputs_are_clear_errors():
  model = clip.CLIP(clip.tiny())
  variables = {"params": clip.abstract_params(model)}  # the errors come while tracing: nothing compiles
  with pytest.raises(ValueError, match="32x32"):
    jax.eval_shape(lambda v, x: model.apply(v, x, method=model.encode_image), variables,
                   jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match="context length is 16"):
    jax.eval_shape(lambda v, i: model.apply(v, i, method=model.encode_text), variables,
                   jnp.zeros((1, 17), jnp.int32))
  with pytest.raises(ValueError, match="hidden_act"):
    clip.CLIPConfig(hidden_act="relu6")


def test_a_gradient_step_on_the_contrastive_loss_lowers_it():
  model, params, ref = _load("eos_gelu")
  images, ids, mask = ref["images"], ref["input_ids"][:3], ref["attention_mask"][:3]
  tx = optax.adam(1e-2)

  @jax.jit
  def step(params, opt_state):
    def loss_fn(p):
      return clip.contrastive_loss(model.apply({"params": p}, images, ids, mask)["logits_per_image"])
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, grads

  opt_state = tx.init(params)
  losses = []
  for _ in range(4):
    params, opt_state, loss, grads = step(params, opt_state)
    losses.append(float(loss))
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  assert losses[-1] < losses[0] - 0.05, losses
