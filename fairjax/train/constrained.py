r"""Fairness-constrained objective terms: a Lagrangian game on group rates, and the penalties it is compared to.

Seed 000 §8.2 keeps the equalized-odds gap of its fine-tuned CLIP below 10 % by *selecting* checkpoints;
these terms put the gap into training itself (seed 000 §5's second class of mitigation). Three are
registered (``objectives.register_term``), each on one classifying head of the model and one or several
groupings of the batch (``groups.GROUPINGS``: 'race', 'gender', 'race_x_gender'), and each adds its term
to the task's loss (``standard``'s, or CLIP's contrastive loss), beside any other terms (example weights
from ``balanced_weights``, ``reweighing`` or the ``reweigh`` treatment still apply to the task loss):

  constrained   rate constraints  rate_g - rate_h <= epsilon  for every ordered pair of groups (g, h),
                every rate of the constraint and every class, solved as a Lagrangian game in the train
                step: the model descends on  loss + sum_k lambda_k * (surrogate gap_k - epsilon),  the
                multipliers ascend on the true (0-1) gaps,
                lambda_k <- clip(lambda_k + multiplier_lr * (gap_k - epsilon), 0, multiplier_max).
                This is TFCO's proxy-Lagrangian with additive multiplier updates (Cotter et al. 2019):
                the 0-1 rates have no gradient, so the model plays on sigmoid surrogates, while the
                multipliers answer the constraints as they are actually measured. The ascent takes the
                signed violation, not its positive part, so that the noise of a small group's rates
                averages out over steps instead of adding up; a met constraint walks its multiplier
                back to 0. See "Rates" for the three options that decide what the game sees.
  gap_penalty   loss + weight * sum over groupings, rates and classes of the surrogate gap
                (largest minus smallest group rate): the fixed-weight penalty, with no epsilon.
  mindiff       loss + weight * sum of MMD^2 between the score distribution of each group and that of
                the other groups (MinDiff, Prost et al. 2019), Gaussian kernel, within each label slice
                the constraint conditions on.

Constraints. 'equalized_odds' constrains TPR and FPR, 'equal_opportunity' TPR, 'demographic_parity' the
selection rate. The gap is pairwise, max - min over the groups, so that "every constraint holds" is the
audited figure (``disparity.difference``, fairlearn's between_groups) being at most epsilon; comparing
each group with the overall rate instead would allow a max - min of 2 epsilon. A head with two classes
(one sigmoid unit, or two outputs) is constrained at class 1, the rate the audit reports (class 0's rates
are determined by class 1's); a head of C > 2 classes (multiclass, binned) one-vs-rest at every class.
Several groupings are constrained at once, each with its own multipliers.

Rates. For group g and class c: TPR = TP / positives, FPR = FP / negatives, selection rate = predicted /
examples. The 0-1 prediction of class c is the decoded one (logit > 0 for a sigmoid unit, argmax
otherwise); its surrogate is sigmoid(logit / temperature) or the softmax of logits / temperature at c.
Rows with a padding mask, an unknown label or an unknown attribute count in no group; the counts are not
weighted by the ``weight`` column (the constraints are about the data as it is). A pair with a group
whose rate is undefined (no positives, say) is inactive: no term, and its multiplier stays where it is.

What the game sees is set by three options, all measured on the default task (``configs/
default_constrained.py``), where the constrained group is 5 % of training, about 3 rows of a batch of 64:

  rate_decay     0: each batch's counts alone. d > 0: the 0-1 counts are averaged over steps with decay
                 d (bias-corrected as Adam's moments, so they are the mean counts per batch from the
                 first step on; 0.99 pools about 100 batches, some 300 rows of that group), and the
                 multipliers ascend on the rates of the pooled counts. The surrogate rates divide this
                 batch's soft counts by the pooled denominators: linear in the batch's rows, their
                 gradient is an unbiased estimate of the pooled rates' gradient, where a batch's own
                 denominator (one positive of the group, say) gives one row the weight of a whole rate.
  deterministic_rates
                 measure the rates on the constrained head applied again to the embedding, i.e. on the
                 deployed model's outputs where the model's only randomness is the dropout in front of
                 its heads (every KerasCNN), not on the training forward pass's dropped-out outputs.
                 ``gap_penalty`` and ``mindiff`` take this option too.
  push           'both' (the Lagrangian's own gradient) moves both rates of a violated gap: it lowers
                 the better-served group's TPR and raises its FPR as readily as it helps the other, and
                 that is the cheaper way for a model that cannot yet tell the harder group's faces apart.
                 'worse_group' differentiates only the disfavoured group's rate (its TPR up, its FPR down,
                 the other group's rate a constant): the same constraints and multipliers, but the model
                 is only ever asked to serve the worse-served group better (``surrogate_gaps``).

Devices. Every count is a sum over the global batch: the surrogate counts through
``collectives.global_sum`` (value summed, gradient local; see its docstring), the 0-1 counts and the
denominators through ``lax.psum``. So the multipliers are computed from the same numbers on every device
and stay identical, and the step is the same function of the global batch under pmap, shard_map and one
device. MMD compares every pair of examples, across devices too: ``mindiff`` gathers the batch's scores
with ``lax.all_gather`` and reinserts this device's own rows with their gradient (``gather_rows``), so
the value is the global MMD on every device and each device differentiates it through its own rows only,
the same rule as ``global_sum``. Every device builds the (global batch)^2 kernel matrix per class,
which is small beside a CNN's step for the batches these tasks use (64 to a few thousand); random
Fourier features would make it linear in the batch, but only approximately, and would pay off only
for far larger global batches.

State. ``constrained`` keeps ``multipliers`` ``{grouping: float32 [R, G, G, C]}``: R rates of the
constraint (tpr, fpr | tpr | selection_rate), lambda[r, g, h, c] the multiplier of
rate_r[g, c] - rate_r[h, c] <= epsilon (zero on the diagonal), C constrained classes; ``counts``
``{grouping: {count [G], positives, predicted, true_positives [G, C]}}``, the decayed sums of the 0-1
counts; and ``count_weight``, their total weight 1 - decay^t. The penalties keep no state. Metrics, per
grouping: ``fairness/<grouping>/gap`` (the 0-1 max - min the multipliers answer, pooled for
``constrained``, the largest over rates and classes) and, for ``constrained``,
``fairness/<grouping>/multiplier_max`` and ``fairness/<grouping>/multiplier_sum``; ``mindiff`` logs
``fairness/<grouping>/mmd2`` instead of the gap; ``term/<name>`` is what the term added to the loss.
"""

from typing import Optional, Sequence

import jax
from jax import lax
import jax.numpy as jnp

from fairjax.data import groups
from fairjax.models import heads as heads_lib
from fairjax.train import adversarial
from fairjax.train import evaluate
from fairjax.train import objectives

Array = jax.Array

CONSTRAINTS = {
    "equalized_odds": ("tpr", "fpr"),
    "equal_opportunity": ("tpr",),
    "demographic_parity": ("selection_rate",),
}
# Which way each rate is better for the group it describes (the selection rate has no better way).
_BETTER = {"tpr": "higher", "fpr": "lower", "selection_rate": None}
PUSHES = ("both", "worse_group")
# The label slices MinDiff compares score distributions within, per constraint: examples of the class
# (TPR), examples not of it (FPR), all examples (selection rate).
_SLICES = {"tpr": "positives", "fpr": "negatives", "selection_rate": "all"}


def _constrainable(spec: heads_lib.HeadSpec) -> bool:
  """Whether the rates of ``head_predictions`` describe the head: a classifier whose logits are its
  classes' (not a multi-label head read through ``class_groups``, whose labels are multi-hot)."""
  return evaluate.is_classifier(spec) and not spec.class_groups


def classifier_head(model, head: Optional[str]) -> heads_lib.HeadSpec:
  """The named classifying head of ``model``, or its only one when ``head`` is None."""
  specs = [s for s in model.heads if _constrainable(s)]
  if head is None:
    if len(specs) != 1:
      raise ValueError(f"the model has {len(specs)} classifying heads ({[s.name for s in specs]}); "
                       "name the constrained one with the option head=")
    return specs[0]
  for spec in model.heads:
    if spec.name == head:
      if not _constrainable(spec):
        raise ValueError(f"head {head!r} is a {spec.kind} head; rate constraints need a classifier "
                         "(binary, multiclass or binned)")
      return spec
  raise ValueError(f"the model has no head {head!r}; heads: {[s.name for s in model.heads]}")


def constrained_classes(spec: heads_lib.HeadSpec) -> int:
  """How many classes are constrained: 1 (class 1) for a two-class head, every class otherwise."""
  classes = evaluate.num_classes(spec)
  return 1 if classes == 2 else classes


def head_predictions(spec: heads_lib.HeadSpec, output: Array, labels: Array,
                     temperature: float) -> tuple[Array, Array, Array, Array]:
  """``(labels, hard, soft, known)`` of the constrained classes, each ``[B, C]`` but ``known`` ``[B]``.

  ``labels`` and ``hard`` are 0/1 (one-vs-rest membership of the true and the decoded class), ``soft`` the
  surrogate of ``hard`` in (0, 1); ``known`` is False where the label is unknown (below 0).
  """
  labels = jnp.asarray(labels)
  if spec.num_outputs > 1 and labels.ndim == output.ndim:
    raise ValueError(f"head {spec.name!r}: rate constraints need class labels, not soft targets")
  known = labels >= 0
  classes = evaluate.num_classes(spec)
  if spec.kind == "binary" and spec.num_outputs == 1:
    y = (labels == 1)[:, None]
    hard = (output > 0)[:, None]
    soft = jax.nn.sigmoid(output / temperature)[:, None]
  else:
    index = heads_lib.bin_index(spec, labels) if spec.kind == "binned" else labels
    y = jax.nn.one_hot(index, classes) > 0
    hard = jax.nn.one_hot(jnp.argmax(output, -1), classes) > 0
    soft = jax.nn.softmax(output / temperature, axis=-1)
    if classes == 2:
      y, hard, soft = y[:, 1:], hard[:, 1:], soft[:, 1:]
  return y.astype(jnp.float32), lax.stop_gradient(hard.astype(jnp.float32)), soft, known


def members(batch, grouping: str, valid: Array) -> Array:
  """``[B, G]`` 0/1 membership of each valid row in its group of ``grouping``."""
  if grouping not in groups.GROUPINGS:
    raise ValueError(f"unknown grouping {grouping!r}; known: {sorted(groups.GROUPINGS)}")
  codes = groups.group_codes(batch, grouping)
  return jax.nn.one_hot(codes, num_groups(grouping)) * valid[:, None].astype(jnp.float32)


def num_groups(grouping: str) -> int:
  return len(groups.group_keys(grouping))


def group_counts(member: Array, labels: Array, predictions: Array) -> dict[str, Array]:
  """Per-group sums: ``count`` [G], and ``positives``, ``predicted``, ``true_positives`` [G, C]."""
  return {"count": member.sum(0), "positives": member.T @ labels, "predicted": member.T @ predictions,
          "true_positives": member.T @ (labels * predictions)}


def _ratio(numerator: Array, denominator: Array) -> Array:
  defined = denominator > 0
  return jnp.where(defined, numerator / jnp.where(defined, denominator, 1.0), 0.0)


def group_rates(counts: dict[str, Array], names: Sequence[str]) -> tuple[Array, Array]:
  """``(rates, defined)``, both ``[R, G, C]``: the named rates of every group and class, and where each
  has a non-zero denominator (an undefined rate is 0 in ``rates``)."""
  count = jnp.broadcast_to(counts["count"][:, None], counts["positives"].shape)
  negatives = count - counts["positives"]
  false_positives = counts["predicted"] - counts["true_positives"]
  table = {"tpr": (counts["true_positives"], counts["positives"]),
           "fpr": (false_positives, negatives),
           "selection_rate": (counts["predicted"], count)}
  rates = jnp.stack([_ratio(*table[name]) for name in names])
  defined = jnp.stack([table[name][1] > 0 for name in names])
  return rates, defined


def pairwise_gaps(rates: Array, defined: Array) -> tuple[Array, Array]:
  """``(gaps, active)``, both ``[R, G, G, C]``: rate[g] - rate[h] for every ordered pair of distinct
  groups, and whether both rates are defined."""
  gaps = rates[:, :, None, :] - rates[:, None, :, :]
  distinct = ~jnp.eye(rates.shape[1], dtype=bool)[None, :, :, None]
  return gaps, defined[:, :, None, :] & defined[:, None, :, :] & distinct


def surrogate_gaps(rates: Array, names: Sequence[str], push: str) -> Array:
  """``pairwise_gaps``' values of the surrogate ``rates`` [R, G, C], with the gradient ``push`` asks for.

  'both': each gap rate[g] - rate[h] moves both groups' rates. 'worse_group': only the rate of the
  group the gap disfavours moves, the other enters as a constant: in TPR[g] - TPR[h] <= eps the
  gradient raises h's TPR and never lowers g's, in FPR[g] - FPR[h] <= eps it lowers g's FPR and never
  raises h's, so the model cannot meet a constraint by serving the better-served group worse. The
  selection rate has no better direction and keeps both.
  """
  if push not in PUSHES:
    raise ValueError(f"push must be one of {PUSHES}, got {push!r}")
  first = second = rates
  if push == "worse_group":
    fixed = lax.stop_gradient(rates)
    first = jnp.stack([fixed[i] if _BETTER[n] == "higher" else rates[i] for i, n in enumerate(names)])
    second = jnp.stack([fixed[i] if _BETTER[n] == "lower" else rates[i] for i, n in enumerate(names)])
  return first[:, :, None, :] - second[:, None, :, :]


def constraint_rows(index: Array, fraction: float) -> Array:
  """Whether each row (by its data set ``index``) is held out for the constraints: a fixed ``fraction``
  of the rows, the same in every epoch and on every device (a multiplicative hash of the index)."""
  hashed = (jnp.asarray(index).astype(jnp.uint32) * jnp.uint32(2654435761)) >> 8
  return hashed < jnp.uint32(round(fraction * (1 << 24)))


def largest_gap(gaps: Array, active: Array) -> Array:
  """Max - min over the groups of each rate and class, ``[R, C]`` (0 with fewer than two groups)."""
  return jnp.max(jnp.where(active, gaps, 0.0), axis=(1, 2))


class _GroupRateTerm(objectives.Term):
  """A term on the rates of one head's predictions across groups."""

  def __init__(self, model, head: Optional[str] = None, attributes: Sequence[str] = ("race",),
               constraint: str = "equalized_odds", temperature: float = 1.0,
               deterministic_rates: bool = False):
    self.spec = classifier_head(model, head)
    self.deterministic_rates = bool(deterministic_rates)
    self.attributes = (attributes,) if isinstance(attributes, str) else tuple(attributes)
    if not self.attributes:
      raise ValueError("a fairness term needs at least one grouping in attributes=")
    for grouping in self.attributes:
      if grouping not in groups.GROUPINGS:
        raise ValueError(f"unknown grouping {grouping!r}; known: {sorted(groups.GROUPINGS)}")
    if constraint not in CONSTRAINTS:
      raise ValueError(f"unknown constraint {constraint!r}; known: {', '.join(CONSTRAINTS)}")
    if temperature <= 0:
      raise ValueError(f"temperature must be positive, got {temperature}")
    self.constraint, self.rate_names, self.temperature = constraint, CONSTRAINTS[constraint], temperature

  def predictions(self, inputs: objectives.TermInputs):
    """``head_predictions`` of the constrained head on the rate outputs, with ``known`` also requiring
    the padding mask."""
    outputs = self.rate_outputs(inputs.model_params, inputs.outputs)
    batch = inputs.batch
    y, hard, soft, known = head_predictions(self.spec, outputs[self.spec.name], batch[self.spec.key],
                                            self.temperature)
    if "mask" in batch:
      known &= jnp.asarray(batch["mask"]).astype(bool)
    return y, hard, soft, known

  def rate_outputs(self, model_params, outputs):
    """The outputs the rates are measured on: the training forward pass's, or with
    ``deterministic_rates`` the constrained head applied again to the embedding, which is the
    deployed model's output wherever the model's only randomness is dropout in front of its heads
    (``heads.head_outputs`` on the ``'embedding'``, as in every KerasCNN)."""
    if not self.deterministic_rates:
      return outputs
    head_params = {name: model_params[name] for name in adversarial.head_param_names(self.spec)}
    output = adversarial.HeadsOnly((self.spec,)).apply({"params": head_params}, outputs["embedding"])
    return {**outputs, self.spec.name: output[self.spec.name]}


@objectives.register_term("constrained")
class Constrained(_GroupRateTerm):
  """Rate constraints solved as a proxy-Lagrangian game in the train step (see the module docstring).

  Options: head, attributes (groupings), constraint, epsilon (the largest allowed gap), multiplier_lr
  (ascent step of the multipliers per unit of violation), multiplier_max (their cap: bounds how far the
  game can trade the task loss for the constraints), temperature (of the sigmoid / softmax surrogates),
  rate_decay, deterministic_rates and push (see "Rates" in the module docstring), and
  constraint_holdout: a fixed share of the training rows (hashed from their index) whose 0-1 rates alone
  move the multipliers and which the task loss never sees, so that the multipliers answer rates of
  images the model is not fitting (Cotter et al. 2019); 0 uses every row for both. Group-balanced task
  weights, which this term once took as ``balance_groups``, are the ``balanced_weights`` term.
  """

  def __init__(self, model, head: Optional[str] = None, attributes: Sequence[str] = ("race",),
               constraint: str = "equalized_odds", epsilon: float = 0.05, multiplier_lr: float = 0.01,
               multiplier_max: float = 10.0, temperature: float = 1.0, rate_decay: float = 0.0,
               deterministic_rates: bool = False, push: str = "both", constraint_holdout: float = 0.0):
    super().__init__(model, head, attributes, constraint, temperature, deterministic_rates)
    if not 0 <= epsilon < 1:
      raise ValueError(f"epsilon must lie in [0, 1), got {epsilon}")
    if multiplier_lr <= 0 or multiplier_max <= 0:
      raise ValueError(f"multiplier_lr and multiplier_max must be positive, got {multiplier_lr}, "
                       f"{multiplier_max}")
    if not 0 <= rate_decay < 1:
      raise ValueError(f"rate_decay must lie in [0, 1), got {rate_decay}")
    self.epsilon, self.multiplier_lr, self.multiplier_max = epsilon, multiplier_lr, multiplier_max
    if push not in PUSHES:
      raise ValueError(f"push must be one of {PUSHES}, got {push!r}")
    if not 0 <= constraint_holdout < 1:
      raise ValueError(f"constraint_holdout must lie in [0, 1), got {constraint_holdout}")
    self.rate_decay, self.push, self.holdout = float(rate_decay), push, float(constraint_holdout)

  def _held_out(self, batch) -> Array:
    if "index" not in batch:
      raise ValueError("constraint_holdout needs the batch's 'index' column (the input pipeline's row index)")
    return constraint_rows(batch["index"], self.holdout)

  def task_rows(self, batch, state):
    del state
    if not self.holdout:
      return batch
    mask = jnp.asarray(batch["mask"], bool) if "mask" in batch else jnp.ones(jnp.shape(batch["index"]), bool)
    return {**batch, "mask": mask & ~self._held_out(batch)}

  def init_state(self) -> dict:
    classes = constrained_classes(self.spec)
    shape = lambda g: (len(self.rate_names), num_groups(g), num_groups(g), classes)
    zero_counts = lambda g: {"count": jnp.zeros((num_groups(g),), jnp.float32),
                             **{k: jnp.zeros((num_groups(g), classes), jnp.float32)
                                for k in ("positives", "predicted", "true_positives")}}
    return {"multipliers": {g: jnp.zeros(shape(g), jnp.float32) for g in self.attributes},
            "counts": {g: zero_counts(g) for g in self.attributes},
            "count_weight": jnp.zeros((), jnp.float32)}

  def statistics(self, inputs):
    """This batch's 0-1 counts of the rows that move the multipliers, and the surrogate counts of the
    rows that train: with a held-out share the multipliers answer the rates of rows the model never
    trains on and the surrogate (and the task loss) take the others (Cotter et al. 2019's two data sets)."""
    y, hard, soft, valid = self.predictions(inputs)
    held = self._held_out(inputs.batch).astype(jnp.float32)[:, None] if self.holdout else None
    exact, differentiable = {}, {}
    for grouping in self.attributes:
      member = members(inputs.batch, grouping, valid)
      measured, trained = (member, member) if held is None else (member * held, member * (1.0 - held))
      exact[grouping] = group_counts(measured, y, hard)
      differentiable[grouping] = group_counts(trained, y, soft)
    return objectives.Statistics(exact, differentiable)

  def value(self, inputs):
    state, decay = inputs.state, self.rate_decay
    # Total weight of the moving averages (1 - decay^t after t steps): dividing by it makes them the
    # mean per-batch counts from the first step on, as Adam corrects its moments.
    weight = decay * state["count_weight"] + (1.0 - decay)
    term, multipliers, pooled_counts, metrics = 0.0, {}, {}, {}
    for grouping in self.attributes:
      pooled_counts[grouping] = jax.tree.map(lambda old, new: decay * old + (1.0 - decay) * new,
                                             state["counts"][grouping], inputs.statistics.exact[grouping])
      pooled = jax.tree.map(lambda c: c / weight, pooled_counts[grouping])
      gaps, active = pairwise_gaps(*group_rates(pooled, self.rate_names))
      # The surrogate rates: this batch's soft numerators over the pooled denominators. Linear in
      # the batch's rows, so their gradient is an unbiased estimate of the pooled rates' gradient.
      # Held-out rows stand for the trained ones in the denominators, scaled by their share.
      soft_counts = inputs.statistics.differentiable[grouping]
      share = (1.0 - self.holdout) / self.holdout if self.holdout else 1.0
      surrogate_rates, _ = group_rates(
          {"count": share * pooled["count"], "positives": share * pooled["positives"],
           "predicted": soft_counts["predicted"], "true_positives": soft_counts["true_positives"]},
          self.rate_names)
      surrogate = surrogate_gaps(surrogate_rates, self.rate_names, self.push)
      old = state["multipliers"][grouping]
      term += jnp.sum(jnp.where(active, old * (surrogate - self.epsilon), 0.0))
      ascended = jnp.clip(old + self.multiplier_lr * (gaps - self.epsilon), 0.0, self.multiplier_max)
      multipliers[grouping] = jnp.where(active, ascended, old)
      metrics[f"fairness/{grouping}/gap"] = jnp.max(largest_gap(gaps, active))
      metrics[f"fairness/{grouping}/multiplier_max"] = jnp.max(multipliers[grouping])
      metrics[f"fairness/{grouping}/multiplier_sum"] = jnp.sum(multipliers[grouping])
    new_state = {"multipliers": multipliers, "counts": pooled_counts, "count_weight": weight}
    return term, new_state, metrics


@objectives.register_term("gap_penalty")
class GapPenalty(_GroupRateTerm):
  """weight * the sum of the surrogate rates' max - min gaps: a fixed price on unfairness."""

  def __init__(self, model, head: Optional[str] = None, attributes: Sequence[str] = ("race",),
               constraint: str = "equalized_odds", weight: float = 1.0, temperature: float = 1.0,
               deterministic_rates: bool = False):
    super().__init__(model, head, attributes, constraint, temperature, deterministic_rates)
    if weight < 0:
      raise ValueError(f"weight must be non-negative, got {weight}")
    self.weight = weight

  def statistics(self, inputs):
    y, hard, soft, valid = self.predictions(inputs)
    member = {g: members(inputs.batch, g, valid) for g in self.attributes}
    return objectives.Statistics({g: group_counts(m, y, hard) for g, m in member.items()},
                                 {g: group_counts(m, y, soft) for g, m in member.items()})

  def value(self, inputs):
    term, metrics = 0.0, {}
    for grouping in self.attributes:
      surrogate, _ = pairwise_gaps(*group_rates(inputs.statistics.differentiable[grouping], self.rate_names))
      gaps, active = pairwise_gaps(*group_rates(inputs.statistics.exact[grouping], self.rate_names))
      term += self.weight * jnp.sum(largest_gap(surrogate, active))
      metrics[f"fairness/{grouping}/gap"] = jnp.max(largest_gap(gaps, active))
    return term, inputs.state, metrics


def gather_rows(x: Array, axis_name: str) -> Array:
  """Every device's rows of ``x``, in device order: all of them in value, this device's in gradient.

  The gathered copy carries no gradient; this device's rows are added back at their place as
  ``x - stop_gradient(x)`` (zero in value), so a function of the gathered rows differentiates through
  the local rows only, and the psum of the devices' gradients is its full gradient (``collectives``).
  """
  gathered = lax.all_gather(lax.stop_gradient(x), axis_name, tiled=True)
  offset = lax.axis_index(axis_name) * x.shape[0]
  return gathered + lax.dynamic_update_slice_in_dim(jnp.zeros_like(gathered), x - lax.stop_gradient(x),
                                                    offset, axis=0)


def mmd2(kernel: Array, a: Array, b: Array) -> Array:
  """Squared MMD between the weighted samples ``a`` and ``b`` ([N, S] weights of N points, S pairs of
  samples) under the kernel matrix ``kernel`` [N, N], as the V-statistic:
  E k(a, a') + E k(b, b') - 2 E k(a, b); ``[S]``, 0 where either sample is empty."""
  sa, sb = a.sum(0), b.sum(0)
  ok = (sa > 0) & (sb > 0)
  a = a / jnp.where(ok, sa, 1.0)
  b = b / jnp.where(ok, sb, 1.0)
  quad = lambda u, v: jnp.einsum("ns,nm,ms->s", u, kernel, v)
  return jnp.where(ok, quad(a, a) + quad(b, b) - 2 * quad(a, b), 0.0)


@objectives.register_term("mindiff")
class MinDiff(_GroupRateTerm):
  """weight * MMD^2 between each group's scores and the other groups' (see the module docstring).

  For every grouping, group g, constrained class c and label slice of the constraint (class c's
  positives for TPR, its negatives for FPR, everyone for the selection rate), the two samples are the
  class-c scores of the slice's members of g and of the slice's members of the other groups. The kernel
  is exp(-(s - s')^2 / (2 kernel_width^2)) on scores in [0, 1]; MinDiff's default width is 0.1.
  """

  def __init__(self, model, head: Optional[str] = None, attributes: Sequence[str] = ("race",),
               constraint: str = "equalized_odds", weight: float = 1.0, kernel_width: float = 0.1,
               temperature: float = 1.0, deterministic_rates: bool = False):
    super().__init__(model, head, attributes, constraint, temperature, deterministic_rates)
    if weight < 0 or kernel_width <= 0:
      raise ValueError(f"weight must be non-negative and kernel_width positive, got {weight}, {kernel_width}")
    self.weight, self.kernel_width = weight, kernel_width

  def value(self, inputs):
    axis_name, batch = inputs.axis_name, inputs.batch
    y, _, soft, valid = self.predictions(inputs)
    scores = gather_rows(soft, axis_name)  # [N, C]
    y = lax.all_gather(y, axis_name, tiled=True)
    kernel = jnp.exp(-jnp.square(scores.T[:, :, None] - scores.T[:, None, :]) / (2 * self.kernel_width**2))
    term, metrics = 0.0, {}
    for grouping in self.attributes:
      member = lax.all_gather(members(batch, grouping, valid), axis_name, tiled=True)  # [N, G]
      others = member.sum(1, keepdims=True) - member
      total = 0.0
      for name in self.rate_names:
        for c in range(y.shape[1]):
          slice_c = {"positives": y[:, c], "negatives": 1.0 - y[:, c], "all": jnp.ones_like(y[:, c])}
          in_slice = slice_c[_SLICES[name]][:, None]
          total += jnp.sum(mmd2(kernel[c], member * in_slice, others * in_slice))
      term += self.weight * total
      metrics[f"fairness/{grouping}/mmd2"] = lax.pmean(lax.stop_gradient(total), axis_name)
    return term, inputs.state, metrics
