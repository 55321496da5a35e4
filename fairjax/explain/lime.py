"""LIME for images (Ribeiro et al. 2016): which superpixels a score leans on, by fitting a local linear model.

Each image is cut into superpixels; ``num_samples`` random subsets of them are kept and the rest
"hidden" (painted with the superpixel's mean colour, or a constant), the model scores every such image,
and a ridge regression of the scores on the 0/1 keep-vectors, weighted by how close each vector is to
the original (all ones), gives one coefficient per superpixel: what keeping it adds to the score.

It follows the reference ``lime`` package's ``LimeImageExplainer`` step for step, so that the same
segments and the same keep-vectors give lime's coefficients, intercept and ``score`` (tested against
it): scikit-image segmentation with lime's options (``segment``), the first keep-vector all ones,
hidden superpixels coloured as lime's ``fudged_image``, cosine distance to the all-ones vector, the
kernel ``sqrt(exp(-d**2 / kernel_width**2))`` and sklearn's ``Ridge(alpha=1)`` with sample weights,
here solved in closed form. What differs:

* Speed: all perturbed images are scored in jitted batches of fixed shape (one compile per model and
  image shape), images of a batch are explained together, and the ridge fits are ``vmap``-ed; lime
  builds each perturbed image in a Python loop and fits one sklearn model per image and label.
* Randomness: keep-vectors come from ``jax.random`` (column s of image i from ``key`` folded with i and
  s), so they are not lime's numpy draws; ``perturbations=`` takes given rows instead (lime's, say).
* Feature selection: none. lime's default ``'auto'`` selection, with ``num_features`` at least the
  number of superpixels (lime's default is 100000), keeps every superpixel and refits the plain
  weighted ridge, which is what this computes. With ``num_features <= 6`` lime switches to forward
  selection, and with fewer features than superpixels it drops some and refits: other numbers.
* One score per image: ``fn`` returns the score to explain, so the caller picks head and class; lime
  explains columns of a probability matrix (its ``top_labels=5`` default ignores ``labels``).
"""

import dataclasses
import functools
import inspect
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
import skimage.segmentation

from fairjax.explain import attributions

Array = jax.Array

# lime's defaults for quickshift (LimeImageExplainer.explain_instance); slic's are ours: ~50 superpixels
# (tens of them is what LIME's local fit can resolve from 1,000 samples), labels from 0 as lime needs.
DEFAULT_SEGMENT_OPTIONS = {
    "quickshift": {"kernel_size": 4, "max_dist": 200, "ratio": 0.2},
    "slic": {"n_segments": 50, "compactness": 10.0, "start_label": 0},
}
# Superpixel columns are padded to a multiple of this, so that images with a few more or fewer
# superpixels reuse the compiled scoring pass. Padded columns never change a result.
_COLUMN_BUCKET = 32
_HIGHEST = jax.lax.Precision.HIGHEST


def segment(images: Any, method: str = "quickshift", **options) -> np.ndarray:
  """Superpixels of each image, as lime's ``SegmentationAlgorithm`` computes them.

  Args:
    images: ``[N, H, W, C]``, ``C`` 1 or 3, float in [0, 1] or uint8 (what scikit-image's colour
      conversion expects). Grey images are repeated to RGB first, as lime's ``gray2rgb`` does.
    method: ``'quickshift'`` (lime's default, with lime's options ``kernel_size=4, max_dist=200,
      ratio=0.2``) or ``'slic'`` (``n_segments=50, compactness=10, start_label=0``).
    **options: scikit-image options overriding those defaults. ``random_seed`` is handled as lime
      handles it: passed on only where the installed scikit-image's function takes it (it became
      ``rng`` in 0.19+, and lime then drops it silently, so its quickshift always uses ``rng=42``).

  Returns:
    int32 ``[N, H, W]``: each image's superpixels numbered 0..S_i-1, in the order of scikit-image's
    labels (unchanged where those already run 0..S_i-1, as lime assumes they do).
  """
  images = np.asarray(images)
  if images.ndim != 4 or not len(images) or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be [N, H, W, C] with N > 0 and C 1 or 3, got shape {images.shape}")
  if images.dtype != np.uint8:
    if not np.issubdtype(images.dtype, np.floating):
      raise ValueError(f"images must be float in [0, 1] or uint8, got dtype {images.dtype}")
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
      raise ValueError("float images must lie in [0, 1] to be segmented (else pass precomputed segments)")
  if method not in DEFAULT_SEGMENT_OPTIONS:
    raise ValueError(f"unknown segmentation method {method!r}, expected 'quickshift' or 'slic'")
  algorithm = getattr(skimage.segmentation, method)
  accepted = inspect.signature(algorithm).parameters
  options = {**DEFAULT_SEGMENT_OPTIONS[method], **options}
  if "random_seed" in options and "random_seed" not in accepted:
    del options["random_seed"]  # As lime's filter_params does.
  unknown = sorted(set(options) - set(accepted) - {"image"})
  if unknown:
    raise ValueError(f"options {unknown} are not options of skimage.segmentation.{method}")
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  return np.stack([_relabel(algorithm(image, **options)) for image in images])


def _relabel(labels: np.ndarray) -> np.ndarray:
  """Labels renumbered 0..S-1 in their order: lime takes superpixel s to be label s."""
  _, dense = np.unique(labels, return_inverse=True)
  return dense.reshape(labels.shape).astype(np.int32)


@dataclasses.dataclass
class LimeExplanation:
  """One local linear model per image; arrays are numpy, S_max the most superpixels of any image.

  Attributes:
    weights: ``[N, S_max]`` ridge coefficient of each superpixel: the score gained by keeping it. Zero
      beyond an image's ``num_segments``.
    intercept: ``[N]`` the fit's score with every superpixel hidden.
    score: ``[N]`` weighted R^2 of the fit on the perturbed samples (lime's ``score``): how far the
      linear story can be trusted.
    segments: int32 ``[N, H, W]`` superpixel of each pixel, 0..num_segments-1.
    num_segments: ``[N]`` superpixels of each image.
    maps: ``[N, H, W]`` each pixel's superpixel weight, to show beside other attribution maps.
  """
  weights: np.ndarray
  intercept: np.ndarray
  score: np.ndarray
  segments: np.ndarray
  num_segments: np.ndarray
  maps: np.ndarray


def lime(
    fn: Callable[[Array], Array],
    images: Any,
    key: Optional[Array],
    num_samples: int = 1000,
    segments: Union[str, Any] = "quickshift",
    kernel_width: float = 0.25,
    ridge_alpha: float = 1.0,
    hide_color: Optional[Any] = None,
    batch_size: int = 256,
    segment_options: Optional[dict] = None,
    perturbations: Optional[Any] = None,
) -> LimeExplanation:
  """LIME explanations of ``fn`` at each of ``images``, with lime's defaults.

  Args:
    fn: ``float32 [B, H, W, C] -> [B]`` score to explain (a logit, a class probability). A plain
      function is a static argument of the jitted pass, so pass the same function object on every call
      (not a fresh lambda) for the compiled pass to be reused; a model's bound score
      (``targets.Target.bind``) is a pytree whose weights are traced, reused across weights.
    images: ``[N, H, W, C]`` as ``fn`` takes them (cast to float32).
    key: PRNG key for the keep-vectors; may be None when ``perturbations`` is given.
    num_samples: perturbed images per image, the original included (lime's default 1000).
    segments: ``'quickshift'`` or ``'slic'`` (see ``segment``, which then needs images in [0, 1] or
      uint8), or int ``[N, H, W]`` precomputed superpixels (renumbered 0..S_i-1 in label order).
    kernel_width: width of lime's kernel on the cosine distance to the original.
    ridge_alpha: ridge penalty (sklearn's ``alpha``; lime's 1). Should be positive unless the
      samples determine every coefficient.
    hide_color: None paints a hidden superpixel with its mean colour (lime's default); a scalar or a
      ``[C]`` colour paints it with that.
    batch_size: perturbed images per call of ``fn``; the last batch is padded.
    segment_options: scikit-image options for a named ``segments`` method.
    perturbations: optional 0/1 ``[N, num_samples, S_max]`` keep-vectors to use instead of drawing
      them (columns beyond an image's superpixels are ignored). lime's for an image with S superpixels
      are ``RandomState(random_state).randint(0, 2, num_samples * S).reshape(num_samples, S)`` with
      row 0 set to ones, drawn after one ``randint(0, 1000)`` when ``explain_instance`` is given no
      ``random_seed``.

  Returns:
    A ``LimeExplanation``.
  """
  images = np.asarray(images)
  if images.ndim != 4 or not len(images):
    raise ValueError(f"images must be [N, H, W, C] with N > 0, got shape {images.shape}")
  if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
    raise ValueError(f"num_samples must be an integer of at least 2, got {num_samples!r}")
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
  if not kernel_width > 0:
    raise ValueError(f"kernel_width must be positive, got {kernel_width!r}")
  if not ridge_alpha >= 0:
    raise ValueError(f"ridge_alpha must be non-negative, got {ridge_alpha!r}")
  superpixels = _superpixels(images, segments, segment_options)
  num_images, num_channels = images.shape[0], images.shape[-1]
  num_segments = superpixels.reshape(num_images, -1).max(axis=1) + 1
  s_max = int(num_segments.max())
  num_columns = max(_COLUMN_BUCKET, -(-s_max // _COLUMN_BUCKET) * _COLUMN_BUCKET)

  if perturbations is None:
    if key is None:
      raise ValueError("key is needed unless perturbations are given")
    rows = _draw_rows(key, num_images, num_samples, num_columns)
  else:
    rows = np.asarray(perturbations)
    if rows.shape != (num_images, num_samples, s_max):
      raise ValueError(f"perturbations must be [N, num_samples, S_max] = "
                       f"{(num_images, num_samples, s_max)}, got shape {rows.shape}")
    if not np.isin(rows, (0, 1)).all():
      raise ValueError("perturbations must hold only 0 and 1")
    rows = jnp.asarray(np.pad(rows, ((0, 0), (0, 0), (0, num_columns - s_max))).astype(bool))

  pixels = jnp.asarray(images, jnp.float32)
  superpixels_device = jnp.asarray(superpixels)
  if hide_color is None:
    hidden = _mean_colours(pixels, superpixels_device, num_columns)
  else:
    try:
      colour = np.broadcast_to(np.asarray(hide_color, np.float32), (num_channels,))
    except ValueError:
      raise ValueError(f"hide_color must be a scalar or a [{num_channels}] colour, got {hide_color!r}") from None
    hidden = jnp.broadcast_to(jnp.asarray(colour), pixels.shape)

  targets = _score_perturbations(fn, pixels, hidden, superpixels_device, rows, batch_size)
  weights, intercept, score = _fit_all(rows, targets, jnp.asarray(num_segments), jnp.float32(kernel_width),
                                       jnp.float32(ridge_alpha))
  weights = np.asarray(weights)[:, :s_max]
  maps = np.take_along_axis(weights, superpixels.reshape(num_images, -1), axis=1).reshape(superpixels.shape)
  return LimeExplanation(weights=weights, intercept=np.asarray(intercept), score=np.asarray(score),
                         segments=superpixels, num_segments=num_segments.astype(np.int32), maps=maps)


def _superpixels(images: np.ndarray, segments: Any, segment_options: Optional[dict]) -> np.ndarray:
  """int32 ``[N, H, W]`` superpixels numbered 0..S_i-1, computed or checked."""
  if isinstance(segments, str):
    return segment(images, segments, **(segment_options or {}))
  if segment_options:
    raise ValueError("segment_options apply only when segments names a method")
  segments = np.asarray(segments)
  if segments.shape != images.shape[:3]:
    raise ValueError(f"segments must be [N, H, W] = {images.shape[:3]}, got shape {segments.shape}")
  if not np.issubdtype(segments.dtype, np.integer):
    raise ValueError(f"segments must be integers, got dtype {segments.dtype}")
  return np.stack([_relabel(image_segments) for image_segments in segments])


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _draw_rows(key: Array, num_images: int, num_samples: int, num_columns: int) -> Array:
  """bool ``[N, num_samples, num_columns]`` keep-vectors, each bit a fair coin, the first row all ones.

  Column s of image i depends only on (key, i, s), so an image's explanation does not change with the
  images explained beside it or with the padding of the columns.
  """

  def image_rows(i):
    image_key = jax.random.fold_in(key, i)
    column_keys = jax.vmap(lambda s: jax.random.fold_in(image_key, s))(jnp.arange(num_columns))
    columns = jax.vmap(lambda k: jax.random.bernoulli(k, 0.5, (num_samples,)))(column_keys)
    return columns.T.at[0].set(True)

  return jax.vmap(image_rows)(jnp.arange(num_images))


@functools.partial(jax.jit, static_argnums=2)
def _mean_colours(pixels: Array, labels: Array, num_columns: int) -> Array:
  """Each pixel painted with its superpixel's mean colour: lime's ``fudged_image`` for hide_color None."""

  def one(image, image_labels):
    flat_labels = image_labels.reshape(-1)
    flat = image.reshape(-1, image.shape[-1])
    sums = jax.ops.segment_sum(flat, flat_labels, num_segments=num_columns)
    ones = jnp.ones_like(flat_labels, jnp.float32)
    counts = jax.ops.segment_sum(ones, flat_labels, num_segments=num_columns)
    means = sums / jnp.maximum(counts, 1.0)[:, None]
    return means[flat_labels].reshape(image.shape)

  return jax.vmap(one)(pixels, labels)


def _score_perturbations(fn, pixels: Array, hidden: Array, superpixels: Array, rows: Array,
                         batch_size: int) -> Array:
  """``[N, num_samples]`` scores of every perturbed image, ``batch_size`` a call of one compiled pass.

  The (image, row) pairs of all images run as one flat list, padded to whole batches, so a few images
  with few samples still fill the batches; each batch gathers its originals outside the compiled pass,
  whose shapes then do not depend on how many images there are.
  """
  num_images, num_samples, _ = rows.shape
  num_batches = -(-num_images * num_samples // batch_size)
  fn = attributions.as_argument(fn)
  scores = [_score_batch(fn, *_batch_inputs(pixels, hidden, superpixels, rows, start, batch_size))
            for start in range(0, num_batches * batch_size, batch_size)]
  return jnp.concatenate(scores)[:num_images * num_samples].reshape(num_images, num_samples)


@functools.partial(jax.jit, static_argnums=5)
def _batch_inputs(pixels: Array, hidden: Array, superpixels: Array, rows: Array, start: Array, batch_size: int):
  """Originals, hidden versions, superpixels and keep-vectors of flat pairs start..start+batch_size-1.

  Pairs past the end repeat the last one (their scores are dropped).
  """
  num_images, num_samples, _ = rows.shape
  pair = jnp.minimum(start + jnp.arange(batch_size), num_images * num_samples - 1)
  image, sample = pair // num_samples, pair % num_samples
  return pixels[image], hidden[image], superpixels[image], rows[image, sample]


@jax.jit
def _score_batch(fn, originals: Array, hidden: Array, superpixels: Array, rows: Array) -> Array:
  """``fn`` of each original with the superpixels its row drops painted from ``hidden``."""
  flat = superpixels.reshape(superpixels.shape[0], -1)
  keep = jnp.take_along_axis(rows, flat, axis=1).reshape(superpixels.shape)
  scores = fn(jnp.where(keep[..., None], originals, hidden))
  if scores.shape != (originals.shape[0],):
    raise ValueError(f"fn must map [B, H, W, C] images to [B] scores, got {scores.shape} for B={len(originals)}")
  return scores.astype(jnp.float32)


@jax.jit
def _fit_all(rows: Array, targets: Array, num_segments: Array, kernel_width: Array, alpha: Array):
  """Each image's weighted ridge fit of its scores on its keep-vectors, padding columns masked out."""
  column_mask = jnp.arange(rows.shape[-1]) < num_segments[:, None]
  rows = rows & column_mask[:, None, :]
  sample_weights = _kernel(rows, num_segments, kernel_width)
  return jax.vmap(_weighted_ridge, in_axes=(0, 0, 0, 0, None))(rows, targets, sample_weights, column_mask, alpha)


def _kernel(rows: Array, num_segments: Array, kernel_width: Array) -> Array:
  """lime's sample weights: ``sqrt(exp(-d**2 / width**2))``, d the cosine distance to the all-ones row.

  For a 0/1 row with k ones among S superpixels the cosine similarity to all ones is sqrt(k / S); the
  all-zeros row gets distance 1, as sklearn's ``pairwise_distances`` gives it.
  """
  kept = rows.sum(axis=-1).astype(jnp.float32)
  distance = jnp.clip(1.0 - jnp.sqrt(kept / num_segments[:, None].astype(jnp.float32)), 0.0, 2.0)
  return jnp.sqrt(jnp.exp(-distance**2 / kernel_width**2))


def _weighted_ridge(rows: Array, targets: Array, sample_weights: Array, column_mask: Array, alpha: Array):
  """sklearn's ``Ridge(alpha, fit_intercept=True).fit(rows, targets, sample_weight)``, in closed form.

  Rows and targets are centred at their weighted means, ``(Xc^T W Xc + alpha I) w = Xc^T W yc`` is
  solved, and the intercept is ``mean_y - mean_x . w``. Padding columns are zero with a unit diagonal,
  so their coefficient is exactly 0 even with ``alpha = 0``. Returns (coefficients, intercept, R^2).
  """
  x = rows.astype(jnp.float32)
  total = sample_weights.sum()
  x_mean = jnp.dot(sample_weights, x, precision=_HIGHEST) / total
  y_mean = jnp.dot(sample_weights, targets, precision=_HIGHEST) / total
  x_centred = (x - x_mean) * column_mask
  y_centred = targets - y_mean
  gram = jnp.dot(x_centred.T, sample_weights[:, None] * x_centred, precision=_HIGHEST)
  gram = gram + jnp.diag(jnp.where(column_mask, alpha, 1.0))
  moment = jnp.dot(x_centred.T, sample_weights * y_centred, precision=_HIGHEST)
  # Positive definite for alpha > 0; Cholesky also compiles in a fraction of LU's time on CPU.
  coefficients = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(gram), True), moment) * column_mask
  intercept = y_mean - jnp.dot(x_mean, coefficients, precision=_HIGHEST)
  residual = targets - jnp.dot(x, coefficients, precision=_HIGHEST) - intercept
  unexplained = jnp.dot(sample_weights, residual**2, precision=_HIGHEST)
  spread = jnp.dot(sample_weights, y_centred**2, precision=_HIGHEST)
  # sklearn's r2_score for constant targets: 1 if the fit is exact, else 0.
  score = jnp.where(spread > 0, 1.0 - unexplained / jnp.where(spread > 0, spread, 1.0),
                    jnp.where(unexplained == 0, 1.0, 0.0))
  return coefficients, intercept, score
