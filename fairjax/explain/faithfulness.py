"""Whether an attribution map says something about the model: deletion / insertion AUC and randomisation.

A saliency map can look plausible and explain nothing; these figures say whether it does.

  Deletion (Petsiuk et al. 2018, RISE): remove pixels most-attributed first, in ``steps`` equal
      fractions, and record the score after each; the area under that curve (the mean score over the
      fractions 0, 1/steps, ..., 1, trapezoid rule) is low when the map found what the score rests on.
      Removed pixels take ``deletion_value`` (black by default; the paper's choice).
  Insertion: start from a blurred copy and put the original pixels back most-attributed first; high is
      good. The blur (``blur_sigma`` pixels) keeps the start image natural rather than empty.
  Random baseline: the same curves for maps of uniform noise. A method is faithful on these images
      when its deletion AUC is below the random maps' and its insertion AUC above.
  Randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps"): a method's maps for the
      trained model against those for the same architecture with re-initialised weights. A method
      whose maps barely change (Spearman rank correlation near 1) shows the image, not the model.

Pixels are ranked by the map summed over channels (signed: the score's support, not its opposition).
Curves are computed for all images at once, one batched call per fraction.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fairjax.explain import attributions

Array = jax.Array


@dataclasses.dataclass
class Curves:
  """Deletion and insertion curves ``[N, steps + 1]`` and their areas ``[N]``."""
  deletion: np.ndarray
  insertion: np.ndarray
  deletion_auc: np.ndarray
  insertion_auc: np.ndarray


def pixel_saliency(maps) -> np.ndarray:
  """``[N, H, W]``: a map shaped like the images summed over channels, or a ``[N, H, W]`` map as is."""
  maps = np.asarray(maps, np.float32)
  return maps.sum(axis=-1) if maps.ndim == 4 else maps


def gaussian_blur(images: Array, sigma: float) -> Array:
  """Separable Gaussian blur of ``[N, H, W, C]`` images (edges repeated), the insertion start."""
  radius = max(1, int(np.ceil(3 * sigma)))
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = jnp.asarray(taps / taps.sum(), jnp.float32)
  x = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
  size = 2 * radius + 1
  x = sum(taps[i] * x[:, i:i + x.shape[1] - size + 1] for i in range(size))
  return sum(taps[i] * x[:, :, i:i + x.shape[2] - size + 1] for i in range(size))


def curves(fn: Callable, images, maps, steps: int = 32, deletion_value: float = 0.0,
           blur_sigma: float = 5.0) -> Curves:
  """Deletion and insertion curves of ``fn`` for ``images`` [N, H, W, C] under ``maps``."""
  images = jnp.asarray(images, jnp.float32)
  saliency = pixel_saliency(maps)
  if saliency.shape != images.shape[:3]:
    raise ValueError(f"maps {tuple(np.shape(maps))} do not match images {tuple(images.shape)}")
  if steps < 1:
    raise ValueError(f"steps must be positive, got {steps}")
  n, h, w = saliency.shape
  # rank[i, p] = position of pixel p when image i's pixels are sorted most-attributed first
  order = np.argsort(-saliency.reshape(n, -1), axis=1, kind="stable")
  rank = np.empty_like(order)
  np.put_along_axis(rank, order, np.arange(h * w)[None], axis=1)
  cutoffs = np.round(np.linspace(0, h * w, steps + 1)).astype(np.int32)
  deletion, insertion = _curves(attributions.as_argument(fn), images,
                                jnp.asarray(rank.reshape(n, h, w)), jnp.asarray(cutoffs),
                                jnp.float32(deletion_value), gaussian_blur(images, blur_sigma))
  deletion, insertion = np.asarray(deletion).T, np.asarray(insertion).T
  return Curves(deletion=deletion, insertion=insertion, deletion_auc=_area(deletion),
                insertion_auc=_area(insertion))


def _area(curve: np.ndarray) -> np.ndarray:
  """Trapezoid area over [0, 1] of curves sampled at evenly spaced fractions."""
  return (curve[:, 1:] + curve[:, :-1]).sum(axis=1) / (2 * (curve.shape[1] - 1))


@jax.jit
def _curves(fn, images, rank, cutoffs, deletion_value, blurred):
  def at(cutoff):
    changed = (rank < cutoff)[..., None]
    deleted = jnp.where(changed, deletion_value, images)
    inserted = jnp.where(changed, images, blurred)
    return fn(deleted), fn(inserted)

  return jax.lax.map(at, cutoffs)


def random_maps(key: Array, shape: tuple) -> np.ndarray:
  """Uniform-noise maps ``[N, H, W]``: the baseline that a faithful method beats."""
  return np.asarray(jax.random.uniform(key, tuple(shape[:3])))


def rank_correlation(maps_a, maps_b, absolute: bool = True) -> np.ndarray:
  """Spearman correlation ``[N]`` between two methods' (or models') maps of each image, over pixels,
  of the absolute maps by default (Adebayo et al.'s comparison: importance, whatever its sign)."""
  a, b = pixel_saliency(maps_a), pixel_saliency(maps_b)
  if a.shape != b.shape:
    raise ValueError(f"maps of shapes {a.shape} and {b.shape} cannot be compared")
  a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
  if absolute:
    a, b = np.abs(a), np.abs(b)
  return np.asarray(_spearman(jnp.asarray(a), jnp.asarray(b)))


@jax.jit
def _spearman(a, b):
  def ranks(x):  # average ranks of ties, so that a constant map has no spurious order
    sorted_x = jnp.sort(x, axis=1)
    low = jax.vmap(lambda s, v: jnp.searchsorted(s, v, side="left"))(sorted_x, x)
    high = jax.vmap(lambda s, v: jnp.searchsorted(s, v, side="right"))(sorted_x, x)
    return (low + high - 1) / 2.0

  ra, rb = ranks(a), ranks(b)
  ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
  denominator = jnp.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
  return jnp.where(denominator > 0, (ra * rb).sum(axis=1) / jnp.maximum(denominator, 1e-30), 0.0)
