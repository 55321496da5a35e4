"""Integrated gradients, SmoothGrad, occlusion, Grad-CAM and the faithfulness figures, against PAIR's
``saliency`` as an oracle, a hand computation, and a task whose label lives in one known region."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from saliency import core as saliency_core

from fairjax.explain import attributions
from fairjax.explain import faithfulness
from fairjax.explain import grad_cam as grad_cam_lib
from fairjax.explain import lime as lime_lib
from fairjax.explain import targets
from fairjax.models.heads import HeadSpec
from tests.explain import planted


def _smooth_score(images):
  """A fixed nonlinear score of small images: tanh of a weighted sum plus a product of two pixels."""
  w = jnp.linspace(-1.0, 1.0, images[0].size).reshape(images.shape[1:])
  return jnp.tanh((images * w).sum(axis=(1, 2, 3))) + images[:, 0, 0, 0] * images[:, 1, 1, 1]


def _pair_call(fn):
  """PAIR's ``call_model_function`` for a score function: gradients of one image at a time."""
  def call(x_batch, call_model_args=None, expected_keys=None):
    grads = jax.grad(lambda x: jnp.sum(fn(x)))(jnp.asarray(x_batch, jnp.float32))
    return {saliency_core.INPUT_OUTPUT_GRADIENTS: np.asarray(grads)}
  return call


def test_integrated_gradients_match_pair_saliency_on_its_quadrature():
  image = np.random.default_rng(0).uniform(size=(6, 5, 3)).astype(np.float32)
  baseline = np.full_like(image, 0.2)
  expected = saliency_core.IntegratedGradients().GetMask(image, _pair_call(_smooth_score), x_steps=25,
                                                         x_baseline=baseline, batch_size=5)
  ours = attributions.integrated_gradients(_smooth_score, image[None], baseline, steps=25,
                                           rule="linspace")
  np.testing.assert_allclose(ours.maps[0], expected, rtol=1e-4, atol=1e-6)


def test_smoothgrad_matches_pair_saliency_on_its_noise_draws():
  image = np.random.default_rng(1).uniform(size=(6, 5, 3)).astype(np.float32)
  for magnitude in (False, True):
    np.random.seed(7)
    expected = saliency_core.GradientSaliency().GetSmoothedMask(
        image, _pair_call(_smooth_score), stdev_spread=0.15, nsamples=10, magnitude=magnitude)
    np.random.seed(7)  # PAIR draws N(0, stdev) per sample; the same unit draws, scaled by us
    stdev = 0.15 * (image.max() - image.min())
    draws = np.stack([np.random.normal(0, stdev, image.shape) for _ in range(10)]) / stdev
    ours = attributions.smoothgrad(_smooth_score, image[None], jax.random.key(0), num_samples=10,
                                   noise_level=0.15, magnitude=magnitude, noise=draws[:, None])
    np.testing.assert_allclose(ours[0], expected, rtol=1e-4, atol=1e-6)


def test_occlusion_of_a_linear_score_is_each_pixels_contribution():
  w = np.random.default_rng(2).normal(size=(8, 8, 1)).astype(np.float32)
  fn = lambda x: (x * w).sum(axis=(1, 2, 3))
  image = np.ones((1, 8, 8, 1), np.float32)
  # patch 1, stride 1: covering one pixel drops the score by exactly that pixel's weight
  np.testing.assert_allclose(attributions.occlusion(fn, image, patch=1, stride=1)[0], w, atol=1e-5)
  # patch 2, stride 2: each pixel gets its block's summed weight
  blocks = w.reshape(4, 2, 4, 2).sum(axis=(1, 3)).repeat(2, 0).repeat(2, 1)[..., None]
  np.testing.assert_allclose(attributions.occlusion(fn, image, patch=2, stride=2, batch_size=3)[0],
                             blocks, atol=1e-5)


class _TinyConvNet(nn.Module):
  heads: tuple = (HeadSpec("y", "regression"),)

  @nn.compact
  def __call__(self, x, train=False):
    a = nn.relu(nn.Conv(3, (3, 3), name="conv")(x))
    return {"embedding": a.mean(axis=(1, 2)), "y": nn.Dense(1, name="out")(a.mean(axis=(1, 2)))[:, 0]}


def test_grad_cam_matches_a_hand_computation():
  model = _TinyConvNet()
  images = np.random.default_rng(3).uniform(size=(2, 6, 6, 3)).astype(np.float32)
  variables = model.init(jax.random.key(0), images)
  score = targets.Target(model, "y").bind(variables)
  assert grad_cam_lib.default_layer(score, images) == "conv"
  result = grad_cam_lib.grad_cam(score, images)
  # by hand: y = sum_k w_k mean_ij relu(A)_k, A the conv output; d y / d A_k[i, j] = w_k / 36 where
  # A_k[i, j] > 0, else 0; alpha_k is that gradient's mean over the 6 x 6 map
  params = variables["params"]
  conv = nn.Conv(3, (3, 3)).apply({"params": params["conv"]}, images)
  w = np.asarray(params["out"]["kernel"][:, 0])
  alpha = ((np.asarray(conv) > 0) * w / 36).mean(axis=(1, 2))
  expected = np.maximum(np.einsum("nhwk,nk->nhw", np.asarray(conv), alpha), 0)
  np.testing.assert_allclose(result.layer_maps, expected, rtol=1e-4, atol=1e-7)
  assert result.maps.shape == (2, 6, 6)
  with pytest.raises(ValueError, match="not a spatial map"):
    grad_cam_lib.grad_cam(score, images, layer="out")


@pytest.fixture(scope="module")
def task():
  return planted.trained()


def _share_in_region(maps) -> np.ndarray:
  mass = np.abs(faithfulness.pixel_saliency(maps))
  return (mass * planted.region_mask()).sum(axis=(1, 2)) / mass.sum(axis=(1, 2))


def test_the_planted_task_is_learned_and_attributions_fall_in_its_region(task):
  target, variables, _, images, labels = task
  score = target.bind(variables)
  accuracy = float(((np.asarray(score(images)) > 0.5) == labels).mean())
  assert accuracy > 0.95
  images = images[labels == 1]  # the cue's presence is what class 1's probability rests on
  ig = attributions.integrated_gradients(score, images, steps=64)
  assert ig.completeness_error.max() < 0.01  # every face within 1 % at 64 steps
  shares = {
      "integrated_gradients": _share_in_region(ig.maps),
      "grad_cam": _share_in_region(grad_cam_lib.grad_cam(score, images, layer="conv2").maps),
      "occlusion": _share_in_region(attributions.occlusion(score, images, patch=4, stride=2)),
  }
  for method, share in shares.items():
    assert share.mean() >= 0.8, (method, share.mean())


def test_limes_top_superpixels_overlap_the_planted_region(task):
  # Hidden superpixels go black here: SLIC cuts the uniform red square out as a superpixel of its own,
  # whose mean colour (LIME's default fill) is the square itself, so hiding it would change nothing.
  target, variables, _, images, labels = task
  images = images[labels == 1][:12]
  explanation = lime_lib.lime(target.bind(variables), images, jax.random.key(0), num_samples=300,
                              segments="slic", segment_options={"n_segments": 36}, hide_color=0.0)
  top = explanation.weights.argmax(axis=1)
  overlaps = [(segments == s)[planted.region_mask()].any() for segments, s in zip(explanation.segments, top)]
  assert np.mean(overlaps) >= 0.9


def test_deletion_beats_random_maps_and_randomisation_changes_the_maps(task):
  target, variables, fresh, images, labels = task
  score = target.bind(variables)
  images = images[labels == 1]
  ig = attributions.integrated_gradients(score, images, steps=32).maps
  ours = faithfulness.curves(score, images, ig, steps=16)
  noise = faithfulness.curves(score, images, faithfulness.random_maps(jax.random.key(0), images.shape),
                              steps=16)
  assert ours.deletion_auc.mean() < noise.deletion_auc.mean() - 0.1
  assert ours.insertion_auc.mean() > noise.insertion_auc.mean()
  # Adebayo et al.: maps of a re-initialised model correlate little with the trained model's
  fresh_ig = attributions.integrated_gradients(target.bind(fresh), images, steps=32).maps
  assert faithfulness.rank_correlation(ig, fresh_ig).mean() < 0.5
  assert faithfulness.rank_correlation(ig, ig).min() > 0.999


def test_bad_input_is_one_clear_error():
  fn = lambda x: x.sum(axis=(1, 2, 3))
  with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
    attributions.integrated_gradients(fn, np.zeros((4, 4, 3)))
  with pytest.raises(ValueError, match="steps"):
    attributions.integrated_gradients(fn, np.zeros((1, 4, 4, 3)), steps=1)
  with pytest.raises(ValueError, match="patch"):
    attributions.occlusion(fn, np.zeros((1, 4, 4, 3)), patch=5)
  with pytest.raises(ValueError, match="no head"):
    targets.Target(_TinyConvNet(), "gender", 1)
  with pytest.raises(ValueError, match="classes"):
    targets.Target(planted.TinyCNN(), "label", 2)
