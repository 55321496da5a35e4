"""The groups every audit, objective and report is cut by: protected attributes and their groupings.

A grouping names the batch's protected attributes that it combines; ``race_x_gender`` is their
intersection, indexed by ``metrics.groups.intersect``'s mixed radix (race * 2 + gender). The evaluation,
the constrained and adversarial objectives, the leakage probes, the CLIP audit and the reports all read
groups from here, so a new attribute or grouping is added in one place. Codes and names are the
schema's (``schema.py``).
"""

import jax
import numpy as np
import pandas as pd

from fairjax.data import schema
from fairjax.metrics import groups as groups_lib

# Each protected attribute and the names of its values, in code order.
ATTRIBUTES = {"race": schema.RACES, "gender": schema.GENDERS}
GROUPINGS = {"race": ("race",), "gender": ("gender",), "race_x_gender": ("race", "gender")}
DEFAULT_GROUPINGS = ("race", "gender", "race_x_gender")
# Seed 000 §6.1.5 measures disparate impact with men as the privileged group; groupings not named
# here take the audit's default, the largest group.
DEFAULT_PRIVILEGED = {"gender": "male"}


def check_groupings(groupings) -> None:
  """Raises ``ValueError`` naming every grouping that is not one of ``GROUPINGS``."""
  unknown = [g for g in groupings if g not in GROUPINGS]
  if unknown:
    raise ValueError(f"unknown grouping(s) {unknown}; known: {sorted(GROUPINGS)}")


def num_groups(grouping: str) -> int:
  """How many groups ``grouping`` has (the product of its attributes' value counts)."""
  count = 1
  for attribute in GROUPINGS[grouping]:
    count *= len(ATTRIBUTES[attribute])
  return count


def group_keys(grouping: str) -> pd.DataFrame:
  """One row per group of ``grouping`` in index order, one column per attribute, schema names."""
  attributes = GROUPINGS[grouping]
  names = groups_lib.intersect_names([ATTRIBUTES[a] for a in attributes])
  return pd.DataFrame(names, columns=list(attributes))


def group_labels(grouping: str) -> list[str]:
  """Short name of every group, e.g. ``"Black, female"``: what ``privileged`` may name."""
  keys = group_keys(grouping)
  return [", ".join(row) for row in zip(*(keys[c].tolist() for c in keys.columns))]


def group_codes(batch, grouping: str) -> jax.Array:
  """Each row's group index under ``grouping``; -1 where one of its attributes is unknown."""
  attributes = GROUPINGS[grouping]
  return groups_lib.intersect([batch[a] for a in attributes], [len(ATTRIBUTES[a]) for a in attributes])


def group_counts(labels: pd.DataFrame, grouping: str) -> np.ndarray:
  """Rows of each group of ``grouping`` (``[num_groups]``) in a frame of labels (a plan or a split's
  metadata: one column per attribute); rows with an unknown attribute count nowhere. Reads labels only,
  no image, so a whole training plan is counted in milliseconds."""
  codes = np.asarray(group_codes({a: labels[a].to_numpy() for a in GROUPINGS[grouping]}, grouping))
  return np.bincount(codes[codes >= 0], minlength=num_groups(grouping))
