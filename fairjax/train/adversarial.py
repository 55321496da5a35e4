"""Unlearning objectives: gradient reversal (``grl``) and joint learning and unlearning (``jlu``).

Both keep a *protected head* per protected attribute on the model's ``'embedding'`` and train the
trunk so that the head cannot read the attribute, while the model's other heads (the task) train as
``standard`` trains them. They differ in how the trunk is pushed:

  grl  DANN / Learning-Not-to-Learn: the head reads the embedding through a gradient-reversal layer
       (identity forward, -lambda * gradient backward), so one loss, task + head cross-entropy, makes
       the head learn the attribute and the trunk unlearn it. lambda ramps 2 / (1 + exp(-10 p)) - 1
       over training progress p (DANN's schedule), from 0 at the first step to ``weight``.
  jlu  Seed 004's Algorithm 1 (Alvi et al. 2018): alternate (a) min L_attr, the head's cross-entropy
       on frozen features, and (b) min L_task + alpha * L_confusion, where L_confusion is the head's
       cross-entropy against the uniform distribution over the attribute's classes (seed 004's
       y_conf = (0.5, 0.5)) with the head frozen.

JLU runs one alternation per step in one gradient: the loss is L_task + alpha * L_confusion(head
params stop-gradient'ed) + L_attr(embedding stop-gradient'ed). The head's parameters get exactly (a)'s
gradient and the trunk and task heads exactly (b)'s, and since the two sets are disjoint, one
optimiser step on the sum is (a) and (b) applied to the same batch from the same parameters — the
seed's alternation with (b) seeing the head as it was before this step's (a) rather than after.

The protected head is the model's own head for the attribute where it has one (``jlu_cnn``'s gender
head: seed 004 trains it by (a)), so the run report's accuracy of that head is the seed's "gender
accuracy after unlearning"; otherwise an *adversary* head (a ReLU MLP of ``hidden`` widths and a
softmax over the attribute's classes) that the objective adds through ``init_params``, under
``params['adversary']`` with the layer names ``heads.head_outputs`` gives (``race``, ``race_fc1``...).
Either way the head reads the embedding itself: a model's dropout in front of its heads is not applied
to it. A model head that predicts a protected attribute is a protected head and never a task head.

Every term is a mean over the global batch through ``collectives`` (see its docstring), so one step is
exact under pmap and shard_map alike. Rows whose attribute is unknown (-1) take no part in the head's
cross-entropy; the confusion term needs no label and covers every row.
"""

from typing import Sequence

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from fairjax.data import groups
from fairjax.models import heads as heads_lib
from fairjax.models import registry as model_registry
from fairjax.train import collectives
from fairjax.train import objectives

ADVERSARY = "adversary"  # key of the adversary heads' parameters in the train state's params
SCHEDULES = ("dann", "constant")
DANN_GAMMA = 10.0  # steepness of DANN's ramp


@jax.custom_vjp
def gradient_reversal(x, scale):
  """The identity on ``x``, whose gradient is multiplied by ``-scale``; ``scale`` gets none."""
  del scale
  return x


def _reversal_forward(x, scale):
  return x, scale


def _reversal_backward(scale, g):
  return -scale * g, jnp.zeros_like(scale)


gradient_reversal.defvjp(_reversal_forward, _reversal_backward)


@jax.custom_vjp
def norm_preserving_reversal(x, scale):
  """The identity on ``x`` [..., D], whose gradient is multiplied by ``-scale`` and then stripped, row
  by row, of its component along the row of ``x``: the reversed gradient turns each embedding and never
  stretches it.

  Why: the adversary's cross-entropy is unbounded above, and for a (near) positively homogeneous head
  its gradient has a component along the embedding wherever the head is wrong, so plain reversal lets
  the trunk raise the loss without end by scaling the embedding up. On the default task (race
  unlearnt from the gender CNN, Adam 1e-3) that diverged: the adversary's loss went from 1.9 at step
  125 to 2,300 at step 200 and the gender loss with it. Without the radial part the trunk can only move
  the embedding where the adversary reads it wrong, which is what unlearning asks for.
  """
  del scale
  return x


def _norm_preserving_forward(x, scale):
  return x, (x, scale)


def _norm_preserving_backward(residuals, g):
  x, scale = residuals
  reversed_g = -scale * g
  sq_norm = jnp.sum(x * x, axis=-1, keepdims=True)
  radial = jnp.sum(reversed_g * x, axis=-1, keepdims=True) / jnp.where(sq_norm > 0, sq_norm, 1.0)
  return reversed_g - radial * x, jnp.zeros_like(scale)


norm_preserving_reversal.defvjp(_norm_preserving_forward, _norm_preserving_backward)


def dann_lambda(progress, weight: float = 1.0):
  """DANN's weight ``weight * (2 / (1 + exp(-10 p)) - 1)`` at progress ``p``, clipped to [0, 1]."""
  p = jnp.clip(jnp.asarray(progress, jnp.float32), 0.0, 1.0)
  return weight * (2.0 / (1.0 + jnp.exp(-DANN_GAMMA * p)) - 1.0)


def uniform_targets(spec: heads_lib.HeadSpec, batch_size: int):
  """Targets of the confusion loss: the uniform distribution over the head's classes.

  Softmax heads take soft targets 1/K per class; sigmoid heads 0.5 per unit (a one-unit head's
  two classes, or each one-vs-rest unit of a K-unit head).
  """
  if spec.kind in ("multiclass", "binned"):
    return jnp.full((batch_size, spec.num_outputs), 1.0 / spec.num_outputs, jnp.float32)
  if spec.kind == "binary":
    shape = (batch_size,) if spec.num_outputs == 1 else (batch_size, spec.num_outputs)
    return jnp.full(shape, 0.5, jnp.float32)
  raise ValueError(f"head {spec.name!r} of kind {spec.kind!r} predicts no classes to confuse")


def confusion_loss_terms(spec: heads_lib.HeadSpec, output, mask=None):
  """``(total, count)`` of the cross-entropy of the head's ``output`` against the uniform distribution."""
  return heads_lib.loss_terms(spec, output, uniform_targets(spec, output.shape[0]), mask=mask)


class HeadsOnly(nn.Module):
  """Heads on a given representation: the layers and names ``heads.head_outputs`` builds in a model,
  so a model's own head can be applied alone with the model's parameters for it, and an adversary
  head is declared like any head."""

  specs: tuple[heads_lib.HeadSpec, ...]

  @nn.compact
  def __call__(self, x, train: bool = False):
    return heads_lib.head_outputs(self.specs, x, train)


def head_param_names(spec: heads_lib.HeadSpec) -> tuple[str, ...]:
  """The names of a head's layers at the top of its model's parameters, as ``heads.head_outputs``
  creates them: its hidden layers, then its output layer."""
  return tuple(f"{spec.name}_fc{i + 1}" for i in range(len(spec.hidden))) + (spec.name,)


class _Unlearning(objectives.Term):
  """What gradient reversal and JLU share: protected heads and the adversary's parameters."""

  def __init__(self, model, attributes: Sequence[str], hidden: Sequence[int]):
    attributes = tuple(attributes)
    unknown = [a for a in attributes if a not in groups.ATTRIBUTES]
    if not attributes or unknown:
      raise ValueError(f"attributes must name protected attributes among {sorted(groups.ATTRIBUTES)}, "
                       f"got {attributes}")
    self.model = model
    self.attributes = attributes
    own = {spec.key: spec for spec in model.heads}
    # attribute -> (head spec, whether it is the model's own head)
    self.protected = {}
    for attribute in attributes:
      if attribute in own:
        self.protected[attribute] = (own[attribute], True)
      else:
        spec = heads_lib.HeadSpec(attribute, "multiclass", num_outputs=len(groups.ATTRIBUTES[attribute]),
                                  label_key=attribute, hidden=tuple(hidden))
        self.protected[attribute] = (spec, False)
    for spec, _ in self.protected.values():
      uniform_targets(spec, 1)  # a head that predicts no classes cannot be confused: fail at construction
    # The model's heads for a protected attribute train here, never in the task loss.
    self.protected_heads = tuple(spec.name for spec in model.heads if spec.key in attributes)
    if len(self.protected_heads) == len(model.heads):
      raise ValueError(f"every head of the model predicts a protected attribute {attributes}; "
                       "no task is left")
    self.adversary_specs = tuple(spec for spec, own_head in self.protected.values() if not own_head)

  def init_params(self, rng, model_params) -> dict:
    """``{'adversary': ...}``: the adversary heads' parameters, sized to the model's embedding."""
    del model_params
    if not self.adversary_specs:
      return {}
    abstract = model_registry.abstract_variables(self.model)
    outputs = jax.eval_shape(lambda v: self.model.apply(v, model_registry.dummy_input(self.model)), abstract)
    width = outputs["embedding"].shape[-1]
    variables = HeadsOnly(self.adversary_specs).init(rng, jnp.zeros((1, width), jnp.float32))
    return {ADVERSARY: variables["params"]}

  def head_params(self, params, attribute: str) -> dict:
    """The protected head's parameters: the model's own layers, or the adversary's."""
    spec, own_head = self.protected[attribute]
    source = params["model"] if own_head else params[ADVERSARY]
    return {name: source[name] for name in head_param_names(spec)}

  def apply_head(self, attribute: str, head_params, embedding, rng):
    spec, _ = self.protected[attribute]
    return HeadsOnly((spec,)).apply({"params": head_params}, embedding, train=True,
                                    rngs={"dropout": rng})[spec.name]

  def attribute_loss(self, attribute, output, batch, axis_name):
    """The protected head's cross-entropy on the attribute over the global batch, and its accuracy."""
    spec, _ = self.protected[attribute]
    labels = jnp.asarray(batch[attribute])
    total, count = heads_lib.loss_terms(spec, output, labels, mask=batch.get("mask"))
    known = labels >= 0
    if "mask" in batch:
      known = known & jnp.asarray(batch["mask"], bool)
    correct = (heads_lib.predict(spec, output)["label"] == labels) & known
    accuracy = lax.psum(correct.sum(), axis_name) / jnp.maximum(lax.psum(known.sum(), axis_name), 1)
    return collectives.global_mean(total, count, axis_name), accuracy


@objectives.register_term("grl")
class GradientReversal(_Unlearning):
  """Task loss + protected heads' cross-entropy through a gradient-reversal layer.

  Options:
    attributes: protected attributes ('race', 'gender'), one head each.
    hidden: widths of an adversary head's hidden ReLU layers (model heads keep their own).
    weight: the largest reversal weight lambda.
    schedule: 'dann' (lambda ramps from 0 to ``weight`` over ``ramp_steps``) or 'constant' (``weight``).
    ramp_steps: the DANN ramp's horizon in steps, p = step / ramp_steps; 0 means the whole run, which
      the training loop supplies through ``set_total_steps`` before it builds the step.
    keep_norm: reverse through ``norm_preserving_reversal`` (the reversed gradient never scales an
      embedding up) instead of the plain layer.
  """

  def __init__(self, model, attributes: Sequence[str] = ("race",), hidden: Sequence[int] = (64,),
               weight: float = 1.0, schedule: str = "dann", ramp_steps: int = 0, keep_norm: bool = False):
    super().__init__(model, attributes, hidden)
    self.keep_norm = bool(keep_norm)
    if schedule not in SCHEDULES:
      raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if weight < 0 or ramp_steps < 0:
      raise ValueError(f"weight and ramp_steps must be >= 0, got {weight} and {ramp_steps}")
    self.weight, self.schedule, self.ramp_steps = float(weight), schedule, int(ramp_steps)

  def set_total_steps(self, total_steps: int) -> None:
    """The run's length: the ramp's horizon unless ``ramp_steps`` was configured."""
    if not self.ramp_steps:
      self.ramp_steps = int(total_steps)

  def reversal_weight(self, step):
    """lambda at (0-based) ``step``."""
    if self.schedule == "constant":
      return jnp.float32(self.weight)
    if not self.ramp_steps:
      raise ValueError("the 'dann' schedule needs ramp_steps, or the run's length through set_total_steps")
    return dann_lambda(step / self.ramp_steps, self.weight)

  def value(self, inputs):
    params, batch, axis_name = inputs.params, inputs.batch, inputs.axis_name
    scale = self.reversal_weight(inputs.step)
    reversal = norm_preserving_reversal if self.keep_norm else gradient_reversal
    reversed_embedding = reversal(inputs.outputs["embedding"], scale)
    total, metrics = 0.0, {}
    for i, attribute in enumerate(self.attributes):
      output = self.apply_head(attribute, self.head_params(params, attribute), reversed_embedding,
                               jax.random.fold_in(inputs.rng, i))
      attribute_loss, accuracy = self.attribute_loss(attribute, output, batch, axis_name)
      total = total + attribute_loss
      metrics[f"adversary/{attribute}_loss"] = lax.pmean(lax.stop_gradient(attribute_loss), axis_name)
      metrics[f"adversary/{attribute}_accuracy"] = accuracy
    metrics["grl_lambda"] = scale
    return total, inputs.state, metrics


@objectives.register_term("jlu")
class JointLearningUnlearning(_Unlearning):
  """Seed 004's JLU: (a) protected heads on frozen features, (b) task + alpha * confusion, one step.

  Options:
    attributes: protected attributes; seed 004 unlearns ('gender',) from its age model.
    alpha: weight of the confusion loss (seed 004: 0, 0.4 and 1 for M1, M3 and M2).
    hidden: widths of an adversary head's hidden ReLU layers; () is a softmax on the embedding, as
      seed 004's theta_gen.
  """

  def __init__(self, model, attributes: Sequence[str] = ("race",), alpha: float = 1.0,
               hidden: Sequence[int] = ()):
    super().__init__(model, attributes, hidden)
    if alpha < 0:
      raise ValueError(f"alpha must be >= 0, got {alpha}")
    self.alpha = float(alpha)

  def value(self, inputs):
    params, batch, axis_name = inputs.params, inputs.batch, inputs.axis_name
    embedding = inputs.outputs["embedding"]
    total, metrics = 0.0, {}
    for i, attribute in enumerate(self.attributes):
      spec, _ = self.protected[attribute]
      head_params = self.head_params(params, attribute)
      key = jax.random.fold_in(inputs.rng, i)
      # (b): the trunk makes the frozen head's posterior uniform.
      confused = self.apply_head(attribute, lax.stop_gradient(head_params), embedding, key)
      confusion = collectives.global_mean(*confusion_loss_terms(spec, confused, batch.get("mask")), axis_name)
      # (a): the head learns the attribute from frozen features.
      learned = self.apply_head(attribute, head_params, lax.stop_gradient(embedding), key)
      attribute_loss, accuracy = self.attribute_loss(attribute, learned, batch, axis_name)
      total = total + self.alpha * confusion + attribute_loss
      metrics[f"unlearn/{attribute}_loss"] = lax.pmean(lax.stop_gradient(attribute_loss), axis_name)
      metrics[f"unlearn/{attribute}_confusion"] = lax.pmean(lax.stop_gradient(confusion), axis_name)
      metrics[f"unlearn/{attribute}_accuracy"] = accuracy
    return total, inputs.state, metrics
