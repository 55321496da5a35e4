"""The attribution methods by name, as the command and the by-group analysis call them.

Each entry is ``fn(score, images, key, **options) -> [N, H, W]``: one map per image at the image's size,
what ``fairjax.explain.by_group`` aggregates, draws and scores for faithfulness. Maps shaped like the
images (integrated gradients, SmoothGrad, occlusion) are summed over channels, keeping their sign;
Grad-CAM's and LIME's are per pixel already. Options are the methods' own keyword arguments, checked by
the registry (a misspelt option is an error naming the valid ones), e.g.
``{"lime": {"num_samples": 500}, "ig": {"steps": 32}}``.
"""

import jax

from fairjax import registry as registry_lib
from fairjax.explain import attributions
from fairjax.explain import faithfulness
from fairjax.explain import grad_cam as grad_cam_lib
from fairjax.explain import lime as lime_lib

_REGISTRY = registry_lib.Registry("explanation method")
register = _REGISTRY.register
NAMES = ("ig", "smoothgrad", "gradcam", "occlusion", "lime")
TITLES = {"ig": "integrated gradients", "smoothgrad": "SmoothGrad", "gradcam": "Grad-CAM",
          "occlusion": "occlusion", "lime": "LIME"}


@register("ig")
def _ig(score, images, key, *, steps: int = 64, baseline: float = 0.0):
  del key
  return faithfulness.pixel_saliency(
      attributions.integrated_gradients(score, images, baseline=baseline, steps=steps).maps)


@register("smoothgrad")
def _smoothgrad(score, images, key, *, num_samples: int = 32, noise_level: float = 0.15,
                magnitude: bool = False):
  return faithfulness.pixel_saliency(attributions.smoothgrad(
      score, images, key, num_samples=num_samples, noise_level=noise_level, magnitude=magnitude))


@register("gradcam")
def _gradcam(score, images, key, *, layer: str = ""):
  del key
  return grad_cam_lib.grad_cam(score, images, layer=layer or None).maps


@register("occlusion")
def _occlusion(score, images, key, *, patch: int = 0, stride: int = 0, value: float = 0.0):
  del key
  size = min(images.shape[1:3])
  patch = patch or max(2, size // 8)  # a patch of 1/8 of the face, moved by half a patch
  return faithfulness.pixel_saliency(
      attributions.occlusion(score, images, patch=patch, stride=stride or max(1, patch // 2), value=value))


@register("lime")
def _lime(score, images, key, *, num_samples: int = 1000, segments: str = "quickshift",
          kernel_width: float = 0.25, hide_color=None, batch_size: int = 256):
  return lime_lib.lime(score, images, key, num_samples=num_samples, segments=segments,
                       kernel_width=kernel_width, hide_color=hide_color, batch_size=batch_size).maps


def check(names, options=None) -> None:
  """Raises ``ValueError`` for an unknown method, or options for one not asked for or not taken."""
  for name in names:
    _REGISTRY.get(name)
  for name, method_options in (options or {}).items():
    if name not in names:
      raise ValueError(f"options given for method {name!r}, which is not among --methods {list(names)}")
    taken = [option for option in _REGISTRY.options(name) if option not in ("score", "images", "key")]
    unknown = sorted(set(method_options) - set(taken))
    if unknown:
      raise ValueError(f"method {name!r} takes no option(s) {unknown}; it takes {sorted(taken)}")


def maps(name: str, score, images, key: jax.Array, **options):
  """``[N, H, W]`` maps of method ``name`` (see the module docstring)."""
  return _REGISTRY.build(name, score, images, key, **options)
