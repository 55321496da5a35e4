"""Objective terms that weigh the task loss's rows by group: group-balanced and Kamiran-Calders weights,
and group DRO's weights that follow the worst group.

Three mitigations as terms, so that they combine with the others (balanced weights under constraints,
say) by listing them in ``objective.terms``:

  balanced_weights  every group of ``grouping`` weighs the same in the task loss: a row of group g counts
                    N / (G n_g) (``data.reweighing.balance``). On the default task (seed 0) the oracle
                    threshold frontier at an equalized-odds gap of 0.05 rises from 0.903 to 0.918.
  reweighing        Kamiran & Calders' w(g, y) = P(g) P(y) / P(g, y) for the label of a classifying head
                    against ``grouping`` (``data.reweighing.reweigh``, the treatment ``reweigh`` as a term).
  group_dro         Sagawa et al. 2020's online group DRO: the balanced weights times G q_g, where the
                    group distribution q follows the groups' losses by exponentiated gradient ascent, so
                    the loss minimised tends to the worst group's. It includes the balancing: do not list
                    ``balanced_weights`` beside it.
                    On the default task (seeds 0-2) it ends with half of q on the scarce race and, with
                    validation-fitted thresholds, no better than balanced weights (0.898 against 0.901).

The weights are computed once from the training split's plan as the run trains on it (after every
treatment), which the loop hands over through ``set_training_rows``: exact frequencies, not estimates
from the batches seen so far, and the same on every process and after a resume. In the step a row's
weight is looked up by its (group, label) cell and multiplies the batch's ``weight`` column (a
treatment's weights); rows of an unknown group or label keep their weight. The terms add nothing to the
loss themselves (their value is 0).

Group DRO's q is the term's state, kept as normalised log q (replicated, checkpointed, resumed; in
logs a group's weight never underflows to a zero it could not leave): each step's task rows are weighed
by the q that the steps before it left, and the step's own group losses (of ``head``, summed over the
global batch, without gradient) then update it, ``q <- softmax(log q + step_size * loss_g)`` over the
groups present in the batch. Sagawa et al. update q before weighing the same batch; the one-step lag here
keeps every row's weight a function of the state alone, as the other weight terms'. q starts uniform, so
with ``step_size`` 0 the term is ``balanced_weights``.
"""

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from fairjax.data import groups
from fairjax.data import plans
from fairjax.data import reweighing
from fairjax.models import heads as heads_lib
from fairjax.train import constrained
from fairjax.train import objectives


class _CellWeights(objectives.Term):
  """A factor per (group, label) cell of the training plan, multiplying the task rows' weights."""

  def __init__(self, grouping: str, label: Optional[str]):
    if grouping not in groups.GROUPINGS:
      raise ValueError(f"unknown grouping {grouping!r}; known: {sorted(groups.GROUPINGS)}")
    self.grouping, self.label = grouping, label
    self.table = None  # [groups, label classes] factors, set from the training plan

  def row_weights(self, plan) -> np.ndarray:
    """The factor of every row of ``plan``."""
    raise NotImplementedError

  def set_training_rows(self, plan) -> None:
    factors = self.row_weights(plan)
    columns = {a: plan[a].to_numpy() for a in groups.GROUPINGS[self.grouping]}
    codes = np.asarray(groups.group_codes(columns, self.grouping))
    labels = plan[self.label].to_numpy().astype(np.int64) if self.label else np.zeros(len(plan), np.int64)
    known = (codes >= 0) & (labels >= 0)
    table = np.ones((groups.num_groups(self.grouping), max(int(labels.max(initial=0)) + 1, 1)), np.float64)
    sums = np.zeros_like(table)
    counts = np.zeros_like(table)
    np.add.at(sums, (codes[known], labels[known]), factors[known])
    np.add.at(counts, (codes[known], labels[known]), 1.0)
    table = np.where(counts > 0, sums / np.maximum(counts, 1.0), table)  # one value per cell: its mean
    self.table = jnp.asarray(table, jnp.float32)

  def task_rows(self, batch, state):
    del state
    if self.table is None:
      raise ValueError(f"{type(self).__name__} needs the training rows (set_training_rows) before the step "
                       "is built")
    codes = groups.group_codes(batch, self.grouping)
    labels = jnp.asarray(batch[self.label]).astype(jnp.int32) if self.label else jnp.zeros_like(codes)
    rows, classes = self.table.shape
    known = (codes >= 0) & (codes < rows) & (labels >= 0) & (labels < classes)
    factor = jnp.where(known, self.table[jnp.clip(codes, 0, rows - 1), jnp.clip(labels, 0, classes - 1)], 1.0)
    weight = jnp.asarray(batch["weight"], jnp.float32) if "weight" in batch else jnp.ones_like(factor)
    return {**batch, "weight": weight * factor}

  def value(self, inputs):
    return jnp.zeros((), jnp.float32), inputs.state, {}


@objectives.register_term("balanced_weights")
class BalancedWeights(_CellWeights):
  """Every group of ``grouping`` ('race', 'gender', 'race_x_gender') weighs the same in the task loss."""

  def __init__(self, model, grouping: str = "race"):
    del model
    super().__init__(grouping, label=None)

  def row_weights(self, plan):
    return reweighing.balance(plan, groups.GROUPINGS[self.grouping])


@objectives.register_term("reweighing")
class Reweighing(_CellWeights):
  """Kamiran-Calders weights of ``head``'s label (default: the model's classifying head) against
  ``grouping``."""

  def __init__(self, model, grouping: str = "race", head: Optional[str] = None):
    spec = constrained.classifier_head(model, head)
    super().__init__(grouping, label=spec.key)

  def row_weights(self, plan):
    plain = plan.drop(columns=[plans.WEIGHT], errors="ignore")  # on the rows as they are; the factor multiplies
    return reweighing.reweigh(plain, groups.GROUPINGS[self.grouping], self.label)[plans.WEIGHT].to_numpy()


@objectives.register_term("group_dro")
class GroupDRO(BalancedWeights):
  """Online group DRO (Sagawa et al. 2020) over the groups of ``grouping``, on the loss of ``head``
  (default: the model's classifying head); see the module docstring."""

  def __init__(self, model, grouping: str = "race", head: Optional[str] = None, step_size: float = 0.01):
    if not step_size >= 0:
      raise ValueError(f"group_dro: step_size must be a number >= 0, got {step_size!r}")
    super().__init__(model, grouping)  # the balanced weights, which q multiplies
    self.spec = constrained.classifier_head(model, head)
    self.step_size = float(step_size)
    self.num_groups = groups.num_groups(grouping)

  def init_state(self):
    return {"log_q": jnp.full((self.num_groups,), -np.log(self.num_groups), jnp.float32)}

  def task_rows(self, batch, state):
    rows = super().task_rows(batch, state)  # the balanced weights
    codes = groups.group_codes(batch, self.grouping)
    known = (codes >= 0) & (codes < self.num_groups)
    q = jax.nn.softmax(state["log_q"])
    factor = jnp.where(known, self.num_groups * q[jnp.clip(codes, 0, self.num_groups - 1)], 1.0)
    return {**rows, "weight": rows["weight"] * factor}

  def statistics(self, inputs):
    labels = jnp.asarray(inputs.batch[self.spec.key])
    loss = heads_lib.per_example_loss(self.spec, inputs.outputs[self.spec.name], labels)
    codes = groups.group_codes(inputs.batch, self.grouping)
    known = (codes >= 0) & heads_lib.known_labels(labels).reshape(codes.shape[0], -1).all(-1)
    if "mask" in inputs.batch:
      known = known & jnp.asarray(inputs.batch["mask"]).reshape(known.shape).astype(bool)
    member = jax.nn.one_hot(jnp.where(known, codes, -1), self.num_groups, dtype=jnp.float32)  # -1: no row
    return objectives.Statistics(exact={"loss": member.T @ jnp.where(known, loss, 0.0).astype(jnp.float32),
                                        "count": member.sum(0)})

  def value(self, inputs):
    total, count = inputs.statistics.exact["loss"], inputs.statistics.exact["count"]
    present = count > 0
    group_loss = jnp.where(present, total / jnp.maximum(count, 1.0), 0.0)
    log_q = jax.nn.log_softmax(inputs.state["log_q"] + jnp.where(present, self.step_size * group_loss, 0.0))
    worst = jnp.max(jnp.where(present, group_loss, -jnp.inf))
    metrics = {"dro/q_max": jnp.exp(jnp.max(log_q)), "dro/worst_group_loss": worst}
    return jnp.zeros((), jnp.float32), {"log_q": log_q}, metrics
