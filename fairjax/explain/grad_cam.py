"""Grad-CAM (Selvaraju et al. 2017) for any registered Flax model, by intercepting one layer's output.

Grad-CAM weighs a layer's feature maps ``A_k`` by the mean gradient of the score over each map,
``alpha_k = mean_ij d score / d A_k[i, j]``, and keeps the positive part of ``sum_k alpha_k A_k``. It
needs the activations and the gradient *at* that layer, which a model's outputs do not expose. Rather
than give every model a hook, the layer is reached from outside with ``flax.linen.intercept_methods``:
the interceptor records the named submodule's output and adds a zero perturbation to it, and the
gradient with respect to that perturbation is the gradient with respect to the activation. So any
registered model works unchanged, with layers named by their module path (``layer4_1`` of a ResNet,
``conv3`` of a Keras CNN, ``clip/vision/encoder/layer_11`` of CLIP's ViT).

A transformer layer's output is tokens ``[N, T, D]``: with T = 1 + g^2 (a class token and a g x g grid
of patches) or g^2 the patch tokens are laid back on their grid and treated as a g x g map, the usual
Grad-CAM for ViTs. The map is upsampled bilinearly to the image size.

Without a ``layer`` the default is the last module output (in call order) that depends on the images
and is a spatial map larger than 1 x 1: for a CNN the last convolutional block. Without one, it is the
last token grid whose patch tokens the score depends on: for CLIP's ViT, which reads its class token
only, the last block's first LayerNorm (``clip/vision/encoder/layer_11/ln1``), as is usual for ViTs.
``layers`` lists what can be chosen.
"""

import dataclasses
import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fairjax.explain import targets as targets_lib

Array = jax.Array


@dataclasses.dataclass
class GradCam:
  """Grad-CAM maps: ``maps`` [N, H, W] at the image size, ``layer_maps`` [N, h, w] at the layer's."""
  maps: np.ndarray
  layer_maps: np.ndarray
  layer: str


def _path(module) -> str:
  return "/".join(module.path)


def _recorded_outputs(score: targets_lib.BoundScore, images: Array) -> list[tuple[str, tuple]]:
  """(path, shape) of every submodule output, in the order the calls return."""
  records = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and isinstance(out, jax.Array) and context.module.path:
      records.append((_path(context.module), tuple(out.shape)))
    return out

  def run(x):
    with nn.intercept_methods(record):
      return score(x)

  jax.eval_shape(run, images)
  return records


def _grid(shape: tuple, n: int) -> Optional[tuple[int, int]]:
  """The (h, w) of a layer output that is a spatial map or a token grid of ``n`` images, else None."""
  if shape[0] != n:
    return None
  if len(shape) == 4 and shape[1] * shape[2] > 1:
    return shape[1], shape[2]
  if len(shape) == 3:
    for tokens in (shape[1] - 1, shape[1]):
      side = math.isqrt(max(tokens, 0))
      if side > 1 and side * side == tokens:
        return side, side
  return None


def layers(score: targets_lib.BoundScore, images) -> list[tuple[str, tuple]]:
  """The layers Grad-CAM can use on these images: (path, output shape), in call order. A layer counts
  when its output follows the batch (checked at two batch sizes, so that a text tower's prompt
  embeddings do not) and is a map or a token grid. They depend on the model and the images' shape
  only, so they are traced once per (target, shape)."""
  images = jnp.asarray(images, jnp.float32)
  cache_key = (score.target, images.shape)
  if cache_key not in _LAYERS:
    _LAYERS[cache_key] = _layers(score, images)
  return _LAYERS[cache_key]


_LAYERS: dict = {}


def _layers(score, images) -> list[tuple[str, tuple]]:
  n = images.shape[0]
  first = _recorded_outputs(score, images)
  second = dict(_recorded_outputs(score, jnp.concatenate([images, images[:1]])))
  return [(path, shape) for path, shape in first
          if _grid(shape, n) and second.get(path) == (n + 1,) + shape[1:]]


def default_layer(score: targets_lib.BoundScore, images) -> str:
  """The last spatial map, else the last token grid whose patch tokens the score depends on (see the
  module docstring)."""
  candidates = layers(score, images)
  maps = [path for path, shape in candidates if len(shape) == 4]
  tokens = [(path, shape) for path, shape in candidates if len(shape) == 3]
  if maps:
    return maps[-1]
  if not tokens:
    raise ValueError("the model has no layer whose output is a spatial map or a token grid: Grad-CAM "
                     "does not apply")
  reached = _patch_gradient_norms(score, jnp.asarray(images, jnp.float32), tuple(tokens))
  used = [path for (path, _), norm in zip(tokens, reached) if norm > 0]
  if not used:
    raise ValueError("the score depends on no layer's patch tokens: Grad-CAM does not apply")
  return used[-1]


@jax.jit(static_argnums=2)
def _patch_gradient_norms(score, images, tokens):
  """|d score / d patch tokens| of every token layer, from one backward pass.

  A ViT that reads its class token only makes the last block's patch tokens (and the encoder's output)
  dead ends: their gradient is exactly zero and Grad-CAM on them is blank. The usual choice for ViTs is
  therefore the last block's first LayerNorm, whose patch tokens feed the attention that the class
  token reads; this finds it, and its equivalent in any model, as the last token layer the score
  reaches."""
  n = images.shape[0]

  def perturbed(deltas):
    seen = set()

    def intercept(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      path = _path(context.module) if context.method_name == "__call__" and context.module.path else None
      if path in deltas and path not in seen:
        seen.add(path)
        out = out + deltas[path]
      return out

    with nn.intercept_methods(intercept):
      return jnp.sum(score(images))

  gradients = jax.grad(perturbed)({path: jnp.zeros(shape, jnp.float32) for path, shape in tokens})
  norms = []
  for path, shape in tokens:
    h, w = _grid(shape, n)
    norms.append(jnp.abs(gradients[path][:, -h * w:]).sum())
  return jnp.stack(norms)


def grad_cam(score: targets_lib.BoundScore, images, layer: Optional[str] = None) -> GradCam:
  """Grad-CAM of a model's score (``Target.bind``) for ``images`` [N, H, W, C] in [0, 1]."""
  images = jnp.asarray(images, jnp.float32)
  if images.ndim != 4:
    raise ValueError(f"images must be [N, H, W, C], got shape {tuple(images.shape)}")
  if not isinstance(score, targets_lib.BoundScore):
    raise ValueError("Grad-CAM reads a layer of a registered model: give a Target's bound score "
                     "(targets.for_run / Target.bind), not a plain function")
  candidates = dict(layers(score, images))
  layer = layer or default_layer(score, images)
  if layer not in candidates:
    raise ValueError(f"layer {layer!r} is not a spatial map or token grid of this model; choose one of "
                     f"{sorted(candidates)}")
  shape = candidates[layer]
  layer_maps = _grad_cam(score, images, layer, shape)
  maps = jax.image.resize(layer_maps, (images.shape[0],) + images.shape[1:3], "bilinear")
  return GradCam(maps=np.asarray(maps), layer_maps=np.asarray(layer_maps), layer=layer)


@jax.jit(static_argnums=(2, 3))
def _grad_cam(score, images, layer, shape):
  n = images.shape[0]

  def perturbed(delta):
    captured = []

    def intercept(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if context.method_name == "__call__" and context.module.path and _path(context.module) == layer:
        if captured:
          raise ValueError(f"layer {layer!r} is called more than once per forward pass")
        captured.append(out)
        out = out + delta
      return out

    with nn.intercept_methods(intercept):
      value = score(images)
    return jnp.sum(value), captured[0]

  gradient, activation = jax.grad(perturbed, has_aux=True)(jnp.zeros(shape, jnp.float32))
  h, w = _grid(shape, n)
  if activation.ndim == 3:  # tokens: drop a class token, lay the patches on their grid
    activation, gradient = (a[:, -h * w:].reshape(n, h, w, -1) for a in (activation, gradient))
  weights = gradient.mean(axis=(1, 2))
  return jax.nn.relu(jnp.einsum("nhwk,nk->nhw", activation, weights))
