"""A CLIP checkpoint's image processing in JAX: uint8 batches to the model's normalised input, jitted.

``Processor.images`` runs transformers' PIL image processor one image at a time (convert to PIL,
resize, back to numpy, crop, rescale, normalise): fine for a handful, slow for a data set. The same
steps as one XLA program over a batch, read from the processor's own settings:

  resize     ``size.shortest_edge`` (the shorter side to that length, aspect kept, the longer side
             truncated to an int as transformers computes it) or ``size.height`` x ``size.width``;
             PIL's filters (bicubic, bilinear, Lanczos: PIL widens the kernel by the scale when
             shrinking, which is ``jax.image.resize``'s antialiasing) applied as PIL applies them,
             the horizontal pass first and each pass rounded to uint8, which is what makes the two
             agree to one grey level (without the intermediate rounding PIL's clipped overshoot at
             edges leaves differences of several levels)
  crop       centred, top-left corner at ``(H - h) // 2, (W - w) // 2`` as transformers' numpy crop
  rescale    ``x * rescale_factor`` (1/255)
  normalise  ``(x - image_mean) / image_std`` per channel

Output is float32 NHWC, as ``fairjax.clip.model.CLIP.encode_image`` takes it. Settings this does not
reproduce (another resampling filter, padding, a crop larger than the resized image) are errors that
name them, never a silently different input.
"""

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

# PIL resampling codes (PIL.Image.Resampling) to jax.image.resize methods with the same kernel.
RESAMPLE_METHODS = {1: "lanczos3", 2: "linear", 3: "cubic"}
_PIL_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


@dataclasses.dataclass(frozen=True)
class ImageTransform:
  """Resize, centre crop, rescale and normalise, as a CLIP image processor configures them."""

  shortest_edge: Optional[int] = None         # resize the shorter side to this, keeping the aspect
  size: Optional[tuple[int, int]] = None      # or resize to exactly (height, width)
  method: str = "cubic"                       # jax.image.resize method
  crop: Optional[tuple[int, int]] = None      # centre crop (height, width) after resizing
  rescale: Optional[float] = None             # multiply by this (1/255)
  mean: Optional[tuple[float, ...]] = None    # then (x - mean) / std per channel
  std: Optional[tuple[float, ...]] = None

  @classmethod
  def from_processor(cls, image_processor: Any) -> "ImageTransform":
    """The transform of a transformers CLIP image processor (``load_processor(path).image_processor``)."""
    p = image_processor
    if getattr(p, "do_pad", None):
      raise ValueError("the image processor pads images (do_pad); padding is not reproduced here")
    shortest = size = None
    method = "cubic"
    if p.do_resize:
      resample = int(p.resample)
      if resample not in RESAMPLE_METHODS:
        raise ValueError(f"the image processor resizes with PIL's {_PIL_NAMES.get(resample, resample)} "
                         f"filter; only {', '.join(_PIL_NAMES[r] for r in RESAMPLE_METHODS)} are reproduced")
      method = RESAMPLE_METHODS[resample]
      s = p.size
      if getattr(s, "longest_edge", None) or getattr(s, "max_height", None):
        raise ValueError(f"the image processor's size {s} bounds the longest edge; only shortest_edge "
                         "or height x width resizing is reproduced")
      if getattr(s, "shortest_edge", None):
        shortest = int(s.shortest_edge)
      elif getattr(s, "height", None) and getattr(s, "width", None):
        size = (int(s.height), int(s.width))
      else:
        raise ValueError(f"the image processor's size {s} gives neither shortest_edge nor height x width")
    crop = (int(p.crop_size.height), int(p.crop_size.width)) if p.do_center_crop else None
    rescale = float(p.rescale_factor) if p.do_rescale else None
    mean = std = None
    if p.do_normalize:
      mean, std = tuple(float(m) for m in np.ravel(p.image_mean)), tuple(float(s) for s in np.ravel(p.image_std))
      if len(mean) not in (1, 3) or len(std) not in (1, 3) or min(std) <= 0:
        raise ValueError(f"image_mean {mean} / image_std {std}: need 1 or 3 values, std > 0")
    return cls(shortest, size, method, crop, rescale, mean, std)

  def resized_shape(self, height: int, width: int) -> tuple[int, int]:
    """(height, width) after the resize step, for an input of that size."""
    if self.size is not None:
      return self.size
    if self.shortest_edge is None:
      return height, width
    if width <= height:  # transformers' get_resize_output_image_size, default_to_square=False
      return int(self.shortest_edge * height / width), self.shortest_edge
    return self.shortest_edge, int(self.shortest_edge * width / height)

  def output_shape(self, height: int, width: int) -> tuple[int, int]:
    """(height, width) of the transformed image."""
    resized = self.resized_shape(height, width)
    if self.crop is None:
      return resized
    if self.crop[0] > resized[0] or self.crop[1] > resized[1]:
      raise ValueError(f"the centre crop {self.crop} is larger than the resized image {resized} (from "
                       f"{height}x{width}); transformers would pad it with zeros, which is not reproduced")
    return self.crop

  def __call__(self, images) -> jax.Array:
    """uint8 ``[B, H, W, 3]`` to float32 ``[B, h, w, 3]``; traceable (shapes are static)."""
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must be [B, H, W, 3], got shape {images.shape}")
    if images.dtype != jnp.uint8:
      raise ValueError(f"images must be uint8 as decoded (the resize rounds to uint8 as PIL), got "
                       f"{images.dtype}")
    batch, height, width, _ = images.shape
    out_h, out_w = self.output_shape(height, width)  # checks the crop before any work
    x = images.astype(jnp.float32)
    new_h, new_w = self.resized_shape(height, width)
    if new_w != width:   # PIL: the horizontal pass first, rounded to uint8
      x = _levels(jax.image.resize(x, (batch, height, new_w, 3), self.method, antialias=True))
    if new_h != height:
      x = _levels(jax.image.resize(x, (batch, new_h, new_w, 3), self.method, antialias=True))
    if self.crop is not None:
      top, left = (new_h - out_h) // 2, (new_w - out_w) // 2
      x = x[:, top:top + out_h, left:left + out_w]
    if self.rescale is not None:
      x = x * self.rescale
    if self.mean is not None:
      x = (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)
    return x


def _levels(x):
  """Round to the uint8 grid, as PIL stores each pass."""
  return jnp.clip(jnp.round(x), 0.0, 255.0)


def image_encoder(model, params, transform: ImageTransform):
  """``encode(uint8 [B, H, W, 3]) -> [B, D]`` embeddings: the transform and ``encode_image`` in one jit."""

  @jax.jit
  def encode(p, images):
    return model.apply({"params": p}, transform(images), method=model.encode_image)

  return lambda images: np.asarray(encode(params, jnp.asarray(images)))
