"""Reading and checking an audit's CSV: every problem becomes one clear sentence, before any work."""

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from fairjax.metrics import groups as groups_lib


class AuditInputError(ValueError):
  """The input cannot be audited; the message says why in one line."""


@dataclasses.dataclass
class AuditInput:
  """Encoded predictions: class indices, group indices, and the names to report them by."""

  y_true: np.ndarray          # [N] int32 class index
  y_pred: np.ndarray          # [N] int32 class index
  groups: np.ndarray          # [N] int32 group index
  group_keys: pd.DataFrame    # one row per group, one column per sensitive attribute
  class_names: list           # label value of each class index
  positive_class: int         # index of the positive label (binary tasks)
  scores: Optional[np.ndarray]  # [N] float32 score of the positive class, or None
  frame: pd.DataFrame         # the rows as read


def read_csv(path: str) -> pd.DataFrame:
  if not os.path.exists(path):
    raise AuditInputError(f"input file not found: {path}")
  if os.path.getsize(path) == 0:
    raise AuditInputError(f"input file is empty: {path}")
  try:
    frame = pd.read_csv(path)
  except pd.errors.EmptyDataError:
    raise AuditInputError(f"input file has no columns: {path}") from None
  except (pd.errors.ParserError, UnicodeDecodeError) as e:
    raise AuditInputError(f"input file is not a readable CSV ({path}): {str(e).splitlines()[0]}") from None
  if frame.empty:
    raise AuditInputError(f"input file has a header but no rows: {path}")
  return frame


def _numeric(frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
  values = pd.to_numeric(frame[column], errors="coerce")
  bad = values.isna() & frame[column].notna()
  if bad.any():
    row = int(np.flatnonzero(bad.to_numpy())[0])
    raise AuditInputError(
        f"{what} column {column!r} is not numeric: value {frame[column].iloc[row]!r} in data row {row + 1}")
  missing = values.isna()
  if missing.any():
    row = int(np.flatnonzero(missing.to_numpy())[0])
    raise AuditInputError(
        f"{what} column {column!r} has {int(missing.sum())} missing/NaN value(s), first in data row {row + 1}")
  values = values.to_numpy(np.float64)
  if not np.isfinite(values).all():
    row = int(np.flatnonzero(~np.isfinite(values))[0])
    raise AuditInputError(f"{what} column {column!r} has an infinite value in data row {row + 1}")
  return values


def encode(
    frame: pd.DataFrame,
    *,
    label_column: str,
    prediction_column: str,
    sensitive_columns: Sequence[str],
    score_column: Optional[str] = None,
    positive_label: float = 1,
) -> AuditInput:
  """Checks ``frame`` and encodes labels, predictions, scores and groups as arrays."""
  wanted = [label_column, prediction_column, *sensitive_columns] + ([score_column] if score_column else [])
  missing = [c for c in wanted if c not in frame.columns]
  if missing:
    raise AuditInputError(
        f"column(s) not in the input: {', '.join(missing)} (it has: {', '.join(map(str, frame.columns))})")
  if not sensitive_columns:
    raise AuditInputError("name at least one sensitive column")
  y = _numeric(frame, label_column, "label")
  y_hat = _numeric(frame, prediction_column, "prediction")
  for column, values in ((label_column, y), (prediction_column, y_hat)):
    if not np.all(values == np.round(values)):
      raise AuditInputError(f"column {column!r} holds non-integer values: labels must be class values")
  classes = sorted(set(np.unique(y)) | set(np.unique(y_hat)))
  if len(classes) <= 2:
    # A binary task: make sure the positive label is one of the two classes.
    if positive_label not in classes:
      if len(classes) == 2:
        raise AuditInputError(f"positive label {positive_label:g} is not among the labels {classes}")
      classes.append(positive_label)
    if len(classes) == 1:
      classes.append(1 - positive_label if positive_label in (0, 1) else np.nan)
      if np.isnan(classes[-1]):
        raise AuditInputError("labels and predictions hold a single class: nothing to audit")
    classes = sorted(classes)
  class_names = [int(c) for c in classes]
  lookup = {c: i for i, c in enumerate(classes)}
  scores = None
  if score_column:
    if len(classes) != 2:
      raise AuditInputError("a score column needs a binary task (two classes)")
    scores = _numeric(frame, score_column, "score").astype(np.float32)
  try:
    codes, keys = groups_lib.encode_columns(frame, sensitive_columns)
  except ValueError as e:
    raise AuditInputError(str(e)) from None
  return AuditInput(
      y_true=np.array([lookup[v] for v in y], np.int32),
      y_pred=np.array([lookup[v] for v in y_hat], np.int32),
      groups=codes,
      group_keys=keys,
      class_names=class_names,
      positive_class=lookup.get(positive_label, 1) if len(classes) == 2 else 0,
      scores=scores,
      frame=frame,
  )


def find_group(keys: pd.DataFrame, values: Sequence[str]) -> int:
  """Index of the group whose key values, as text, are ``values`` (one per sensitive column)."""
  if len(values) != keys.shape[1]:
    raise AuditInputError(
        f"privileged group needs {keys.shape[1]} value(s), one per sensitive column, got {len(values)}")
  as_text = keys.astype(str)
  hits = np.flatnonzero((as_text == [str(v) for v in values]).all(axis=1).to_numpy())
  if not len(hits):
    raise AuditInputError(f"privileged group {','.join(values)} does not occur in the data")
  return int(hits[0])
