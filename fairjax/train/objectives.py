"""Training objectives: one task loss plus a list of terms, composed into what the per-device step minimises.

A config names them as ``objective.task`` (a registered *task*: ``standard``, ``clip_contrastive``) with
its ``objective.task_options``, and ``objective.terms``, a mapping from registered *term* names to their
options (``constrained``, ``gap_penalty``, ``mindiff``, ``grl``, ``jlu``, ``balanced_weights``,
``reweighing``, ``group_dro``). ``build`` composes them into one ``Objective``, whose ``loss(params, state, batch, rng,
apply_fn, axis_name) -> (loss, aux)`` is what ``step.make_train_step`` differentiates: the task's loss of
the model's outputs on the (possibly reweighed or masked) batch, plus every term's value. Methods combine
by listing several terms: balanced weights with constraints, gradient reversal with constraints.

Every term implements one protocol (``Term``):
  * its own parameters (``init_params``: an adversary head, trained beside the model) and state
    (``init_state``: Lagrange multipliers, pooled counts), and what it is told of the run
    (``set_total_steps``: a schedule's horizon; ``set_training_rows``: the training plan, from which
    example weights are computed);
  * ``task_rows``: the rows the task loss is taken over and their weights (example weights multiply, a
    held-out share is masked);
  * ``statistics``: the group statistics it needs over the global batch, as local sums in two trees:
    ``exact`` (0-1 counts: summed with ``lax.psum``, no gradient) and ``differentiable`` (surrogate
    counts: summed with ``collectives.global_sum``, value global, gradient local). The objective sums
    them, so a term never calls a collective for them and its value is the same function of the global
    batch under pmap, shard_map and one device;
  * ``value``: its term of the loss, new state and metrics, from ``TermInputs`` (outputs, batch, params,
    its state, the summed statistics).
A term that owns model heads (``protected_heads``: the model's own gender head that JLU unlearns) takes
them out of the task loss. Options are checked when the config is checked (``check_config``): a misspelt
option is a one-line error naming the valid ones.
"""

import abc
import dataclasses
import inspect
from typing import Any, Mapping, Optional

import jax
from jax import lax

from fairjax.models import forward as forward_lib
from fairjax.models import heads as heads_lib
from fairjax.models import registry as model_registry
from fairjax.registry import Registry
from fairjax.train import collectives

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Statistics:
  """A term's group statistics: local sums before the objective reduces them, global sums after."""
  exact: Any = dataclasses.field(default_factory=dict)           # psummed, no gradient (0-1 counts)
  differentiable: Any = dataclasses.field(default_factory=dict)  # global_sum: global value, local gradient

  def summed(self, axis_name: str) -> "Statistics":
    return Statistics(lax.psum(lax.stop_gradient(self.exact), axis_name),
                      collectives.global_sum(self.differentiable, axis_name))


@dataclasses.dataclass(frozen=True)
class TermInputs:
  """What a term's value is computed from, on this device's rows."""
  params: Mapping[str, Any]  # the train state's params: 'model', plus every term's own
  outputs: Mapping[str, Array]  # the model's outputs of the training forward pass
  batch: Mapping[str, Array]
  state: Any  # this term's own state
  rng: Array
  step: Array
  axis_name: str
  statistics: Statistics = Statistics()  # this term's statistics, summed over the global batch

  @property
  def model_params(self):
    return self.params["model"]


class Term(abc.ABC):
  """One term of an objective; see the module docstring. Defaults: no parameters, no state, every row."""

  reads_text = False  # whether the input pipeline must add caption token ids to the batches
  protected_heads: tuple[str, ...] = ()  # model heads this term trains instead of the task loss

  def init_params(self, rng, model_params) -> dict:
    """Parameters of its own at step 0, stored beside ``params['model']`` under keys of its choosing."""
    del rng, model_params
    return {}

  def init_state(self) -> Any:
    return {}

  def set_total_steps(self, total_steps: int) -> None:
    """Told the run's length once, before the step is built."""

  def set_training_rows(self, plan) -> None:
    """Told the training split's plan (a DataFrame, one row per example) once, before the step is built."""

  def task_rows(self, batch, state):
    """The batch the task loss is taken over: its ``weight`` and ``mask`` columns as this term sets them."""
    del state
    return batch

  def statistics(self, inputs: TermInputs) -> Statistics:
    """Local sums over this device's rows; ``value`` sees them summed over the global batch."""
    del inputs
    return Statistics()

  @abc.abstractmethod
  def value(self, inputs: TermInputs) -> tuple[Array, Any, dict]:
    """``(term, new state, metrics)``: what it adds to the loss; metrics are global (reduced) values."""


class Task(abc.ABC):
  """The loss an objective's terms are added to: how the model is run on a batch, and its loss."""

  reads_text = False

  def __init__(self, model):
    self.model = model

  def forward(self, model_params, model_state, batch, rng, apply_fn, *, with_heads: bool):
    """``(outputs, new model_state)`` of the training forward pass. ``with_heads``: terms read the
    heads' outputs (a task that can skip them, CLIP's contrastive loss, must not then)."""
    del with_heads
    return forward_lib.forward(apply_fn, model_params, model_state, forward_lib.model_images(batch), rng,
                               train=True)

  @abc.abstractmethod
  def loss(self, model_params, outputs, batch, axis_name) -> tuple[Array, dict]:
    """``(loss over the global batch, metrics)``: built from ``collectives`` statistics."""

  def without_heads(self, names) -> "Task":
    """This task over the model without the heads ``names`` (heads that terms train)."""
    raise ValueError(f"task {type(self).__name__} cannot leave out heads {sorted(names)}")


_TASKS = Registry("objective task", elsewhere={"clip_contrastive": "fairjax.clip.objectives"})
# The terms live in the modules of their method; ``fairjax.train``'s __init__ imports them all.
_TERMS = Registry("objective term")
register_task = _TASKS.register
register_term = _TERMS.register


def task_names() -> tuple[str, ...]:
  return _TASKS.names()


def term_names() -> tuple[str, ...]:
  return _TERMS.names()


@register_task("standard")
class Standard(Task):
  """The model's weighted multi-task head loss over the global batch, plus its Keras L2 penalties.

  A batch's ``weight`` column (1.0 unless a treatment or a weight term set it) weights each example:
  every head's loss is the weighted mean over the global batch.
  """

  def loss(self, model_params, outputs, batch, axis_name):
    mean = lambda total, count: collectives.global_mean(total, count, axis_name)
    task_loss, per_head = heads_lib.multitask_loss(self.model.heads, outputs, batch,
                                                   weights=batch.get("weight"), mask=batch.get("mask"),
                                                   mean_fn=mean)
    penalty = collectives.replicated_term(model_registry.l2_penalty(self.model, model_params), axis_name)
    metrics = {f"loss/{name}": lax.pmean(lax.stop_gradient(value), axis_name)
               for name, value in per_head.items()}
    metrics["l2_penalty"] = lax.pmean(lax.stop_gradient(penalty), axis_name)
    return task_loss + penalty, metrics

  def without_heads(self, names):
    kept = tuple(spec for spec in self.model.heads if spec.name not in set(names))
    if not kept:
      raise ValueError(f"every head of the model ({[s.name for s in self.model.heads]}) is trained by a "
                       "term; no task is left")
    return Standard(self.model.clone(heads=kept))


class Objective:
  """A task and its terms as the one objective the train step minimises (see the module docstring)."""

  def __init__(self, task: Task, terms: Optional[Mapping[str, Term]] = None):
    self.terms = dict(sorted((terms or {}).items()))
    protected = {name for term in self.terms.values() for name in term.protected_heads}
    self.task = task.without_heads(protected) if protected else task
    self.reads_text = task.reads_text or any(term.reads_text for term in self.terms.values())

  def init_params(self, rng, model_params) -> dict:
    """Every term's own parameters; two terms may not claim the same key."""
    params = {}
    for i, (name, term) in enumerate(self.terms.items()):
      own = term.init_params(jax.random.fold_in(rng, i), model_params)
      clash = (set(own) & set(params)) | (set(own) & {"model"})
      if clash:
        raise ValueError(f"term {name!r} keeps parameters under {sorted(clash)}, which another part of "
                         "the objective uses")
      params.update(own)
    return params

  def init_state(self, params=None) -> dict:
    del params
    return {name: term.init_state() for name, term in self.terms.items()}

  def set_total_steps(self, total_steps: int) -> None:
    for term in self.terms.values():
      term.set_total_steps(total_steps)

  def set_training_rows(self, plan) -> None:
    for term in self.terms.values():
      term.set_training_rows(plan)

  def loss(self, params, state, batch, rng, apply_fn, axis_name):
    outputs, model_state = self.task.forward(params["model"], state.model_state, batch, rng, apply_fn,
                                             with_heads=bool(self.terms))
    task_batch = batch
    for name, term in self.terms.items():
      task_batch = term.task_rows(task_batch, state.objective_state[name])
    loss, metrics = self.task.loss(params["model"], outputs, task_batch, axis_name)
    new_state = {}
    for i, (name, term) in enumerate(self.terms.items()):
      inputs = TermInputs(params=params, outputs=outputs, batch=batch, state=state.objective_state[name],
                          rng=jax.random.fold_in(rng, i + 1), step=state.step, axis_name=axis_name)
      value, new_state[name], term_metrics = evaluate_term(term, inputs)
      loss = loss + value
      for key, metric in term_metrics.items():
        metrics[f"{name}/{key}" if key in metrics else key] = metric
      metrics[f"term/{name}"] = lax.pmean(lax.stop_gradient(value), axis_name)
    return loss, {"model_state": model_state, "objective_state": new_state, "metrics": metrics}


def evaluate_term(term: Term, inputs: TermInputs) -> tuple[Array, Any, dict]:
  """``term.value`` with its statistics summed over the global batch: what the objective adds."""
  summed = term.statistics(inputs).summed(inputs.axis_name)
  return term.value(dataclasses.replace(inputs, statistics=summed))


def _options(registry: Registry, name: str) -> dict:
  return {k: v for k, v in registry.options(name).items() if k != "model"}


def option_defaults(config_objective) -> dict[str, Any]:
  """The dotted keys of the objective's options that have defaults (``objective.task_options.x``,
  ``objective.terms.<term>.y``), and those defaults: what a saved run's config is compared with."""
  found = {f"objective.task_options.{k}": v for k, v in _options(_TASKS, config_objective.task).items()
           if v is not inspect.Parameter.empty}
  for name in config_objective.terms:
    found.update({f"objective.terms.{name}.{k}": v for k, v in _options(_TERMS, name).items()
                  if v is not inspect.Parameter.empty})
  return found


def check_options(config_objective) -> None:
  """One-line errors for an unknown task or term, or an option either does not take (naming the valid
  ones), before anything is built."""
  for registry, name, options, where in (
      [(_TASKS, config_objective.task, config_objective.task_options, "objective.task_options")]
      + [(_TERMS, n, config_objective.terms[n], f"objective.terms.{n}") for n in config_objective.terms]):
    known = _options(registry, name)
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
      raise ValueError(f"{where}: {registry.kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
                       f"its options: {', '.join(known) or 'none'}")


def build(config_objective, model) -> Objective:
  """The objective ``config.objective`` describes, for ``model``."""
  check_options(config_objective)
  task = _TASKS.build(config_objective.task, model, **dict(config_objective.task_options or {}))
  terms = {name: _TERMS.build(name, model, **dict(config_objective.terms[name] or {}))
           for name in config_objective.terms}
  return Objective(task, terms)


def get_objective(name: str, model, **options) -> Objective:
  """A one-part objective by name: the task ``name`` alone, or the term ``name`` on the ``standard``
  task (the shorthand of tests and scripts; configs compose with ``build``)."""
  if name in _TASKS.names():
    return Objective(_TASKS.build(name, model, **options))
  if name in _TERMS.names():
    return Objective(Standard(model), {name: _TERMS.build(name, model, **options)})
  raise ValueError(f"unknown objective {name!r}; known: tasks {', '.join(_TASKS.names())}; terms "
                   f"{', '.join(_TERMS.names())}")


def migrate_config(objective: Mapping[str, Any]) -> dict:
  """The ``objective`` section of a run saved before objectives composed (``{name, options}``) in
  today's form (``{task, task_options, terms}``), so that a finished run compares with its config.
  Already migrated sections come back unchanged."""
  if "name" not in objective:
    return dict(objective)
  name, options = objective["name"], dict(objective.get("options") or {})
  if name == "clip_contrastive":
    terms = {options.pop("fairness"): dict(options.pop("fairness_options", None) or {})} if options.get(
        "fairness") else {}
    options.pop("fairness", None)
    options.pop("fairness_options", None)
    return {"task": name, "task_options": options, "terms": terms}
  if name in _TASKS.names():
    return {"task": name, "task_options": options, "terms": {}}
  terms = {}
  if options.pop("balance_groups", False):
    attributes = options.get("attributes", ("race",))
    terms["balanced_weights"] = {"grouping": attributes if isinstance(attributes, str) else attributes[0]}
  terms[name] = options
  return {"task": "standard", "task_options": {}, "terms": terms}
