"""Image augmentation in JAX, run on the accelerator inside the jitted train step.

The host pipeline only decodes and resizes (``pipeline.py``); random transforms run here, where they cost
no host threads and are as deterministic as the step. Every transform is a pure function of one
example's key and image (float32 [H, W, C] in [0, 1]), so it jits and vmaps, and a batch is augmented by
vmapping over per-example keys.

Keys. ``train_images`` derives each row's keys from what the row *is*, not where it sits:

  copy augmentation      rows with ``augment_seed >= 0`` are a rebalancing copy (seed 000 §3.3: flip,
                         random rotation, Gaussian blur, Gaussian noise), keyed only by
                         ``fold_in(key(copies.seed), augment_seed)``: the copy is the same picture every
                         epoch, as if it had been written to disk.
  training augmentation  every row, keyed by ``fold_in(fold_in(step_rng, index), augment_seed + 1)``: a new
                         draw each step, independent of batch position, batch size and device layout.

Then pixels are normalised with the data config's per-channel ``mean`` and ``std`` (defaults 0 and 1:
plain [0, 1] scaling, seed 000 §6.1.2).
"""

import functools
import math

import jax
from jax import lax
import jax.numpy as jnp
import ml_collections

# ITU-R BT.601 luma, the weights PIL's convert("L") uses, so host and device grayscale agree.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
FILL_MODE = "nearest"  # pixels moved in from outside repeat the edge (Keras' default fill_mode)


def default_config() -> ml_collections.ConfigDict:
  """Augmentation settings; a value of 0 (or False) turns a transform off.

  Training augmentation, drawn afresh every step for every row (defaults: seed 000 §6.1.2's horizontal
  flips and horizontal / vertical shifts):
    flip        bool, horizontal flip with probability 1/2
    shift       translation up to this fraction of the height / width in each direction
    rotation    rotation by an angle uniform in [-rotation, rotation] degrees
    blur_sigma  Gaussian blur with sigma uniform in [0, blur_sigma] pixels
    noise_std   additive Gaussian noise of this standard deviation (pixels in [0, 1]), clipped to [0, 1]
  ``copies``: the same fields (no shift) for the augmented copies that rebalancing adds (seed 000 §3.3
  names the transforms, not their strengths; ours are mild enough that the face stays recognisable),
  and ``seed``, the fixed key the copies are drawn from.
  """
  config = ml_collections.ConfigDict()
  config.flip = True
  config.shift = 0.1
  config.rotation = 0.0
  config.blur_sigma = 0.0
  config.noise_std = 0.0
  config.copies = ml_collections.ConfigDict(
      dict(seed=0, flip=True, rotation=15.0, blur_sigma=1.0, noise_std=0.03))
  return config


# ----------------------------------------------------------------------------------- per-example transforms

def flip(key: jax.Array, image: jax.Array, p: float = 0.5) -> jax.Array:
  """Mirrors the image left-right with probability ``p``."""
  return jnp.where(jax.random.bernoulli(key, p), image[:, ::-1], image)


def _warp(image: jax.Array, cos: jax.Array, sin: jax.Array, dy: jax.Array, dx: jax.Array) -> jax.Array:
  """Bilinear resampling of ``image`` rotated by the angle of (cos, sin) about its centre (positive:
  counter-clockwise as displayed) and then moved by (dy, dx) pixels (positive: down, right).

  Source coordinates are clamped to the image, which repeats the edge (``FILL_MODE``); the four
  neighbours are gathered as whole pixels (all channels at once), several times faster on CPU than
  ``map_coordinates`` channel by channel.
  """
  h, w, c = image.shape
  y, x = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  cy, cx = (h - 1) / 2, (w - 1) / 2
  # Output pixel (y, x) shows the input at the inverse transform of (y, x).
  v, u = y - dy - cy, x - dx - cx
  sy = jnp.clip(cos * v + sin * u + cy, 0.0, h - 1.0)
  sx = jnp.clip(cos * u - sin * v + cx, 0.0, w - 1.0)
  y0, x0 = jnp.floor(sy), jnp.floor(sx)
  wy, wx = (sy - y0)[..., None], (sx - x0)[..., None]
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  y1, x1 = jnp.minimum(y0 + 1, h - 1), jnp.minimum(x0 + 1, w - 1)
  pixels = image.reshape(h * w, c)
  at = lambda yy, xx: pixels[(yy * w + xx).reshape(-1)].reshape(h, w, c)
  top = (1 - wx) * at(y0, x0) + wx * at(y0, x1)
  bottom = (1 - wx) * at(y1, x0) + wx * at(y1, x1)
  return (1 - wy) * top + wy * bottom


def rotate_by(image: jax.Array, degrees) -> jax.Array:
  """The image rotated by ``degrees`` counter-clockwise about its centre, bilinear."""
  angle = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
  zero = jnp.zeros((), jnp.float32)
  return _warp(image, jnp.cos(angle), jnp.sin(angle), zero, zero)


def rotate(key: jax.Array, image: jax.Array, max_degrees: float) -> jax.Array:
  """Rotation by an angle uniform in [-max_degrees, max_degrees]."""
  return rotate_by(image, jax.random.uniform(key, (), jnp.float32, -max_degrees, max_degrees))


def shift_by(image: jax.Array, dy, dx) -> jax.Array:
  """The image moved ``dy`` pixels down and ``dx`` right (rounded to whole pixels), edges repeated.

  Whole pixels, as a slice of the edge-padded image: on CPU this is ~10x cheaper than a bilinear warp,
  and the shift ranges that seed 000 §6.1.2 uses (a tenth of the side) gain nothing from subpixels.
  """
  h, w = image.shape[:2]
  dy = jnp.clip(jnp.round(jnp.asarray(dy, jnp.float32)), -h, h).astype(jnp.int32)
  dx = jnp.clip(jnp.round(jnp.asarray(dx, jnp.float32)), -w, w).astype(jnp.int32)
  padded = jnp.pad(image, ((h, h), (w, w), (0, 0)), mode="edge")
  return lax.dynamic_slice(padded, (h - dy, w - dx, 0), image.shape)


def shift(key: jax.Array, image: jax.Array, max_fraction: float) -> jax.Array:
  """Translation by up to ``max_fraction`` of the height and of the width, uniform in each direction."""
  h, w = image.shape[:2]
  dy, dx = jax.random.uniform(key, (2,), jnp.float32, -1.0, 1.0) * max_fraction * jnp.array([h, w], jnp.float32)
  return shift_by(image, dy, dx)


def blur_by(image: jax.Array, sigma, radius: int) -> jax.Array:
  """Separable Gaussian blur with standard deviation ``sigma`` pixels, its kernel cut at ``radius``
  (static, so ``sigma`` may be traced); sigma 0 leaves the image as it is. Edges are repeated."""
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  sigma = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-3)
  kernel = jnp.exp(-0.5 * (taps / sigma) ** 2)
  kernel = kernel / kernel.sum()
  h, w = image.shape[:2]
  padded = jnp.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="edge")
  image = sum(kernel[i] * padded[i:i + h] for i in range(2 * radius + 1))
  padded = jnp.pad(image, ((0, 0), (radius, radius), (0, 0)), mode="edge")
  return sum(kernel[i] * padded[:, i:i + w] for i in range(2 * radius + 1))


def gaussian_blur(key: jax.Array, image: jax.Array, max_sigma: float) -> jax.Array:
  """Gaussian blur with sigma uniform in [0, max_sigma] (kernel cut at 3 max_sigma)."""
  sigma = jax.random.uniform(key, (), jnp.float32, 0.0, max_sigma)
  return blur_by(image, sigma, max(1, math.ceil(3 * max_sigma)))


def gaussian_noise(key: jax.Array, image: jax.Array, std: float) -> jax.Array:
  """Adds independent N(0, std^2) noise to every pixel and channel, clipped back to [0, 1]."""
  return jnp.clip(image + std * jax.random.normal(key, image.shape, jnp.float32), 0.0, 1.0)


def to_grayscale(images: jax.Array) -> jax.Array:
  """[..., 3] RGB to [..., 1] luma (BT.601, as the host pipeline's grayscale)."""
  return jnp.sum(images * jnp.asarray(GRAY_WEIGHTS, images.dtype), axis=-1, keepdims=True)


def normalise(images: jax.Array, mean, std) -> jax.Array:
  """(images - mean) / std per channel; ``mean`` and ``std`` hold one value or one per channel."""
  mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
  channels = images.shape[-1]
  if mean.size not in (1, channels) or std.size not in (1, channels):
    raise ValueError(f"mean {mean.tolist()} and std {std.tolist()} need 1 or {channels} values (the channels)")
  return (images - mean.reshape(-1)) / std.reshape(-1)


# ------------------------------------------------------------------------------------------------- batches

TRANSFORMS = ("flip", "shift", "rotation", "blur_sigma", "noise_std")


def augment_one(key: jax.Array, image: jax.Array, settings) -> jax.Array:
  """One example through the transforms ``settings`` (a mapping with the fields of ``TRANSFORMS``;
  missing or 0 is off) enables, in the order flip, shift, rotation, blur, noise. Each transform has its
  own subkey, so turning one off does not change what the others draw."""
  settings = {name: settings[name] for name in TRANSFORMS if name in settings and settings[name]}
  keys = jax.random.split(key, len(TRANSFORMS))
  if "flip" in settings:
    image = flip(keys[0], image)
  if "shift" in settings:
    image = shift(keys[1], image, settings["shift"])
  if "rotation" in settings:
    image = rotate(keys[2], image, settings["rotation"])
  if "blur_sigma" in settings:
    image = gaussian_blur(keys[3], image, settings["blur_sigma"])
  if "noise_std" in settings:
    image = gaussian_noise(keys[4], image, settings["noise_std"])
  return image


def augment_copies(images: jax.Array, augment_seeds: jax.Array, augment_config) -> jax.Array:
  """Float images in [0, 1] with the copy augmentation applied to the rows whose seed is >= 0.

  Batches without copies (every batch of a plan without them) skip the work under a ``lax.cond``.
  """
  copies = augment_config.copies
  seeds = jnp.asarray(augment_seeds, jnp.int32)

  def augmented(images):
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(copies.seed), jnp.maximum(seeds, 0))
    copied = jax.vmap(functools.partial(augment_one, settings=copies))(keys, images)
    return jnp.where((seeds >= 0)[:, None, None, None], copied, images)

  return lax.cond(jnp.any(seeds >= 0), augmented, lambda images: images, images)


def _to_float(images: jax.Array, data_config) -> jax.Array:
  images = jnp.asarray(images).astype(jnp.float32) / 255.0
  if data_config.grayscale and images.shape[-1] == 3:
    images = to_grayscale(images)
  return images


def train_images(batch: dict, step_rng: jax.Array, data_config) -> jax.Array:
  """float32 [B, H, W, C] training inputs from a pipeline batch: uint8 ``image``, int32 ``index`` and
  ``augment_seed``. ``data_config`` is the experiment's data section (``augment``, ``mean``, ``std``,
  ``grayscale``); see the module docstring for how the keys are made."""
  images = augment_copies(_to_float(batch["image"], data_config), batch["augment_seed"], data_config.augment)
  seeds = jnp.asarray(batch["augment_seed"], jnp.int32)
  row_key = lambda index, seed: jax.random.fold_in(jax.random.fold_in(step_rng, index), seed + 1)
  keys = jax.vmap(row_key)(jnp.asarray(batch["index"], jnp.int32), seeds)
  images = jax.vmap(functools.partial(augment_one, settings=data_config.augment))(keys, images)
  return normalise(images, data_config.mean, data_config.std)


def eval_images(batch: dict, data_config) -> jax.Array:
  """float32 [B, H, W, C] evaluation inputs: scaled and normalised, nothing random."""
  return normalise(_to_float(batch["image"], data_config), data_config.mean, data_config.std)
