"""Group audits as a person reads them: a per-group table, a JSON-able summary, and warnings.

This is the host-side layer over ``figures``: it names groups and classes, picks the positive class of
a binary task, attaches bootstrap intervals as ``<metric>_lo`` / ``<metric>_hi``, and says in words
which figures are NaN and why (an empty group, a group without positives...). The audit command, the
training loop's evaluation and the experiments all produce their ``by_group.csv`` / ``summary.json``
through ``classification_report`` and ``regression_report``.
"""

import dataclasses
import json
import math
import warnings
from typing import Optional, Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd

from fairjax.metrics import confusion
from fairjax.metrics import figures as figures_lib
from fairjax.metrics import regression
from fairjax.metrics import thresholds as thresholds_lib

FOUR_FIFTHS = 0.8  # the "80 % rule" of disparate impact
DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2))

# Columns of by_group.csv, in order, after the group's key columns (and `class` for multi-class).
BY_GROUP_COLUMNS = ("count",) + confusion.CLASS_METRICS + ("positives", "negatives",
                                                           "treatment_equality", "disparate_impact")
# Summary keys that a binary task takes from the positive class and a multi-class task averages.
HEADLINE_DISPARITIES = (
    "demographic_parity_difference", "demographic_parity_ratio",
    "equalized_odds_difference", "equalized_odds_ratio",
    "equal_opportunity_difference", "equal_opportunity_ratio",
    "treatment_equality_difference",
)


class FairnessWarning(UserWarning):
  """A figure of the audit is undefined (NaN) for a reason the user should know."""


@dataclasses.dataclass
class GroupReport:
  """An audit: ``by_group`` (one row per group, or per group and class) and a JSON-able ``summary``."""

  by_group: pd.DataFrame
  summary: dict

  def save(self, directory) -> None:
    """Writes ``by_group.csv`` and ``summary.json`` into an existing directory."""
    import os
    self.by_group.to_csv(os.path.join(directory, "by_group.csv"), index=False, na_rep="NaN")
    with open(os.path.join(directory, "summary.json"), "w") as f:
      json.dump(self.summary, f, indent=2)
      f.write("\n")


@dataclasses.dataclass
class EvalResult:
  """The figures of one evaluation of a model: its group reports, flat metrics and confusion counts.

  What ``fairjax.train.evaluate.summarise`` gives and ``fairjax.report.run_report`` writes.

  Attributes:
    metrics: flat ``name -> float`` for logging and model selection (NaN where undefined); the names
      are listed in ``summarise``.
    reports: ``(view, grouping) -> GroupReport``; a view is a head's name, or ``<head>_bins`` for the
      classification view of a binned head.
    confusion: ``(view, grouping) -> [G, C, C]`` counts of every classification view.
    class_names: ``view -> class names`` of every classification view.
    group_labels: ``grouping -> group names`` (index order, as ``fairjax.data.groups.group_labels``).
    warnings: every FairnessWarning raised while summarising, prefixed with ``view/grouping``.
    intervals: ``name -> (low, high)``, a 95 % interval of some of ``metrics`` (those that were asked
      for; NaN bounds where undefined); empty when none were.
  """

  metrics: dict[str, float]
  reports: dict[tuple[str, str], GroupReport]
  confusion: dict[tuple[str, str], np.ndarray]
  class_names: dict[str, list]
  group_labels: dict[str, list[str]]
  warnings: list[str]
  intervals: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)


def group_labels(keys: pd.DataFrame) -> list[str]:
  """``"race=1, gender=0"``-style label of every group (row of ``keys``)."""
  columns = [[f"{c}={v}" for v in keys[c].tolist()] for c in keys.columns]
  return [", ".join(parts) for parts in zip(*columns)]


def classification_report(
    counts,
    *,
    group_keys: Optional[pd.DataFrame] = None,
    class_names: Optional[Sequence] = None,
    positive_class: int = 1,
    privileged: Optional[int] = None,
    num_resamples: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    rows: Optional[tuple] = None,
    sweep: Optional[tuple] = None,
) -> GroupReport:
  """The audit of per-group confusion counts ``[G, C, C]`` (see ``confusion.confusion_counts``).

  Args:
    group_keys: one row per group, one column per sensitive attribute; default a ``group`` column 0..G-1.
    class_names: name of each class index (labels as the user knows them); default 0..C-1.
    positive_class: for C = 2, the class index whose rates are reported.
    privileged: group index that disparate impact is measured against; default the largest group.
    num_resamples: bootstrap resamples for the ``_lo`` / ``_hi`` intervals (0: none).
    rows: (y_true, y_pred, groups, weights) for a weighted bootstrap (see ``figures``).
    sweep: (thresholds [T], sweep counts [T, G, 2, 2]) from ``thresholds.threshold_counts``.
  """
  counts = np.asarray(counts)
  num_groups, num_classes = counts.shape[0], counts.shape[1]
  keys = group_keys if group_keys is not None else pd.DataFrame({"group": np.arange(num_groups)})
  if len(keys) != num_groups:
    raise ValueError(f"group_keys has {len(keys)} rows for {num_groups} groups")
  class_names = list(class_names) if class_names is not None else list(range(num_classes))
  if len(class_names) != num_classes:
    raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
  binary = num_classes == 2
  if binary and positive_class not in (0, 1):
    raise ValueError(f"positive_class must be 0 or 1, got {positive_class}")
  group_sizes = counts.sum((1, 2))
  if privileged is None:
    privileged = int(np.argmax(group_sizes))
  if not 0 <= privileged < num_groups:
    raise ValueError(f"privileged group index {privileged} is not among the {num_groups} groups")

  figs, bounds = figures_lib.compute_classification(
      jnp.asarray(counts), privileged, num_resamples=num_resamples, seed=seed,
      confidence=confidence, rows=rows)
  labels = group_labels(keys)
  shown_classes = [positive_class] if binary else list(range(num_classes))

  by_group = _by_group_table(figs, bounds, keys, class_names, shown_classes, binary)
  summary = {
      "task": "binary" if binary else "multiclass",
      "num_examples": float(counts.sum()),
      "num_groups": num_groups,
      "sensitive_columns": list(keys.columns),
      "classes": [_jsonable(c) for c in class_names],
      "privileged_group": labels[privileged],
  }
  if binary:
    summary["positive_label"] = _jsonable(class_names[positive_class])
  summary.update(_headline(figs, bounds, positive_class if binary else None))
  dp_ratio = summary["demographic_parity_ratio"]
  summary["passes_four_fifths_rule"] = None if dp_ratio is None else bool(dp_ratio >= FOUR_FIFTHS)
  pick = (lambda a: a[..., positive_class]) if binary else (lambda a: a)
  summary["differences"] = {m: _clean(pick(figs["disparities"][f"{m}_difference"]))
                            for m in confusion.CLASS_METRICS}
  summary["ratios"] = {m: _clean(pick(figs["disparities"][f"{m}_ratio"])) for m in confusion.CLASS_METRICS}
  summary["disparate_impact"] = {labels[g]: _clean(pick(figs["disparate_impact"][g]))
                                 for g in range(num_groups)}
  summary["pairwise_disparate_impact"] = {
      "groups": labels, "matrix": _clean(pick(figs["pairwise_disparate_impact"]))}
  summary["groups"] = [
      {"group": labels[g], **{k: _clean(v[g]) for k, v in figs["groups"].items()}}
      for g in range(num_groups)]
  if not binary:
    summary["per_class"] = {
        str(class_names[c]): {k: _clean(figs["disparities"][k][c]) for k in HEADLINE_DISPARITIES}
        for c in range(num_classes)}
  if sweep is not None:
    if not binary:
      raise ValueError("a threshold sweep needs binary labels and scores")
    summary["threshold_sweep"] = _sweep_summary(*sweep)
  if num_resamples:
    summary["bootstrap"] = {"resamples": num_resamples, "confidence": confidence, "seed": seed}
  summary["warnings"] = _warn(figs, labels, class_names, shown_classes)
  return GroupReport(by_group, summary)


def regression_report(
    y_true, y_pred, groups, *, group_keys: Optional[pd.DataFrame] = None, num_groups: Optional[int] = None,
    weights=None, num_resamples: int = 0, seed: int = 0, confidence: float = 0.95,
) -> GroupReport:
  """Per-group MAE, mean signed error and RMSE (e.g. of age), their gaps, and bootstrap intervals."""
  if num_groups is None:
    num_groups = len(group_keys) if group_keys is not None else int(np.max(groups)) + 1
  keys = group_keys if group_keys is not None else pd.DataFrame({"group": np.arange(num_groups)})
  figs, bounds = figures_lib.compute_regression(
      y_true, y_pred, groups, num_groups=num_groups, weights=weights, num_resamples=num_resamples,
      seed=seed, confidence=confidence)
  table = keys.reset_index(drop=True).copy()
  for name in ("count",) + regression.REGRESSION_METRICS:
    table[name] = figs["groups"][name]
    if bounds is not None:
      table[f"{name}_lo"], table[f"{name}_hi"] = bounds[0]["groups"][name], bounds[1]["groups"][name]
  summary = {"task": "regression", "num_groups": num_groups, "sensitive_columns": list(keys.columns)}
  for section in ("overall", "disparities"):
    for name, value in figs[section].items():
      summary[name] = _clean(value)
      if bounds is not None:
        summary[f"{name}_ci"] = [_clean(bounds[0][section][name]), _clean(bounds[1][section][name])]
  labels = group_labels(keys)
  empty = [labels[g] for g in range(num_groups) if figs["groups"]["count"][g] == 0]
  summary["warnings"] = [f"{g}: no examples; its errors are NaN" for g in empty]
  for message in summary["warnings"]:
    warnings.warn(message, FairnessWarning, stacklevel=2)
  return GroupReport(table, summary)


def _by_group_table(figs, bounds, keys, class_names, shown_classes, binary) -> pd.DataFrame:
  per_class = dict(figs["rates"])
  per_class["treatment_equality"] = figs["treatment_equality"]
  per_class["disparate_impact"] = figs["disparate_impact"]
  low = high = None
  if bounds is not None:
    low = {**bounds[0]["rates"], "treatment_equality": bounds[0]["treatment_equality"],
           "disparate_impact": bounds[0]["disparate_impact"]}
    high = {**bounds[1]["rates"], "treatment_equality": bounds[1]["treatment_equality"],
            "disparate_impact": bounds[1]["disparate_impact"]}
  frames = []
  for c in shown_classes:
    table = keys.reset_index(drop=True).copy()
    if not binary:
      table["class"] = class_names[c]
    table["count"] = figs["groups"]["count"]
    for name in BY_GROUP_COLUMNS[1:]:
      table[name] = per_class[name][:, c]
      if low is not None and name not in ("positives", "negatives"):
        table[f"{name}_lo"], table[f"{name}_hi"] = low[name][:, c], high[name][:, c]
    frames.append(table)
  return pd.concat(frames, ignore_index=True)


def _headline(figs, bounds, positive_class) -> dict:
  """Overall figures and headline disparities, with ``<key>_ci`` when bootstrapped."""

  def reduce(a):
    a = np.asarray(a)
    if positive_class is not None:
      return a[..., positive_class]
    ok = ~np.isnan(a)
    return np.nan if not ok.any() else a[ok].mean()  # macro over the classes where it is defined

  out = {}
  for name in ("accuracy", "macro_accuracy", "macro_f1"):
    out[name] = _clean(figs["overall"][name])
    if bounds is not None:
      out[f"{name}_ci"] = [_clean(bounds[0]["overall"][name]), _clean(bounds[1]["overall"][name])]
  for name in HEADLINE_DISPARITIES:
    out[name] = _clean(reduce(figs["disparities"][name]))
    if bounds is not None:
      out[f"{name}_ci"] = [_clean(reduce(bounds[0]["disparities"][name])),
                           _clean(reduce(bounds[1]["disparities"][name]))]
  return out


def _sweep_summary(thresholds, sweep_counts) -> dict:
  thresholds = np.asarray(thresholds, np.float32)
  pooled = {k: np.asarray(v) for k, v in confusion.overall_summary(jnp.asarray(sweep_counts)).items()}
  out = {"thresholds": _clean(thresholds), "accuracy": _clean(pooled["accuracy"]),
         "macro_f1": _clean(pooled["macro_f1"])}
  for objective in ("macro_f1", "accuracy"):
    best, value = thresholds_lib.best_threshold(thresholds, jnp.asarray(sweep_counts), objective)
    j = int(np.argmin(np.abs(thresholds - float(best))))
    out[f"best_{objective}"] = {"threshold": _clean(best), objective: _clean(value),
                                "accuracy_there": _clean(pooled["accuracy"][j])}
  return out


def _warn(figs, labels, class_names, shown_classes) -> list[str]:
  """One message per undefined figure family, also raised as FairnessWarning."""
  messages = []
  rates = figs["rates"]
  count = figs["groups"]["count"]
  for g, label in enumerate(labels):
    if count[g] == 0:
      messages.append(f"{label}: no examples; all its rates are NaN")
      continue
    for c in shown_classes:
      suffix = "" if len(shown_classes) == 1 else f" of class {class_names[c]}"
      if rates["positives"][g, c] == 0:
        messages.append(f"{label}: no positive examples{suffix}; tpr, fnr are NaN (count 0)")
      if rates["negatives"][g, c] == 0:
        messages.append(f"{label}: no negative examples{suffix}; tnr, fpr are NaN (count 0)")
      predicted_positive = rates["selection_rate"][g, c] * count[g]
      if predicted_positive == 0:
        messages.append(f"{label}: nothing predicted positive{suffix}; ppv, fdr are NaN")
      elif predicted_positive == count[g]:
        messages.append(f"{label}: everything predicted positive{suffix}; npv, for are NaN")
  if sum(count > 0) < 2:
    messages.append("fewer than two non-empty groups: every disparity is NaN")
  for message in messages:
    warnings.warn(message, FairnessWarning, stacklevel=3)
  return messages


def _clean(value):
  """numpy scalar/array → JSON-able Python value, NaN → None (JSON has no NaN)."""
  value = np.asarray(value)
  if value.ndim:
    return [_clean(v) for v in value]
  value = value.item()
  if isinstance(value, float):
    # Figures are float32: seven significant digits is all they hold.
    return float(f"{value:.7g}") if math.isfinite(value) else None
  return value


def _jsonable(value):
  return value.item() if isinstance(value, np.generic) else value
