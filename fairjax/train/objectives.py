"""Training objectives by name: what the per-device step minimises.

An objective is an object with ``loss(params, state, batch, rng, apply_fn, axis_name) -> (loss, aux)``
(see ``step.make_train_step``): ``loss`` is built from ``collectives`` statistics, so that its value is
the objective over the global batch and its gradient is this device's share; ``aux`` carries the updated
``model_state`` (BatchNorm statistics), ``objective_state`` (e.g. Lagrange multipliers) and ``metrics``
(values already reduced over the batch axis). ``init_state(params)`` gives the objective's own state.
Mitigation objectives (constrained, gradient reversal, JLU) register here too and plug into the same
step without touching it. What some objectives need of the run beyond that is stated as protocols
below (``OwnParams``, ``Scheduled``, ``ReadsText``, ``GroupRateTerm``), which the run checks with
``isinstance``.
"""

import functools
import inspect
from typing import Protocol, runtime_checkable

from jax import lax

from fairjax.models import forward as forward_lib
from fairjax.models import heads as heads_lib
from fairjax.models import registry as model_registry
from fairjax.registry import Registry
from fairjax.train import collectives



@runtime_checkable
class OwnParams(Protocol):
  """An objective with parameters of its own that train beside the model's (an adversary head)."""

  def init_params(self, rng, model_params) -> dict:
    """The objective's parameters at step 0, stored beside ``params['model']``."""


@runtime_checkable
class Scheduled(Protocol):
  """An objective whose weight follows a schedule over the run (gradient reversal's ramp)."""

  def set_total_steps(self, total_steps: int) -> None:
    """Told the run's length once, before the step is built."""


@runtime_checkable
class ReadsText(Protocol):
  """An objective that reads captions: the input pipeline adds their token ids to the batches."""

  reads_text: bool


@runtime_checkable
class GroupRateTerm(Protocol):
  """A group-rate fairness term another objective can add to its own loss (constrained, gap penalty,
  MinDiff added to CLIP's contrastive loss)."""

  def fairness_term(self, outputs, batch, objective_state, axis_name):
    """``(term, objective_state, metrics)`` of the model's outputs on this device's rows."""


# CLIP's contrastive loss lives with the rest of CLIP, in fairjax.clip (above this package).
_OBJECTIVES = Registry("objective", elsewhere={"clip_contrastive": "fairjax.clip.objectives"})
register = _OBJECTIVES.register


def get_objective(name: str, model, **options):
  """The objective ``name`` for ``model``; unknown names list the known ones."""
  return _OBJECTIVES.build(name, model, **options)


def option_defaults(name: str) -> dict:
  """The options of objective ``name`` that have defaults, and those defaults."""
  return {k: v for k, v in _OBJECTIVES.options(name).items() if k != "model" and v is not inspect.Parameter.empty}


@register("standard")
class Standard:
  """The model's weighted multi-task head loss over the global batch, plus its Keras L2 penalties.

  A batch's ``weight`` column (1.0 unless a treatment such as ``reweigh`` set it) weights each example:
  every head's loss is the weighted mean over the global batch.
  """

  def __init__(self, model):
    self.model = model

  def init_state(self, params) -> dict:
    del params
    return {}

  def task_loss(self, model_params, outputs, batch, axis_name):
    """``(loss, metrics)`` of the model's outputs: what mitigation objectives add their terms to."""
    mean = functools.partial(collectives.global_mean, axis_name=axis_name)
    task_loss, per_head = heads_lib.multitask_loss(self.model.heads, outputs, batch,
                                                   weights=batch.get("weight"), mask=batch.get("mask"),
                                                   mean_fn=mean)
    penalty = collectives.replicated_term(model_registry.l2_penalty(self.model, model_params), axis_name)
    metrics = {f"loss/{name}": lax.pmean(lax.stop_gradient(value), axis_name)
               for name, value in per_head.items()}
    metrics["l2_penalty"] = lax.pmean(lax.stop_gradient(penalty), axis_name)
    return task_loss + penalty, metrics

  def loss(self, params, state, batch, rng, apply_fn, axis_name):
    outputs, model_state = forward_lib.forward(apply_fn, params["model"], state.model_state,
                                               forward_lib.model_images(batch),
                                   rng, train=True)
    loss, metrics = self.task_loss(params["model"], outputs, batch, axis_name)
    return loss, {"model_state": model_state, "objective_state": state.objective_state, "metrics": metrics}
