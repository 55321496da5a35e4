"""What an explanation explains: one number per image from a registered model's head and class.

Attribution methods (``fairjax.explain.attributions``, ``grad_cam``, ``lime``) take a score function
``fn(images) -> [N]`` of images as a person sees them: RGB in [0, 1], ``[N, H, W, 3]``. ``Target`` makes
one from a registered model, so that the maps are over the picture and not over the model's normalised
input: it converts to grey where the run's data are grey, normalises with the run's mean and std, runs
the model in evaluation mode and reads one head:

  binary        a unit's probability (``class_index`` 1, or the unit; 0 gives 1 - p of a single unit)
  multiclass    the class's softmax probability (CLIP zero-shot heads: a prompt's probability)
  binned        a bin's probability, or the expected value (``class_index=None``: age in years)
  regression    the value (``class_index`` picks the unit of a multi-unit head)
  multilabel_softmax
                a label's probability under the softmax over all labels; a head with ``class_groups``
                (seed 002's Man + Boy = male) is read as its decoded classes, a class's probability
                being its labels' summed probability (the prediction, ``heads.predict``, is the class
                of the single highest label, as the seed compares confidences; the two disagree only
                when the labels of a class split its mass)

``output='logit'`` explains the log-odds instead (log p / (1 - p) of the same event), which does not
saturate: a confident model's probability has almost no gradient, its log-odds still has. For two
CLIP prompts that is the difference of their logits, "a photo of a man" against "a photo of a woman".
"""

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from fairjax.data import augment
from fairjax.models import heads as heads_lib
from fairjax.train import evaluate

Array = jax.Array
OUTPUTS = ("probability", "logit")


@dataclasses.dataclass(frozen=True)
class Target:
  """A head and class of a registered model, and the run's input normalisation.

  Attributes:
    model: the registered Flax module (hashable: a target is a jit cache key).
    head: the head's name.
    class_index: the explained class (see the module docstring); None for a value.
    output: 'probability' or 'logit' (log-odds).
    mean, std: the run's ``config.data.mean`` / ``std``.
    grayscale: whether the run's model sees grey images (``config.data.grayscale``).
  """
  model: nn.Module
  head: str
  class_index: Optional[int] = None
  output: str = "probability"
  mean: tuple = (0.0,)
  std: tuple = (1.0,)
  grayscale: bool = False

  def __post_init__(self):
    specs = {spec.name: spec for spec in self.model.heads}
    if self.head not in specs:
      raise ValueError(f"the model has no head {self.head!r}; its heads: {sorted(specs)}")
    if self.output not in OUTPUTS:
      raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
    spec = specs[self.head]
    classes = evaluate.num_classes(spec)
    if self.class_index is None:
      if spec.kind not in ("regression", "binned") and not (spec.kind == "binary" and spec.num_outputs == 1):
        raise ValueError(f"head {self.head!r} ({spec.kind}) needs a class to explain")
    elif not 0 <= self.class_index < classes:
      raise ValueError(f"head {self.head!r} has classes 0..{classes - 1}, got class {self.class_index}")
    if spec.kind == "regression" and self.output != "probability":
      raise ValueError(f"head {self.head!r} is a regression head: its value is explained, not a logit")
    object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
    object.__setattr__(self, "std", tuple(float(v) for v in self.std))

  @property
  def spec(self) -> heads_lib.HeadSpec:
    return next(spec for spec in self.model.heads if spec.name == self.head)

  def model_input(self, images: Array) -> Array:
    """What the model sees of [0, 1] RGB images: the run's evaluation preprocessing."""
    images = jnp.asarray(images, jnp.float32)
    if self.grayscale and images.shape[-1] == 3:
      images = augment.to_grayscale(images)
    return augment.normalise(images, self.mean, self.std)

  def outputs(self, variables: dict, images: Array) -> dict:
    """The model's outputs (evaluation mode) for [0, 1] images."""
    return self.model.apply(variables, self.model_input(images), train=False)

  def score_outputs(self, outputs: dict) -> Array:
    """``[N]``: the explained number, from the model's outputs."""
    return _score(self.spec, outputs[self.head], self.class_index, self.output)

  def score(self, variables: dict, images: Array) -> Array:
    return self.score_outputs(self.outputs(variables, images))

  def bind(self, variables: dict) -> "BoundScore":
    """The score function of these weights (a pytree: new weights of one shape compile once)."""
    return BoundScore(self, variables)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BoundScore:
  """``fn(images) -> [N]`` for one model's weights; the weights are the pytree's leaves."""
  target: Target = dataclasses.field(metadata={"static": True})
  variables: Any

  def __call__(self, images: Array) -> Array:
    return self.target.score(self.variables, images)


def for_run(model, variables: dict, data_config, head: str, class_index: Optional[int],
            output: str = "probability") -> BoundScore:
  """The score function of a run's model on a head and class, with the run's preprocessing."""
  return Target(model, head, class_index, output, tuple(data_config.mean), tuple(data_config.std),
                bool(data_config.grayscale)).bind(variables)


def _score(spec: heads_lib.HeadSpec, raw: Array, class_index: Optional[int], output: str) -> Array:
  logit = output == "logit"
  if spec.kind == "binary":
    z = raw if raw.ndim == 1 else raw[:, class_index]
    if raw.ndim == 1 and class_index == 0:
      z = -z
    return z if logit else jax.nn.sigmoid(z)
  if spec.kind == "regression":
    return raw if raw.ndim == 1 else raw[:, class_index or 0]
  if spec.kind == "binned" and class_index is None:
    return heads_lib.expected_value(jax.nn.softmax(raw, axis=-1), jnp.asarray(spec.centers, raw.dtype))
  log_probs = jax.nn.log_softmax(raw, axis=-1)
  members = list(spec.class_groups[class_index]) if spec.class_groups else [class_index]
  inside = jax.scipy.special.logsumexp(log_probs[:, members], axis=-1)
  if not logit:
    return jnp.exp(inside)
  others = [k for k in range(raw.shape[-1]) if k not in members]
  return inside - jax.scipy.special.logsumexp(log_probs[:, others], axis=-1)
