"""Models by name, and the model-agnostic helpers a training harness needs.

Configs name a model by string (``get_model('vgg_face_age')``); each family module registers its
seed reproductions at import, with default heads, input shape and hyper-parameters that reproduce the
seed, and any of them can be overridden (``get_model('resnet18', heads=(...,))``).

Every registered model follows one contract, so the harness never special-cases a family:
  * ``model.apply(variables, images, train=bool, rngs={'dropout': key})`` on NHWC float images returns
    a dict with ``'embedding'`` ([B, D], the representation the heads read, before any dropout that
    precedes them) and one raw output per head name (see ``heads``);
  * ``model.heads`` is its tuple of ``HeadSpec``s and ``model.input_shape`` the (H, W, C) its seed
    used, which fixes the size of flatten-then-Dense layers;
  * a model whose seed regularises kernels (Keras ``kernel_regularizer=l2(f)``) lists them in
    ``model.l2_factors()`` (layer name -> f); ``l2_penalty`` adds them up for the loss, and is 0 for
    every other model.
BatchNorm models keep running statistics in the ``batch_stats`` collection, updated when
``train=True`` with ``mutable=['batch_stats']``.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fairjax.models import protocols
from fairjax.registry import Registry

# CLIP's classifier lives with the rest of CLIP, in fairjax.clip (above this package).
_MODELS = Registry("model", elsewhere={"clip_zero_shot": "fairjax.clip.classifier"})


def register(name: str) -> Callable:
  """Decorator registering a factory ``(**overrides) -> nn.Module`` under ``name``."""
  return _MODELS.register(name)


def get_model(name: str, **overrides) -> nn.Module:
  """The registered model ``name``, its defaults replaced by ``overrides`` (module attributes)."""
  return _MODELS.build(name, **overrides)


def list_models() -> tuple[str, ...]:
  """Names of all registered models, sorted."""
  return _MODELS.names()


def dummy_input(model: nn.Module, batch_size: int = 1) -> jax.Array:
  """Zeros of the model's seed input shape, ``[batch_size, H, W, C]``."""
  return jnp.zeros((batch_size, *model.input_shape), jnp.float32)


def init_variables(model: nn.Module, rng: jax.Array, batch_size: int = 1) -> dict:
  """The model's variables (``params``, and ``batch_stats`` where it has BatchNorm) at its seed input.

  Jitted: one compiled program initialises every layer, much faster than layer by layer on CPU. A model
  that starts from saved weights (``clip_zero_shot`` with a checkpoint) returns them from its
  ``pretrained_variables()``; None there means a fresh initialisation.
  """
  pretrained = model.pretrained_variables() if isinstance(model, protocols.PretrainedStart) else None
  if pretrained is not None:
    return dict(pretrained)

  def init(key):
    return model.init({"params": key}, dummy_input(model, batch_size), train=False)

  return dict(jax.jit(init)(rng))


def abstract_variables(model: nn.Module) -> dict:
  """Shapes and dtypes of the model's variables, without allocating or computing them."""
  return dict(jax.eval_shape(lambda key: model.init({"params": key}, dummy_input(model), train=False),
                            jax.random.key(0)))


def param_count(tree: Any) -> int:
  """Number of scalars in a pytree of arrays or ``ShapeDtypeStruct``s."""
  return int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(tree)))


def l2_penalty(model: nn.Module, params: Any) -> jax.Array:
  """sum over regularised layers of factor * sum(kernel ** 2), as Keras adds it to the loss.

  ``params`` is the model's ``params`` collection. Keras applies ``kernel_regularizer=l2(f)`` to the
  total loss once per step, not averaged over the batch; add this to the mean loss the same way.
  """
  total = jnp.zeros((), jnp.float32)
  factors = model.l2_factors() if isinstance(model, protocols.KerasL2) else {}
  for layer, factor in factors.items():
    total = total + factor * jnp.sum(jnp.square(params[layer]["kernel"]))
  return total
