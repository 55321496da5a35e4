"""CLIP in Flax: a ViT image tower and a causal text transformer, projected into one embedding space.

This is OpenAI CLIP as Hugging Face's ``CLIPModel`` computes it (transformers v5 has no Flax model any
more), so that a HF checkpoint loads one to one (``fairjax.clip.from_pretrained``) and gives the same
``get_image_features`` / ``get_text_features``:

  image tower   patches (a bias-free p x p / p convolution, done as one matrix product) + a learned
                class token + learned positions, ``pre_layrnorm`` (HF's spelling), pre-LN residual
                blocks, ``post_layernorm`` on the class token: the pooled image feature.
  text tower    token + learned positions, causal pre-LN blocks (plus the padding ``attention_mask``
                on keys), final LayerNorm, pooled at the end-of-text token as HF pools it: checkpoints
                whose config says ``eos_token_id == 2`` (all of OpenAI's, from before HF fixed the id)
                take ``argmax(input_ids)`` (CLIP's end token has the largest id), the others the first
                position holding ``eos_token_id``.
  heads         bias-free projections to ``projection_dim``; ``logit_scale`` (a log temperature,
                learnable) scales cosine similarities into ``logits_per_image`` / ``logits_per_text``.

Written to run at matrix-multiply speed on CPU as well as on accelerators: one fused QKV product per
block (kernel ``[width, 3, heads, head_dim]``), attention as two batched ``einsum``s, float32 softmax.
``dtype`` sets the compute dtype (bfloat16 on accelerators) with float32 parameters; the embeddings
and logits come back in float32. There is no dropout (CLIP trains without it) and no BatchNorm, so
training needs no RNG and no mutable state.
"""

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

ACTIVATIONS = {
    # HF's ACT2FN names. quick_gelu is OpenAI's x * sigmoid(1.702 x); HF's "gelu" is the exact erf form.
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}
# HF's legacy end-of-text id: checkpoints saved before transformers PR #24773 say 2 and pool at argmax.
LEGACY_EOS_TOKEN_ID = 2


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  image_size: int = 224
  patch_size: int = 32
  width: int = 768
  layers: int = 12
  heads: int = 12
  mlp_dim: int = 3072

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2


@dataclasses.dataclass(frozen=True)
class TextConfig:
  vocab_size: int = 49408
  context_length: int = 77
  width: int = 512
  layers: int = 12
  heads: int = 8
  mlp_dim: int = 2048
  eos_token_id: int = 49407
  pad_token_id: int = 1
  bos_token_id: int = 49406  # not used by the model; kept so that saved configs say what the tokenizer does


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
  """Both towers and the shared head. Defaults are ViT-B/32 (= ``transformers.CLIPConfig()``)."""

  vision: VisionConfig = VisionConfig()
  text: TextConfig = TextConfig()
  projection_dim: int = 512
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5
  logit_scale_init: float = 2.6592  # log(1 / 0.07), CLIP's initial temperature

  def __post_init__(self):
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f"hidden_act {self.hidden_act!r} is not one of {sorted(ACTIVATIONS)}")
    for name, tower in (("vision", self.vision), ("text", self.text)):
      if tower.width % tower.heads:
        raise ValueError(f"{name} width {tower.width} is not a multiple of its {tower.heads} heads")
    if self.vision.image_size % self.vision.patch_size:
      raise ValueError(f"image_size {self.vision.image_size} is not a multiple of patch_size "
                       f"{self.vision.patch_size}")


def vit_b32() -> CLIPConfig:
  """OpenAI ViT-B/32: 224 px, 32 px patches, 768-wide 12-layer image tower, 512-d embeddings."""
  return CLIPConfig()


def vit_b16() -> CLIPConfig:
  """OpenAI ViT-B/16: as B/32 with 16 px patches (197 image tokens)."""
  return CLIPConfig(vision=VisionConfig(patch_size=16))


def vit_l14() -> CLIPConfig:
  """OpenAI ViT-L/14: 1024-wide 24-layer image tower, 768-wide text tower, 768-d embeddings."""
  return CLIPConfig(vision=VisionConfig(patch_size=14, width=1024, layers=24, heads=16, mlp_dim=4096),
                    text=TextConfig(width=768, heads=12, mlp_dim=3072), projection_dim=768)


def small(vocab_size: int, eos_token_id: int, pad_token_id: int, bos_token_id: int, image_size: int = 64,
          context_length: int = 32) -> CLIPConfig:
  """A CLIP to train from scratch on 64x64 faces and short captions (8.3M parameters at 700 tokens).

  8 px patches (64 image tokens at 64 px), 256-wide towers (6 image / 4 text layers, 4 heads of 64),
  256-d embeddings; the vocabulary is the caption tokenizer's (``fairjax.clip.tokenizer``).
  """
  return CLIPConfig(
      vision=VisionConfig(image_size=image_size, patch_size=8, width=256, layers=6, heads=4, mlp_dim=1024),
      text=TextConfig(vocab_size=vocab_size, context_length=context_length, width=256, layers=4, heads=4,
                      mlp_dim=1024, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                      bos_token_id=bos_token_id),
      projection_dim=256)


def tiny(vocab_size: int = 1000, eos_token_id: int = 999, pad_token_id: int = 999, bos_token_id: int = 998,
         hidden_act: str = "quick_gelu", width: int = 32) -> CLIPConfig:
  """A CLIP of a few thousand parameters per layer for unit tests: 32 px images, 2 layers, 4 heads."""
  return CLIPConfig(
      vision=VisionConfig(image_size=32, patch_size=8, width=width, layers=2, heads=4, mlp_dim=2 * width),
      text=TextConfig(vocab_size=vocab_size, context_length=16, width=width, layers=2, heads=4,
                      mlp_dim=2 * width, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                      bos_token_id=bos_token_id),
      projection_dim=width * 3 // 4, hidden_act=hidden_act)


PRESETS = {"vit_b32": vit_b32, "vit_b16": vit_b16, "vit_l14": vit_l14}


def _normal(std: float):
  return nn.initializers.normal(stddev=std)


class Attention(nn.Module):
  """Multi-head self-attention with one fused QKV product.

  ``qkv/kernel`` is ``[width, 3, heads, head_dim]``: x @ kernel.reshape(width, 3 * width) is one large
  matrix product, and splitting its output is a free reshape. ``mask`` is ``[B, 1 or heads, T, T]``,
  True where a query may see a key; masked scores are set to float32's lowest value (not -inf), as HF
  does, so that a fully masked row stays finite.
  """

  heads: int
  layers: int  # depth of the tower, for CLIP's initialisation scale
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Optional[Array] = None) -> Array:
    width = x.shape[-1]
    head_dim = width // self.heads
    in_std = width ** -0.5 * (2 * self.layers) ** -0.5
    qkv_kernel = self.param("qkv_kernel", _normal(in_std), (width, 3, self.heads, head_dim))
    qkv_bias = self.param("qkv_bias", nn.initializers.zeros, (3, self.heads, head_dim))
    out_kernel = self.param("out_kernel", _normal(width ** -0.5), (self.heads, head_dim, width))
    out_bias = self.param("out_bias", nn.initializers.zeros, (width,))
    x, qkv_kernel, qkv_bias, out_kernel, out_bias = (
        jnp.asarray(a, self.dtype) for a in (x, qkv_kernel, qkv_bias, out_kernel, out_bias))

    qkv = jnp.dot(x, qkv_kernel.reshape(width, 3 * width)) + qkv_bias.reshape(3 * width)
    qkv = qkv.reshape(*x.shape[:-1], 3, self.heads, head_dim)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    scores = jnp.einsum("bqhd,bkhd->bhqk", q * jnp.asarray(head_dim ** -0.5, self.dtype), k,
                        preferred_element_type=jnp.float32)
    if mask is not None:
      scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    return jnp.dot(out.reshape(x.shape), out_kernel.reshape(width, width)) + out_bias


class Block(nn.Module):
  """Pre-LayerNorm residual block: x + attn(ln1(x)), then + mlp(ln2(x)) (HF's CLIPEncoderLayer)."""

  heads: int
  mlp_dim: int
  layers: int
  hidden_act: str
  layer_norm_eps: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Optional[Array] = None) -> Array:
    width = x.shape[-1]
    norm = lambda name: nn.LayerNorm(self.layer_norm_eps, dtype=self.dtype, use_fast_variance=False,
                                     name=name)
    x = x + Attention(self.heads, self.layers, self.dtype, name="attn")(norm("ln1")(x), mask)
    fc_std, out_std = (2 * width) ** -0.5, width ** -0.5 * (2 * self.layers) ** -0.5
    h = nn.Dense(self.mlp_dim, dtype=self.dtype, kernel_init=_normal(fc_std), name="fc1")(norm("ln2")(x))
    h = nn.Dense(width, dtype=self.dtype, kernel_init=_normal(out_std), name="fc2")(
        ACTIVATIONS[self.hidden_act](h))
    return x + h


class Encoder(nn.Module):
  """``layers`` Blocks, unrolled (named ``layer_<i>``, so that per-layer analyses can address them)."""

  layers: int
  heads: int
  mlp_dim: int
  hidden_act: str
  layer_norm_eps: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Optional[Array] = None) -> Array:
    for i in range(self.layers):
      x = Block(self.heads, self.mlp_dim, self.layers, self.hidden_act, self.layer_norm_eps, self.dtype,
                name=f"layer_{i}")(x, mask)
    return x


class VisionTower(nn.Module):
  """ViT: returns (last hidden states [B, 1 + patches, width], pooled class token [B, width])."""

  config: VisionConfig
  hidden_act: str
  layer_norm_eps: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: Array) -> tuple[Array, Array]:
    cfg = self.config
    b, h, w, c = images.shape
    if (h, w) != (cfg.image_size, cfg.image_size):
      raise ValueError(f"images are {h}x{w}; this CLIP takes {cfg.image_size}x{cfg.image_size} "
                       f"(NHWC, already normalised)")
    p, gh, gw = cfg.patch_size, h // cfg.patch_size, w // cfg.patch_size
    # The stride-p convolution without bias, as a matrix product of flattened patches: its HWIO
    # kernel [p, p, C, width] reshapes to [p * p * C, width] in the patches' (row, column, channel) order.
    kernel = self.param("patch_kernel", _normal(0.02), (p, p, c, cfg.width))
    patches = images.reshape(b, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, p * p * c)
    x = jnp.dot(patches.astype(self.dtype), kernel.reshape(p * p * c, cfg.width).astype(self.dtype))
    cls = self.param("class_embedding", _normal(cfg.width ** -0.5), (cfg.width,))
    positions = self.param("position_embedding", _normal(0.02), (1 + gh * gw, cfg.width))
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, cfg.width)), x], axis=1)
    x = x + positions.astype(x.dtype)
    norm = lambda name: nn.LayerNorm(self.layer_norm_eps, dtype=self.dtype, use_fast_variance=False,
                                     name=name)
    x = norm("pre_layrnorm")(x)
    x = Encoder(cfg.layers, cfg.heads, cfg.mlp_dim, self.hidden_act, self.layer_norm_eps, self.dtype,
                name="encoder")(x)
    return x, norm("post_layernorm")(x[:, 0])


def text_pool_positions(input_ids: Array, eos_token_id: int) -> Array:
  """Where HF's CLIPTextTransformer reads each sequence's feature: [B] positions.

  Legacy configs (``eos_token_id == 2``) take argmax(input_ids); the others the first position that
  holds ``eos_token_id`` (0 if none does: HF's argmax of an all-False row). Both are HF's rules,
  including their edge cases, so that pooled features agree for any input.
  """
  if eos_token_id == LEGACY_EOS_TOKEN_ID:
    return jnp.argmax(input_ids, axis=-1)
  return jnp.argmax(input_ids == eos_token_id, axis=-1)


class TextTower(nn.Module):
  """Causal transformer: returns (final-LayerNorm hidden states [B, T, width], pooled [B, width])."""

  config: TextConfig
  hidden_act: str
  layer_norm_eps: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids: Array, attention_mask: Optional[Array] = None) -> tuple[Array, Array]:
    cfg = self.config
    b, t = input_ids.shape
    if t > cfg.context_length:
      raise ValueError(f"input_ids have {t} positions; this CLIP's context length is {cfg.context_length}")
    tokens = nn.Embed(cfg.vocab_size, cfg.width, embedding_init=_normal(0.02), name="token_embedding")
    positions = self.param("position_embedding", _normal(0.02), (cfg.context_length, cfg.width))
    x = (tokens(input_ids) + positions[:t]).astype(self.dtype)
    mask = jnp.tril(jnp.ones((t, t), bool))[None, None]
    if attention_mask is not None:
      if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask {attention_mask.shape} does not match input_ids {input_ids.shape}")
      mask = mask & (attention_mask[:, None, None, :] != 0)
    x = Encoder(cfg.layers, cfg.heads, cfg.mlp_dim, self.hidden_act, self.layer_norm_eps, self.dtype,
                name="encoder")(x, mask)
    x = nn.LayerNorm(self.layer_norm_eps, dtype=self.dtype, use_fast_variance=False,
                     name="final_layer_norm")(x)
    pooled = jnp.take_along_axis(x, text_pool_positions(input_ids, cfg.eos_token_id)[:, None, None],
                                 axis=1)[:, 0]
    return x, pooled


def _unit(x: Array) -> Array:
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


class CLIP(nn.Module):
  """CLIP from a ``CLIPConfig``. Every method takes ``model.apply({'params': params}, ..., method=...)``.

  ``encode_image(images)``: NHWC float images, already normalised (the image processor's mean / std)
  -> projected, unnormalised embeddings [B, projection_dim], HF's ``get_image_features``.
  ``encode_text(input_ids, attention_mask=None)`` -> the same for text (``get_text_features``).
  ``image_features`` / ``text_features`` also return the towers' pooled (pre-projection) features and
  last hidden states. ``__call__(images, input_ids, attention_mask=None)`` returns both embeddings and
  ``logits_per_image`` [B_img, B_txt] = exp(logit_scale) * cosine similarity, and its transpose
  ``logits_per_text``.
  """

  config: CLIPConfig = CLIPConfig()
  dtype: Any = jnp.float32

  def setup(self):
    cfg = self.config
    self.vision = VisionTower(cfg.vision, cfg.hidden_act, cfg.layer_norm_eps, self.dtype)
    self.text = TextTower(cfg.text, cfg.hidden_act, cfg.layer_norm_eps, self.dtype)
    self.visual_projection = nn.Dense(cfg.projection_dim, use_bias=False, dtype=self.dtype,
                                      kernel_init=_normal(cfg.vision.width ** -0.5))
    self.text_projection = nn.Dense(cfg.projection_dim, use_bias=False, dtype=self.dtype,
                                    kernel_init=_normal(cfg.text.width ** -0.5))
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(cfg.logit_scale_init), ())

  def image_features(self, images: Array) -> dict[str, Array]:
    """``embedding`` (projected), ``pooled`` (post-LayerNorm class token), ``hidden`` (last block)."""
    hidden, pooled = self.vision(images)
    return {"embedding": self.visual_projection(pooled).astype(jnp.float32), "pooled": pooled,
            "hidden": hidden}

  def text_features(self, input_ids: Array, attention_mask: Optional[Array] = None) -> dict[str, Array]:
    """``embedding`` (projected), ``pooled`` (at the end token), ``hidden`` (after the final LayerNorm)."""
    hidden, pooled = self.text(input_ids, attention_mask)
    return {"embedding": self.text_projection(pooled).astype(jnp.float32), "pooled": pooled,
            "hidden": hidden}

  def encode_image(self, images: Array) -> Array:
    return self.image_features(images)["embedding"]

  def encode_text(self, input_ids: Array, attention_mask: Optional[Array] = None) -> Array:
    return self.text_features(input_ids, attention_mask)["embedding"]

  def logits(self, image_embeddings: Array, text_embeddings: Array) -> Array:
    """exp(logit_scale) * cosine similarities, [B_img, B_txt], from (unnormalised) embeddings."""
    sims = _unit(image_embeddings.astype(jnp.float32)) @ _unit(text_embeddings.astype(jnp.float32)).T
    return jnp.exp(self.logit_scale) * sims

  def __call__(self, images: Array, input_ids: Array,
               attention_mask: Optional[Array] = None) -> dict[str, Array]:
    image = self.image_features(images)
    text = self.text_features(input_ids, attention_mask)
    logits_per_image = self.logits(image["embedding"], text["embedding"])
    return {"image_embeddings": image["embedding"], "text_embeddings": text["embedding"],
            "image_pooled": image["pooled"], "text_pooled": text["pooled"],
            "logits_per_image": logits_per_image, "logits_per_text": logits_per_image.T}


def contrastive_loss(logits_per_image: Array) -> Array:
  """CLIP's symmetric InfoNCE: mean of the image->text and text->image cross-entropies (pairs on the diagonal)."""
  labels = jnp.arange(logits_per_image.shape[0])
  image_loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits_per_image, axis=1),
                                             labels[:, None], axis=1))
  text_loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits_per_image.T, axis=1),
                                            labels[:, None], axis=1))
  return (image_loss + text_loss) / 2
