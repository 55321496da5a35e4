"""The audit's work, importable without its command-line flags: predictions in, report and files out."""

import os
import shutil
import tempfile
from typing import Callable

import jax.numpy as jnp
import numpy as np

from fairjax.audit import inputs
from fairjax.metrics import confusion
from fairjax.metrics import group_report as report_lib
from fairjax.metrics import thresholds as thresholds_lib
from fairjax.report import plots


def audit(frame, *, label_column, prediction_column, sensitive_columns, score_column=None,
          positive_label=1, privileged_group=None, n_boot=0, seed=0,
          thresholds=report_lib.DEFAULT_THRESHOLDS) -> report_lib.GroupReport:
  """The group report of a DataFrame of predictions (the command's work, without files)."""
  if n_boot < 0:
    raise inputs.AuditInputError(f"--n_boot must be >= 0, got {n_boot}")
  data = inputs.encode(frame, label_column=label_column, prediction_column=prediction_column,
                       sensitive_columns=sensitive_columns, score_column=score_column,
                       positive_label=positive_label)
  num_groups, num_classes = len(data.group_keys), len(data.class_names)
  counts = confusion.confusion_counts(data.y_true, data.y_pred, data.groups, num_groups=num_groups,
                                      num_classes=num_classes)
  privileged = None if not privileged_group else inputs.find_group(data.group_keys, privileged_group)
  sweep = None
  if data.scores is not None:
    try:
      grid = np.sort(np.asarray([float(t) for t in thresholds], np.float32))
    except ValueError:
      raise inputs.AuditInputError(f"thresholds must be numbers, got {','.join(map(str, thresholds))}") from None
    positive = (data.y_true == data.positive_class).astype(np.int32)
    sweep = (grid, thresholds_lib.threshold_counts(jnp.asarray(data.scores), positive, data.groups,
                                                   grid, num_groups=num_groups))
  return report_lib.classification_report(
      counts, group_keys=data.group_keys, class_names=data.class_names,
      positive_class=data.positive_class, privileged=privileged, num_resamples=n_boot, seed=seed,
      sweep=sweep)


def write_staged(output_dir: str, fill: Callable[[str], None], prefix: str = ".audit-") -> list[str]:
  """``fill(folder)`` writes files into a fresh folder beside ``output_dir``; they are then moved into
  ``output_dir`` all together, so a failure half-way leaves ``output_dir`` untouched. Returns the names."""
  parent = os.path.dirname(os.path.abspath(output_dir))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=prefix, dir=parent)
  try:
    fill(staging)
    os.makedirs(output_dir, exist_ok=True)
    names = sorted(os.listdir(staging))
    for name in names:
      os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
    return names
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def fill_report(result: report_lib.GroupReport, folder: str, extra_frames=None) -> None:
  """Writes the report's files (tables, summary, plots, and ``extra_frames`` as CSVs) into ``folder``."""
  result.save(folder)
  keys = result.summary["sensitive_columns"]
  table = result.by_group
  if result.summary["task"] == "binary":
    plots.plot_group_rates(table, keys, os.path.join(folder, "rates_by_group.png"))
    plots.plot_disparate_impact(table, keys, os.path.join(folder, "disparate_impact.png"),
                                result.summary["privileged_group"])
  else:
    for name in dict.fromkeys(table["class"]):
      plots.plot_group_rates(table[table["class"] == name], keys,
                             os.path.join(folder, f"rates_by_group_class_{name}.png"),
                             title=f"Rates by group, class {name} against the rest")
  if "threshold_sweep" in result.summary:
    plots.plot_threshold_sweep(result.summary["threshold_sweep"], os.path.join(folder, "threshold_sweep.png"))
  for name, frame in (extra_frames or {}).items():
    frame.to_csv(os.path.join(folder, name), index=False)


def write_report(result: report_lib.GroupReport, output_dir: str, extra_frames=None) -> list[str]:
  """Writes the report's files into ``output_dir`` all together; returns their names."""
  return write_staged(output_dir, lambda folder: fill_report(result, folder, extra_frames))
