"""Gradient and perturbation attributions in JAX: integrated gradients, SmoothGrad, occlusion, gradients.

Every method here explains a *score function* ``fn(images [N, H, W, C]) -> [N]``: one number per image,
the thing being explained (a class probability, a logit, a regressed age, the difference of two CLIP
prompts' similarities; ``fairjax.explain.targets`` builds these from a registered model). Each returns
attributions shaped like the images, so that maps from different methods can be compared pixel for
pixel, aggregated by group and scored for faithfulness by the same code. Everything is batched over the
images and jit-compiled; the loops over interpolation steps, noise samples and occluding patches run as
``lax.map`` over batched passes, so memory grows with the batch, not with the number of steps.

Why not PAIR's ``saliency``: it is framework-agnostic NumPy that calls the model once per step from
Python, so a 64-step integrated gradients costs 64 dispatches per image. It is the oracle of the tests
(the same alphas, the same noise draws give the same maps), not a dependency.

Grad-CAM needs a layer's activations and lives in ``fairjax.explain.grad_cam``.
"""

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ScoreFn = Callable[[Array], Array]

RULES = ("trapezoid", "linspace")


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class _Static:
  """A plain score function as a jit argument: a pytree without leaves, so jit keys on its identity."""
  fn: Callable

  def __call__(self, images):
    return self.fn(images)


def as_argument(fn: ScoreFn):
  """``fn`` as an argument of the jitted functions here: a pytree score (``targets.BoundScore``,
  whose model variables are leaves traced like any array, so new weights do not recompile) as it
  is, any other callable wrapped as a static one."""
  if not callable(fn):
    raise ValueError(f"the score function must be callable, got {type(fn).__name__}")
  leaves = jax.tree_util.tree_leaves(fn)
  return fn if not (len(leaves) == 1 and leaves[0] is fn) else _Static(fn)


def _check_images(images) -> Array:
  images = jnp.asarray(images, jnp.float32)
  if images.ndim != 4:
    raise ValueError(f"images must be [N, H, W, C], got shape {tuple(images.shape)}")
  return images


def gradients(fn: ScoreFn, images) -> Array:
  """d fn / d image for each image (the vanilla saliency map), ``[N, H, W, C]``.

  ``fn`` scores each image independently, so the gradient of the batch's sum is each image's own.
  """
  images = _check_images(images)
  return jax.jit(lambda f, x: _gradients(f)(x))(as_argument(fn), images)


def _gradients(fn: ScoreFn) -> Callable[[Array], Array]:
  return jax.grad(lambda x: jnp.sum(fn(x)))


@dataclasses.dataclass
class IntegratedGradients:
  """Integrated gradients and how well they add up.

  Attributes:
    maps: ``[N, H, W, C]`` attributions.
    delta: ``[N]`` fn(images) - fn(baseline), what the attributions should sum to (completeness).
    completeness_error: ``[N]`` |sum(maps) - delta| / |delta| (0 where delta is 0 and the sum is 0).
  """
  maps: np.ndarray
  delta: np.ndarray
  completeness_error: np.ndarray


def path_alphas(steps: int, rule: str = "trapezoid") -> tuple[np.ndarray, np.ndarray]:
  """The interpolation points on [0, 1] and their quadrature weights (summing to 1).

  'trapezoid' integrates the straight path by the trapezoid rule over ``steps`` evenly spaced points
  (both ends included), whose error falls as 1/steps^2; 'linspace' gives each of those points the same
  weight, as PAIR's ``saliency`` does (error 1/steps), kept to reproduce its maps.
  """
  if steps < 2:
    raise ValueError(f"steps must be at least 2, got {steps}")
  if rule not in RULES:
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
  alphas = np.linspace(0.0, 1.0, steps)
  weights = np.full(steps, 1.0 / steps)
  if rule == "trapezoid":
    weights = np.full(steps, 1.0 / (steps - 1))
    weights[[0, -1]] /= 2
  return alphas.astype(np.float32), weights.astype(np.float32)


def integrated_gradients(fn: ScoreFn, images, baseline=None, steps: int = 64,
                         rule: str = "trapezoid") -> IntegratedGradients:
  """Integrated gradients (Sundararajan et al. 2017) along the straight path from ``baseline``.

  Args:
    fn: the score function.
    images: ``[N, H, W, C]``.
    baseline: broadcastable to the images; black (zeros) by default.
    steps: points on the path (64 keeps the completeness error of a trained CNN under 1 %).
    rule: quadrature, see ``path_alphas``.
  """
  images = _check_images(images)
  baseline = jnp.zeros_like(images) if baseline is None else jnp.broadcast_to(
      jnp.asarray(baseline, jnp.float32), images.shape)
  alphas, weights = path_alphas(steps, rule)
  maps, delta, total = _integrated_gradients(as_argument(fn), images, baseline, jnp.asarray(alphas),
                                             jnp.asarray(weights))
  maps, delta, total = np.asarray(maps), np.asarray(delta), np.asarray(total)
  with np.errstate(divide="ignore", invalid="ignore"):
    error = np.abs(total - delta) / np.abs(delta)
  error = np.where(np.abs(delta) > 0, error, np.abs(total - delta))
  return IntegratedGradients(maps=maps, delta=delta, completeness_error=error)


@jax.jit
def _integrated_gradients(fn, images, baseline, alphas, weights):
  grad = _gradients(fn)
  difference = images - baseline

  def weighted_gradient(alpha_weight):
    alpha, weight = alpha_weight
    return weight * grad(baseline + alpha * difference)

  path_gradients = jax.lax.map(weighted_gradient, (alphas, weights))
  maps = difference * path_gradients.sum(axis=0)
  delta = fn(images) - fn(baseline)
  return maps, delta, maps.reshape(maps.shape[0], -1).sum(axis=1)


def smoothgrad(fn: ScoreFn, images, key: Array, num_samples: int = 32, noise_level: float = 0.15,
               magnitude: bool = False, noise=None) -> np.ndarray:
  """SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of each image.

  Args:
    fn: the score function.
    images: ``[N, H, W, C]``.
    key: the noise's PRNG key (stateless: the same key gives the same map).
    num_samples: noisy copies per image.
    noise_level: the noise's standard deviation as a fraction of each image's value range (max - min),
      the paper's (and PAIR's) ``stdev_spread``.
    magnitude: average squared gradients instead (SmoothGrad-squared).
    noise: explicit unit-free draws ``[num_samples, N, H, W, C]`` of N(0, 1), scaled here; given to
      reproduce another implementation's draws (the tests use PAIR's), otherwise drawn from ``key``.
  """
  images = _check_images(images)
  if num_samples < 1:
    raise ValueError(f"num_samples must be at least 1, got {num_samples}")
  if noise is None:
    noise = jax.random.normal(key, (num_samples,) + images.shape, jnp.float32)
  else:
    noise = jnp.asarray(noise, jnp.float32)
    if noise.shape != (num_samples,) + images.shape:
      raise ValueError(f"noise must be [{num_samples}, *images.shape], got {tuple(noise.shape)}")
  flat = images.reshape(images.shape[0], -1)
  spread = (flat.max(axis=1) - flat.min(axis=1)) * noise_level
  return np.asarray(_smoothgrad(as_argument(fn), images, noise * spread[None, :, None, None, None], magnitude))


@functools.partial(jax.jit, static_argnums=3)
def _smoothgrad(fn, images, noise, magnitude):
  grad = _gradients(fn)

  def noisy_gradient(draw):
    g = grad(images + draw)
    return g * g if magnitude else g

  return jax.lax.map(noisy_gradient, noise).mean(axis=0)


def occlusion(fn: ScoreFn, images, patch: int = 8, stride: int = 4, value: float = 0.0,
              batch_size: int = 64) -> np.ndarray:
  """Occlusion sensitivity (Zeiler & Fergus 2014): how much the score drops when a patch is covered.

  Each ``patch`` x ``patch`` square at ``stride`` steps is set to ``value`` in all channels; a pixel's
  attribution is the mean drop ``fn(image) - fn(occluded)`` over the patches that cover it (pixels no
  patch covers get 0), given to every channel so that the map is shaped like the image. About
  ``batch_size`` occluded images are scored per call.
  """
  images = _check_images(images)
  _, height, width, _ = images.shape
  if not 1 <= patch <= min(height, width) or stride < 1:
    raise ValueError(f"patch must lie in [1, {min(height, width)}] and stride be positive, got "
                     f"patch={patch}, stride={stride}")
  tops = np.arange(0, height - patch + 1, stride)
  lefts = np.arange(0, width - patch + 1, stride)
  rows = np.arange(height)[None, :, None]
  cols = np.arange(width)[None, None, :]
  corners = np.stack(np.meshgrid(tops, lefts, indexing="ij"), -1).reshape(-1, 2)
  masks = ((rows >= corners[:, 0, None, None]) & (rows < corners[:, 0, None, None] + patch)
           & (cols >= corners[:, 1, None, None]) & (cols < corners[:, 1, None, None] + patch))
  per_pass = max(1, batch_size // images.shape[0])
  pad = -len(masks) % per_pass
  masks = np.concatenate([masks, np.zeros((pad, height, width), bool)]).astype(np.float32)
  masks = masks.reshape(-1, per_pass, height, width)
  return np.asarray(_occlusion(as_argument(fn), images, jnp.asarray(masks), jnp.float32(value)))


@jax.jit
def _occlusion(fn, images, masks, value):
  original = fn(images)
  n = images.shape[0]

  def one_pass(pass_masks):  # [P, H, W]: P occluded copies of every image, scored in one call
    m = pass_masks[:, None, :, :, None]
    occluded = (images[None] * (1 - m) + value * m).reshape((-1,) + images.shape[1:])
    drops = original[None] - fn(occluded).reshape(-1, n)  # [P, N]
    return jnp.einsum("pn,phw->nhw", drops, pass_masks), pass_masks.sum(axis=0)

  drops, coverage = jax.lax.map(one_pass, masks)
  drops, coverage = drops.sum(axis=0), coverage.sum(axis=0)
  mean = jnp.where(coverage > 0, drops / jnp.maximum(coverage, 1), 0.0)
  return jnp.broadcast_to(mean[..., None], images.shape)
