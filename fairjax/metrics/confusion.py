"""Per-group confusion counts and every rate derived from them, in pure JAX.

All classification metrics in fairjax are functions of one array: the per-group confusion counts
``counts[g, true_class, predicted_class]``. Computing it is one ``segment_sum`` over the rows; every
rate, disparity, bootstrap resample and threshold sweep afterwards touches only this small array
(groups x classes x classes), never the rows again. That is what makes the audit cheap on millions
of rows and lets a bootstrap resample the counts instead of the rows (see ``bootstrap.py``).

Conventions:
  * A rate whose denominator is zero (an empty group, or a group with no positives for TPR) is NaN,
    never 0 and never a division warning: ``safe_div`` masks the denominator before dividing.
  * Multi-class predictions are reported one-vs-rest per class (shape [G, C]); a binary task is the
    C = 2 case read at its positive class (index 1).
  * Counts are int32 when unweighted (exact to 2**31 rows) and float32 when weighted.
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array

# The eight rates of seed 000 §4, plus the per-class figures the audit reports beside them.
RATES = ("tpr", "fnr", "tnr", "fpr", "ppv", "fdr", "npv", "for")
CLASS_METRICS = ("selection_rate",) + RATES + ("accuracy", "f1")


def safe_div(numerator: Array, denominator: Array) -> Array:
  """numerator / denominator, NaN where the denominator is zero, with no floating-point warning."""
  numerator = jnp.asarray(numerator, jnp.float32)
  denominator = jnp.asarray(denominator, jnp.float32)
  ok = denominator > 0
  return jnp.where(ok, numerator / jnp.where(ok, denominator, 1.0), jnp.nan)


@functools.partial(jax.jit, static_argnames=("num_groups", "num_classes"))
def confusion_counts(
    y_true: Array,
    y_pred: Array,
    groups: Array,
    *,
    num_groups: int,
    num_classes: int,
    weights: Optional[Array] = None,
    mask: Optional[Array] = None,
) -> Array:
  """Per-group confusion counts, ``[num_groups, num_classes, num_classes]`` (true, predicted).

  Args:
    y_true, y_pred, groups: integer arrays of one shape (any shape; flattened).
    num_groups, num_classes: static sizes, so the function jits once per task.
    weights: optional per-row weights (sample weights, or bootstrap multiplicities).
    mask: optional boolean per-row mask, e.g. False for the padding rows of a last batch.

  Rows whose group or class falls outside its range are dropped (counted nowhere) rather than
  silently landing in a neighbouring cell; host-side callers validate and report them first.
  """
  y_true = jnp.ravel(y_true).astype(jnp.int32)
  y_pred = jnp.ravel(y_pred).astype(jnp.int32)
  groups = jnp.ravel(groups).astype(jnp.int32)
  valid = (
      (groups >= 0) & (groups < num_groups)
      & (y_true >= 0) & (y_true < num_classes)
      & (y_pred >= 0) & (y_pred < num_classes))
  if mask is not None:
    valid &= jnp.ravel(mask).astype(bool)
  cell = (groups * num_classes + y_true) * num_classes + y_pred
  num_cells = num_groups * num_classes * num_classes
  if weights is None:
    data = valid.astype(jnp.int32)
  else:
    data = jnp.where(valid, jnp.ravel(weights).astype(jnp.float32), 0.0)
  # Invalid rows carry zero weight, so their (possibly out-of-range) cell index is harmless; clip it
  # to keep the scatter in bounds.
  cell = jnp.clip(cell, 0, num_cells - 1)
  flat = jax.ops.segment_sum(data, cell, num_segments=num_cells)
  return flat.reshape(num_groups, num_classes, num_classes)


def one_vs_rest(counts: Array) -> dict[str, Array]:
  """TP, FP, FN, TN of each class against the rest, each ``[..., G, C]``, from ``[..., G, C, C]``."""
  counts = jnp.asarray(counts, jnp.float32)
  tp = jnp.diagonal(counts, axis1=-2, axis2=-1)
  actual = counts.sum(-1)        # rows: how many truly are class c
  predicted = counts.sum(-2)     # columns: how many were predicted c
  total = counts.sum((-2, -1))[..., None]
  fn = actual - tp
  fp = predicted - tp
  tn = total - tp - fn - fp
  return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def class_rates(counts: Array) -> dict[str, Array]:
  """One-vs-rest rates of every class in every group, each ``[..., G, C]``.

  Keys: CLASS_METRICS plus ``positives`` and ``negatives`` (the supports of TPR and FPR, so that a
  NaN rate can be read beside the zero count that caused it).
  """
  c = one_vs_rest(counts)
  tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
  total = tp + fp + fn + tn
  return {
      "selection_rate": safe_div(tp + fp, total),
      "tpr": safe_div(tp, tp + fn),
      "fnr": safe_div(fn, tp + fn),
      "tnr": safe_div(tn, tn + fp),
      "fpr": safe_div(fp, tn + fp),
      "ppv": safe_div(tp, tp + fp),
      "fdr": safe_div(fp, tp + fp),
      "npv": safe_div(tn, tn + fn),
      "for": safe_div(fn, tn + fn),
      "accuracy": safe_div(tp + tn, total),
      "f1": safe_div(2 * tp, 2 * tp + fp + fn),
      "positives": tp + fn,
      "negatives": tn + fp,
  }


def group_summary(counts: Array) -> dict[str, Array]:
  """Multi-class figures of each group, each ``[..., G]``: count, accuracy, macro accuracy and F1.

  ``macro_accuracy`` is balanced accuracy (the mean over classes of recall) and ``macro_f1`` the mean
  of the classes' F1, each over the classes that are defined in that group (present in truth or in
  predictions), as scikit-learn computes them on that group alone.
  """
  counts = jnp.asarray(counts, jnp.float32)
  total = counts.sum((-2, -1))
  correct = jnp.trace(counts, axis1=-2, axis2=-1)
  rates = class_rates(counts)
  return {
      "count": total,
      "accuracy": safe_div(correct, total),
      "macro_accuracy": _nanmean(rates["tpr"], axis=-1),
      "macro_f1": _macro_f1(counts),
  }


def overall_summary(counts: Array) -> dict[str, Array]:
  """The same figures as ``group_summary`` over all groups pooled, each ``[...]``."""
  return {k: v[..., 0] for k, v in group_summary(counts.sum(-3, keepdims=True)).items()}


def _macro_f1(counts: Array) -> Array:
  # scikit-learn's macro F1 averages over the labels present in y_true or y_pred; a class absent from
  # both has 0/0 F1 and is left out rather than counted as 0.
  c = one_vs_rest(counts)
  present = (c["tp"] + c["fn"] + c["fp"]) > 0
  f1 = jnp.where(present, safe_div(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]), jnp.nan)
  return _nanmean(f1, axis=-1)


def _nanmean(x: Array, axis: int) -> Array:
  """Mean over the non-NaN entries; NaN (not a warning) when there are none."""
  ok = ~jnp.isnan(x)
  return safe_div(jnp.where(ok, x, 0.0).sum(axis), ok.sum(axis))
