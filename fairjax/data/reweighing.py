"""Reweighing (Kamiran & Calders 2012): example weights that make the label independent of the group.

A pre-processing mitigation (seed 000 §5, first class): the training set is left as it is, but each row
of cell (g, y) (group g, label y) counts in the loss with weight

    w(g, y) = P(g) P(y) / P(g, y),

the frequency the cell would have if label and group were independent, over the frequency it has. Under
these weights P_w(g, y) = P(g) P(y) exactly, the weights sum to the number of rows (so the loss keeps its
scale), and an over-represented cell (say, group 1's men) is weighed down while a rare one is weighed up.
Unlike rebalancing, no image is dropped or copied.

The group is the joint value of one or several sensitive attributes (``('race', 'gender')`` weighs each
race x gender cell); the label is any categorical plan column. The weights go into the plan's ``weight``
column (``plans.WEIGHT``), which the input pipeline puts into every batch and the ``standard`` objective
(and the mitigation objectives built on it) use as example weights. A plan that already carries weights
(a reweighing by another attribute, say) is reweighed on its weighted frequencies, and the new weights
multiply the old.

Rows whose label or group is unknown (-1) keep their weight: the loss masks unknown labels anyway. A cell
that is empty while its group and its label both occur cannot be given the frequency independence asks
for, so reweighing refuses it and names the empty cells. Run ``reweigh`` as the last treatment: one that
drops or copies rows afterwards keeps the rows' weights but changes the frequencies they were made for.
"""

from typing import Sequence

import numpy as np
import pandas as pd

from fairjax.data import plans


def reweigh(frame: pd.DataFrame, attributes: Sequence[str] = ("race",), label: str = "gender") -> pd.DataFrame:
  """The plan of ``frame`` with Kamiran-Calders weights for ``label`` against the group of ``attributes``.

  Raises:
    ValueError: if an attribute or the label is missing, nothing is known, or a (group, label) cell is
      empty while its group and its label occur.
  """
  attributes = tuple(attributes)
  if not attributes:
    raise ValueError("reweigh needs at least one sensitive attribute")
  if label in attributes:
    raise ValueError(f"reweigh: the label {label!r} cannot also be a sensitive attribute")
  plan = plans.nonempty(plans.as_plan(frame), "the input of reweigh")
  plans.require(plan, attributes + (label,), "reweigh")
  prior = plan[plans.WEIGHT].to_numpy(np.float64) if plans.WEIGHT in plan else np.ones(len(plan))
  columns = list(attributes) + [label]
  known = (plan[columns].to_numpy() >= 0).all(axis=1)
  if not known.any():
    raise ValueError(f"reweigh: no row has a known {', '.join(columns)}")
  groups, group_of = np.unique(plan.loc[known, list(attributes)].to_numpy(), axis=0, return_inverse=True)
  labels, label_of = np.unique(plan.loc[known, label].to_numpy(), return_inverse=True)
  group_of, label_of = group_of.ravel(), label_of.ravel()
  joint = np.zeros((len(groups), len(labels)))
  np.add.at(joint, (group_of, label_of), prior[known])
  joint /= joint.sum()
  independent = np.outer(joint.sum(1), joint.sum(0))
  empty = np.argwhere((joint == 0) & (independent > 0))
  if len(empty):
    names = "; ".join(", ".join(f"{a}={v}" for a, v in zip(columns, (*groups[g], labels[y])))
                      for g, y in empty)
    raise ValueError(f"reweigh: {len(empty)} (group, {label}) cell(s) are empty though their group and "
                     f"{label} occur, so no weights make them independent: {names}")
  factor = np.where(joint > 0, independent / np.where(joint > 0, joint, 1.0), 1.0)
  weights = prior.copy()
  weights[known] *= factor[group_of, label_of]
  plan[plans.WEIGHT] = weights
  return plan


def balance(frame: pd.DataFrame, attributes: Sequence[str] = ("race",)) -> np.ndarray:
  """Group-balanced example weights of ``frame``'s rows: N / (G n_g) for a row of group g (the joint value
  of ``attributes``) among G groups that occur, so that every group weighs the same in the loss and the
  weights sum to the number of rows with a known group. Rows whose group is unknown (-1) weigh 1, and the
  plan's own weights (a treatment's) are not included: the result multiplies them."""
  attributes = tuple(attributes)
  plan = plans.nonempty(plans.as_plan(frame), "the input of balance")
  plans.require(plan, attributes, "balance")
  values = plan[list(attributes)].to_numpy()
  known = (values >= 0).all(axis=1)
  weights = np.ones(len(plan))
  if not known.any():
    raise ValueError(f"balance: no row has a known {', '.join(attributes)}")
  _, group_of, sizes = np.unique(values[known], axis=0, return_inverse=True, return_counts=True)
  weights[known] = known.sum() / (len(sizes) * sizes[group_of.ravel()])
  return weights
