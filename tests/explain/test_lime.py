"""LIME against a score that is linear in superpixel presence, the reference ``lime`` package on the same
keep-vectors, and scikit-image's segmentations as lime's ``SegmentationAlgorithm`` calls them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.segmentation
from lime import lime_image
from lime.wrappers.scikit_image import SegmentationAlgorithm

from fairjax.explain import lime as lime_lib

SIZE, BLOCKS = 16, 4  # 16 x 16 images cut into a 4 x 4 grid of 4 x 4-pixel blocks.
# Each block's contribution to the presence score: distinct, of both signs, in no particular order.
BLOCK_COEFFICIENTS = np.random.RandomState(0).permutation(np.linspace(-1.0, 1.5, BLOCKS * BLOCKS))
BIAS = 0.3


def _grid_segments(num_images):
  block = np.arange(SIZE) // (SIZE // BLOCKS)
  return np.broadcast_to(block[:, None] * BLOCKS + block[None, :], (num_images, SIZE, SIZE)).copy()


def _presence_score(images):
  """BIAS + sum of the coefficients of the blocks still as they were, read from the pixels.

  Originals vary inside every block, and a hidden block is painted with its mean colour, so a block is
  unchanged exactly when its pixels still vary (in some channel).
  """
  cell = SIZE // BLOCKS
  blocks = images.reshape(images.shape[0], BLOCKS, cell, BLOCKS, cell, images.shape[-1])
  present = blocks.var(axis=(2, 4)).sum(axis=-1).reshape(images.shape[0], BLOCKS * BLOCKS) > 1e-6
  return present.astype(jnp.float32) @ jnp.asarray(BLOCK_COEFFICIENTS, jnp.float32) + BIAS


def _presence_images_and_segments():
  images = np.random.RandomState(1).uniform(0.1, 0.9, (3, SIZE, SIZE, 3)).astype(np.float32)
  segments = _grid_segments(3)
  segments[2] //= 2  # The third image's superpixels are pairs of blocks: 8 of them, padded to 16.
  return images, segments


def test_recovers_the_coefficients_of_a_score_linear_in_superpixel_presence():
  images, segments = _presence_images_and_segments()
  explanation = lime_lib.lime(_presence_score, images, jax.random.key(0), num_samples=300, segments=segments,
                              ridge_alpha=1e-6, batch_size=128)
  pairs = BLOCK_COEFFICIENTS[0::2] + BLOCK_COEFFICIENTS[1::2]
  np.testing.assert_array_equal(explanation.num_segments, [16, 16, 8])
  np.testing.assert_allclose(explanation.weights[:2], np.stack([BLOCK_COEFFICIENTS] * 2), atol=1e-3)
  np.testing.assert_allclose(explanation.weights[2, :8], pairs, atol=1e-3)
  np.testing.assert_array_equal(explanation.weights[2, 8:], 0.0)
  np.testing.assert_allclose(explanation.intercept, BIAS, atol=1e-3)
  np.testing.assert_allclose(explanation.score, 1.0, atol=1e-4)
  np.testing.assert_array_equal(explanation.segments, segments)
  expected_maps = np.take_along_axis(explanation.weights, segments.reshape(3, -1), axis=1).reshape(segments.shape)
  np.testing.assert_array_equal(explanation.maps, expected_maps)


def test_an_image_explained_alone_or_in_other_batches_gets_the_same_explanation():
  """Its keep-vectors depend only on the key, its index and its superpixels; padding changes nothing."""
  images, segments = _presence_images_and_segments()
  key = jax.random.key(3)
  together = lime_lib.lime(_presence_score, images, key, num_samples=50, segments=segments, batch_size=64)
  rebatched = lime_lib.lime(_presence_score, images, key, num_samples=50, segments=segments, batch_size=7)
  alone = lime_lib.lime(_presence_score, images[:1], key, num_samples=50, segments=segments[:1], batch_size=64)
  np.testing.assert_allclose(rebatched.weights, together.weights, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(alone.weights[0], together.weights[0], rtol=1e-5, atol=1e-6)
  other_key = lime_lib.lime(_presence_score, images[:1], jax.random.key(4), num_samples=50, segments=segments[:1])
  assert not np.allclose(other_key.weights[0], together.weights[0])


_HIDDEN_UNITS, _CLASSES, _REF_SIZE = 8, 3, 24
_W1 = np.random.RandomState(2).normal(0.0, 0.3, (_REF_SIZE * _REF_SIZE * 3, _HIDDEN_UNITS)).astype(np.float32)
_W2 = np.random.RandomState(3).normal(0.0, 1.5, (_HIDDEN_UNITS, _CLASSES)).astype(np.float32)


def _probabilities(images):
  """A fixed, random, nonlinear three-class classifier of 24 x 24 RGB images."""
  hidden = jnp.tanh(jnp.dot(images.reshape(images.shape[0], -1) - 0.5, _W1, precision="highest"))
  return jax.nn.softmax(jnp.dot(hidden, _W2, precision="highest"), axis=-1)


def _class_one(images):
  return _probabilities(images)[:, 1]


def _lime_classifier(batch):
  return np.asarray(_probabilities(jnp.asarray(batch, jnp.float32)), np.float64)


def _smooth_images():
  noise = np.random.RandomState(4).uniform(0.0, 1.0, (2, _REF_SIZE, _REF_SIZE, 3))
  return np.clip(scipy.ndimage.gaussian_filter(noise, (0, 3, 3, 0)) * 4 - 1.5, 0, 1)


@pytest.mark.parametrize("hide_color", [None, 0.2])
def test_matches_the_reference_lime_package_on_the_same_perturbations(hide_color):
  images = _smooth_images()
  segments = lime_lib.segment(images, "slic", n_segments=14)
  segments[1] = lime_lib.segment(images[1:], "slic", n_segments=10)[0]  # Two different counts: padding.
  counts = segments.reshape(2, -1).max(axis=1) + 1
  assert counts[0] != counts[1] and counts.min() > 3, counts
  num_samples, s_max = 400, counts.max()
  perturbations = np.zeros((2, num_samples, s_max), np.int64)
  expected = []
  for i in range(2):
    # lime's draws (data_labels); random_seed given, explain_instance draws nothing before them.
    rows = np.random.RandomState(10 + i).randint(0, 2, num_samples * counts[i]).reshape(num_samples, counts[i])
    rows[0, :] = 1
    perturbations[i, :, :counts[i]] = rows
    explainer = lime_image.LimeImageExplainer(random_state=10 + i)
    expected.append(explainer.explain_instance(
        images[i], _lime_classifier, labels=(1,), top_labels=None, hide_color=hide_color,
        num_features=counts[i], num_samples=num_samples, batch_size=100,
        segmentation_fn=lambda image, i=i: segments[i], random_seed=0))
  ours = lime_lib.lime(_class_one, images, None, num_samples=num_samples, segments=segments,
                       hide_color=hide_color, perturbations=perturbations)
  for i, reference in enumerate(expected):
    reference_weights = np.zeros(counts[i])
    for feature, weight in reference.local_exp[1]:
      reference_weights[feature] = weight
    scale = np.abs(reference_weights).max()
    np.testing.assert_array_equal(np.argsort(ours.weights[i, :counts[i]]), np.argsort(reference_weights))
    np.testing.assert_allclose(ours.weights[i, :counts[i]], reference_weights, rtol=1e-3, atol=1e-4 * scale)
    np.testing.assert_array_equal(ours.weights[i, counts[i]:], 0.0)
    np.testing.assert_allclose(ours.intercept[i], reference.intercept[1], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(ours.score[i], reference.score, rtol=1e-3)
  assert np.ptp(ours.score) > 0 and ours.score.min() < 0.999  # Nonlinear: the local fit is not exact.


def test_a_named_segmentation_is_computed_inside_lime():
  images = _smooth_images()
  explanation = lime_lib.lime(_class_one, images, jax.random.key(0), num_samples=20, segments="slic",
                              segment_options={"n_segments": 14})
  np.testing.assert_array_equal(explanation.segments, lime_lib.segment(images, "slic", n_segments=14))
  np.testing.assert_array_equal(explanation.num_segments, explanation.segments.reshape(2, -1).max(axis=1) + 1)
  assert np.isfinite(explanation.weights).all() and np.abs(explanation.weights).max() > 0


def _astronaut():
  return skimage.data.astronaut()[::4, ::4][:96, :96]  # 96 x 96 uint8 RGB.


@pytest.mark.parametrize("options", [{}, {"kernel_size": 2, "max_dist": 20, "ratio": 0.5}])
def test_quickshift_segments_are_lime_segments(options):
  image = _astronaut()
  lime_options = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2, **options}
  reference = SegmentationAlgorithm("quickshift", random_seed=5, **lime_options)(image)
  ours = lime_lib.segment(np.stack([image, image[::-1]]), "quickshift", random_seed=5, **options)
  np.testing.assert_array_equal(ours[0], reference)
  assert ours.dtype == np.int32 and ours.shape == (2, 96, 96)
  np.testing.assert_array_equal(ours[1], SegmentationAlgorithm("quickshift", **lime_options)(image[::-1]))
  floats = lime_lib.segment((image / 255.0)[None], "quickshift", **options)
  np.testing.assert_array_equal(floats[0], SegmentationAlgorithm("quickshift", **lime_options)(image / 255.0))
  if options:
    assert reference.max() > 10  # The smaller kernel cuts many superpixels, a sharper comparison.


def test_grey_images_are_segmented_as_lime_segments_them():
  grey = skimage.color.rgb2gray(_astronaut())  # Float [0, 1], [H, W]: lime turns it to RGB first.
  reference = SegmentationAlgorithm("quickshift", kernel_size=4, max_dist=200, ratio=0.2)(
      skimage.color.gray2rgb(grey))
  np.testing.assert_array_equal(lime_lib.segment(grey[None, :, :, None])[0], reference)


def test_slic_numbers_superpixels_from_zero():
  image = _astronaut()
  ours = lime_lib.segment(image[None], "slic")[0]
  reference = skimage.segmentation.slic(image, n_segments=50, compactness=10.0, start_label=0)
  np.testing.assert_array_equal(np.unique(ours), np.arange(ours.max() + 1))
  assert 20 <= ours.max() + 1 <= 80
  # Same partition as scikit-image's (renumbering aside).
  pairs = np.unique(np.stack([ours.ravel(), reference.ravel()]), axis=1)
  assert pairs.shape[1] == ours.max() + 1 == len(np.unique(reference))


def _bad_fn(images):
  return images.sum(axis=(1, 2))  # [B, C], not [B].


@pytest.mark.parametrize("change, message", [
    ({"images": np.zeros((4, 4, 3))}, "images must be"),
    ({"num_samples": 1}, "num_samples"),
    ({"batch_size": 0}, "batch_size"),
    ({"kernel_width": 0.0}, "kernel_width"),
    ({"segments": np.zeros((1, 4, 5), np.int32)}, "segments must be"),
    ({"segments": np.zeros((1, 4, 4))}, "segments must be integers"),
    ({"segments": "watershed"}, "unknown segmentation method"),
    ({"segments": "slic", "images": np.full((1, 4, 4, 3), 2.0)}, r"\[0, 1\]"),
    ({"segments": "slic", "images": np.zeros((1, 4, 4, 2))}, "C 1 or 3"),
    ({"segments": "slic", "segment_options": {"n_segmnts": 4}}, "not options of"),
    ({"segment_options": {"n_segments": 4}}, "segment_options"),
    ({"perturbations": np.ones((1, 5, 2))}, "perturbations must be"),
    ({"perturbations": np.full((1, 5, 1), 2)}, "0 and 1"),
    ({"key": None}, "key"),
    ({"hide_color": (0.1, 0.2)}, "hide_color"),
    ({"fn": _bad_fn}, "fn must map"),
])
def test_bad_input_is_a_value_error_naming_the_problem(change, message):
  arguments = {"fn": _class_one, "images": np.zeros((1, 4, 4, 3), np.float32), "key": jax.random.key(0),
               "num_samples": 5, "segments": np.zeros((1, 4, 4), np.int32)}
  with pytest.raises(ValueError, match=message):
    lime_lib.lime(**{**arguments, **change})


_TRACES = []


def _counted_score(images):
  _TRACES.append(images.shape)
  return _presence_score(images)


def test_scoring_compiles_once_across_calls_with_other_images_and_superpixel_counts():
  images, segments = _presence_images_and_segments()
  lime_lib.lime(_counted_score, images, jax.random.key(0), num_samples=20, segments=segments, batch_size=16)
  assert _TRACES == [(16, SIZE, SIZE, 3)]
  # Fewer images, fewer superpixels (8, padded to the same columns), another key: the same compiled pass.
  lime_lib.lime(_counted_score, images[2:] * 0.5, jax.random.key(1), num_samples=30, segments=segments[2:],
                batch_size=16)
  assert _TRACES == [(16, SIZE, SIZE, 3)]
