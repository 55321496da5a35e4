"""What a training run writes to ``DIR/report/``: per-split audits, their figures, and ``report.md``.

``write_split`` writes one evaluated split the way the audit command writes an audit (``by_group.csv``,
``summary.json`` with the audit's top-level keys, the same rate plots), so that a tool written for
audits reads a run's splits too; it adds what only a model evaluation has: every head and grouping in
one table, the flat metrics, and per-group confusion matrices. ``write_markdown`` writes the page a
person reads first, linking the rest.

Layout::

  DIR/report/report.md
  DIR/report/training_curves.png
  DIR/report/<split>/by_group.csv
  DIR/report/<split>/summary.json
  DIR/report/<split>/confusion_<view>_<grouping>.png       (classification views)
  DIR/report/<split>/rates_<view>_<grouping>.png           (binary views: plots.plot_group_rates)
  DIR/report/<split>/disparate_impact_<view>_<grouping>.png  (binary views)
  DIR/report/<split>/mae_<view>_<grouping>.png             (regression views)
  DIR/report/<split>/embedding_<attribute>.png             (t-SNE maps, by ``fairjax.train.leakage``)

A view is a head, or ``<head>_bins`` for a binned head's classification over its bins (see
``fairjax.train.evaluate``).
"""

import json
import math
import os
from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from etils import epath
import numpy as np
import pandas as pd

from fairjax import markdown
from fairjax.data import groups
from fairjax.metrics import group_report as report_lib
from fairjax.report import plots

REPORT_DIR = "report"
# Metrics of this prefix (``leakage_<attribute>``, see ``fairjax.train.leakage``) are also top-level keys
# of each split's summary.json.
LEAKAGE_PREFIX = "leakage_"
# Beyond this many classes a confusion matrix is unreadable (a 101-way age head); it is skipped, and
# the skip is recorded in summary.json and report.md.
MAX_CONFUSION_CLASSES = 20
# Classes up to which each cell of a confusion matrix is annotated with its count.
ANNOTATE_CLASSES = 10
# Figures of the primary head and grouping drawn over training, when the history has them.
CURVE_METRICS = ("loss", "{h}/accuracy", "{h}/macro_f1", "{h}/mae", "{h}/{g}/equalized_odds_difference",
                 "{h}/{g}/equal_opportunity_difference", "{h}/{g}/accuracy_gap", "{h}/{g}/disparate_impact",
                 "{h}/{g}/disparate_impact_correct", "{h}/{g}/mae_gap")
# FairnessWarnings listed in report.md per split; the rest stay in the split's summary.json.
MAX_LISTED_WARNINGS = 20
# How ``EvalResult.intervals`` are made (``fairjax.train.intervals``), for summary.json and report.md.
INTERVALS_METHOD = (
    "95 % intervals. Classification figures: percentile bootstrap of the split's rows (their confusion "
    "counts resampled, as the audit's --n_boot; config.eval.num_resamples resamples, seed config.seed), "
    "each figure recomputed per resample. MAE figures: a "
    "normal approximation from the per-group sums of absolute and squared errors (mean +- 1.96 standard "
    "errors; the gap and worst group over draws of the group MAEs), not a bootstrap: the evaluation "
    "keeps sums, not rows; a group of one row has no standard error, so its grouping's MAE gap and "
    "worst-group MAE read [n/a]. Gaps and worst-group figures are extremes: when groups barely differ "
    "their interval can lie above the observed figure.")


def split_dir(directory: str, split_name: str) -> str:
  """``DIR/report/<split>``, where ``write_split`` writes."""
  return os.path.join(directory, REPORT_DIR, split_name)


def stacked_by_group(result: report_lib.EvalResult) -> pd.DataFrame:
  """Every report's ``by_group`` table, one under the other, with leading ``head`` and ``grouping``.

  The group-key columns of all groupings come next (blank where a grouping lacks the attribute), then
  ``class`` (blank for binary and regression views), then the audit's figure columns.
  """
  frames = []
  for (view, grouping), report in result.reports.items():
    frame = report.by_group.copy()
    frame.insert(0, "grouping", grouping)
    frame.insert(0, "head", view)
    frames.append(frame)
  table = pd.concat(frames, ignore_index=True, sort=False)
  keys = [a for a in groups.ATTRIBUTES if a in table.columns]
  labels = keys + (["class"] if "class" in table.columns else [])
  table[labels] = table[labels].astype(object).where(table[labels].notna(), "")
  rest = [c for c in table.columns if c not in ["head", "grouping"] + labels]
  return table[["head", "grouping"] + labels + rest]


def write_split(directory: str, split_name: str, result: report_lib.EvalResult,
                primary: tuple[str, str], privileged: Optional[Mapping[str, Mapping]] = None) -> list[str]:
  """Writes ``DIR/report/<split>/``; returns the names of the files written there.

  ``summary.json`` holds the ``primary`` (view, grouping) report's summary at top level (the audit's
  keys) and any ``leakage_<attribute>`` metric, plus ``split``, ``primary``, ``metrics`` (NaN as null),
  ``intervals`` {metric: [low, high]} (``result.intervals``, null where undefined) and, when there are
  any, ``intervals_method``; ``privileged_groups`` (``privileged``: the run's group per grouping and
  why, {grouping: {"group", "reason"}}); ``reports`` {view: {grouping: summary}}, ``warnings_all``
  (every warning of the evaluation) and ``skipped_files``.
  """
  if tuple(primary) not in result.reports:
    raise ValueError(f"primary {tuple(primary)} is not among the evaluated reports {sorted(result.reports)}")
  out = split_dir(directory, split_name)
  epath.Path(out).mkdir(parents=True, exist_ok=True)
  written, skipped = ["by_group.csv"], []
  with epath.Path(out, "by_group.csv").open("w") as f:
    stacked_by_group(result).to_csv(f, index=False, na_rep="NaN")
  for (view, grouping), counts in result.confusion.items():
    name = f"confusion_{view}_{grouping}.png"
    if counts.shape[-1] > MAX_CONFUSION_CLASSES:
      skipped.append(f"{split_name}/{name}: {counts.shape[-1]} classes, too many to draw")
      continue
    plot_confusion(counts, result.class_names[view], result.group_labels[grouping],
                   os.path.join(out, name), title=f"{split_name}: {view} by {grouping}")
    written.append(name)
  for (view, grouping), report in result.reports.items():
    keys, task = report.summary["sensitive_columns"], report.summary["task"]
    if task == "binary":
      names = (f"rates_{view}_{grouping}.png", f"disparate_impact_{view}_{grouping}.png")
      plots.plot_group_rates(report.by_group, keys, os.path.join(out, names[0]),
                             title=f"{split_name}: {view} rates by {grouping}")
      plots.plot_disparate_impact(report.by_group, keys, os.path.join(out, names[1]),
                                  report.summary["privileged_group"])
      written.extend(names)
    elif task == "regression":
      name = f"mae_{view}_{grouping}.png"
      plot_group_errors(report.by_group, keys, os.path.join(out, name),
                        title=f"{split_name}: {view} error by {grouping}")
      written.append(name)
  reports = {}
  for (view, grouping), report in result.reports.items():
    reports.setdefault(view, {})[grouping] = report.summary
  summary = {
      **result.reports[tuple(primary)].summary,
      **{k: _json_value(v) for k, v in result.metrics.items() if k.startswith(LEAKAGE_PREFIX)},
      "split": split_name,
      "primary": {"head": primary[0], "grouping": primary[1]},
      "metrics": {k: _json_value(v) for k, v in result.metrics.items()},
      "intervals": {k: [_json_value(low), _json_value(high)] for k, (low, high) in result.intervals.items()},
      **({"intervals_method": INTERVALS_METHOD} if result.intervals else {}),
      "privileged_groups": {g: dict(v) for g, v in (privileged or {}).items()},
      "reports": reports,
      "warnings_all": list(result.warnings),
      "skipped_files": skipped,
  }
  epath.Path(out, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
  written.append("summary.json")
  return sorted(written)


def plot_confusion(counts, class_names: Sequence, group_labels: Sequence[str], path: str,
                   title: str = "") -> None:
  """One confusion matrix per group, coloured by the row's share (each true class's recall on the
  diagonal, so groups of different sizes compare) and annotated with the counts."""
  counts = np.asarray(counts, float)
  num_groups, num_classes = counts.shape[0], counts.shape[1]
  columns = min(num_groups, 5)
  rows = math.ceil(num_groups / columns)
  side = max(2.4, 0.42 * num_classes + 1.2)
  fig, axes = plt.subplots(rows, columns, figsize=(side * columns, side * rows + 0.8), squeeze=False)
  ticks = np.arange(num_classes)
  names = [str(c) for c in class_names]
  for g, ax in enumerate(axes.flat):
    if g >= num_groups:
      ax.axis("off")
      continue
    matrix = counts[g]
    totals = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    ax.imshow(share, vmin=0.0, vmax=1.0, cmap="Blues")
    ax.set_title(f"{group_labels[g]} (n={matrix.sum():g})", fontsize="small")
    slanted = num_classes > 2
    ax.set_xticks(ticks, names, rotation=45 if slanted else 0, ha="right" if slanted else "center",
                  fontsize="x-small")
    ax.set_yticks(ticks, names, fontsize="x-small")
    if matrix.sum() == 0:
      ax.text((num_classes - 1) / 2, (num_classes - 1) / 2, "no examples", ha="center", va="center")
    elif num_classes <= ANNOTATE_CLASSES:
      for i in range(num_classes):
        for j in range(num_classes):
          ax.text(j, i, f"{matrix[i, j]:g}", ha="center", va="center", fontsize="x-small",
                  color="white" if share[i, j] > 0.6 else "black")
  fig.supxlabel("predicted")
  fig.supylabel("true")
  if title:
    fig.suptitle(title)
  plots.save_figure(fig, path)


def plot_group_errors(table: pd.DataFrame, key_columns: Sequence[str], path: str, title: str = "") -> None:
  """Mean absolute error of each group (a regression report's ``by_group``), empty groups marked."""
  labels = [", ".join(v) for v in zip(*(table[c].astype(str).tolist() for c in key_columns))]
  mae = table["mae"].to_numpy(float)
  x = np.arange(len(labels))
  fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(labels)), 3.8))
  ax.bar(x, np.nan_to_num(mae), color="tab:blue")
  for i, (value, count) in enumerate(zip(mae, table["count"].to_numpy(float))):
    ax.annotate("no examples" if np.isnan(value) else f"n={count:g}", (i, np.nan_to_num(value)),
                ha="center", va="bottom", fontsize="x-small")
  ax.set_xticks(x, labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
  ax.set_ylabel("mean absolute error")
  ax.set_title(title or "Error by group")
  ax.grid(axis="y", alpha=0.3)
  plots.save_figure(fig, path)


def plot_training_curves(history: Sequence[Mapping], metrics: Sequence[str], path: str,
                         selected_step: Optional[int] = None) -> list[str]:
  """One panel per metric, one line per split prefix (``train/``, ``validation/``...) over steps.

  ``history`` entries hold ``step``, ``epoch`` and ``<split>/<metric>`` values. Returns the metrics
  drawn (those with at least one finite value); draws nothing and returns [] when there are none.
  """
  series = {m: {} for m in metrics}
  for entry in history:
    for key, value in entry.items():
      split, _, metric = key.partition("/")
      if metric in series and value is not None and math.isfinite(float(value)):
        series[metric].setdefault(split, []).append((entry["step"], float(value)))
  drawn = [m for m in metrics if series[m]]
  if not drawn:
    return []
  columns = min(len(drawn), 3)
  rows = math.ceil(len(drawn) / columns)
  fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.2 * rows), squeeze=False)
  for ax, metric in zip(axes.flat, drawn):
    for split, points in sorted(series[metric].items()):
      steps, values = zip(*sorted(points))
      ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=split)
    if selected_step is not None:
      ax.axvline(selected_step, color="gray", linestyle=":", label=f"selected (step {selected_step})")
    ax.set_title(metric, fontsize="small")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
  for ax in list(axes.flat)[len(drawn):]:
    ax.axis("off")
  fig.tight_layout()
  plots.save_figure(fig, path)
  return drawn


def write_markdown(
    directory: str,
    *,
    config_summary: Mapping,
    history: Sequence[Mapping],
    split_results: Mapping[str, report_lib.EvalResult],
    primary: tuple[str, str],
    selected_step: Optional[int],
    notes: Sequence[str] = (),
    sections: Optional[Mapping[str, Sequence[str]]] = None,
    privileged: Optional[Mapping[str, Mapping]] = None,
) -> str:
  """Writes ``DIR/report/report.md`` (and ``training_curves.png``); returns the markdown's path.

  Links the files of each split that ``write_split`` wrote; a split it did not write, and the files it
  skipped, are listed under the warnings, with ``notes`` and every split's FairnessWarnings. ``sections``
  (title -> markdown lines, e.g. post-processing's raw-against-post table) follow the tables of all heads.
  The headline shows each figure's interval where the result has one, and ``privileged`` (the run's
  {grouping: {"group", "reason"}}) is said under it.
  """
  out = os.path.join(directory, REPORT_DIR)
  epath.Path(out).mkdir(parents=True, exist_ok=True)
  head, grouping = primary
  warnings_list = list(notes)
  lines = ["# Run report", ""]

  lines += ["## Configuration", ""]
  lines += markdown.table(["setting", "value"], [[key, _md(value)] for key, value in _flatten(config_summary)])
  lines += ["", f"Evaluated checkpoint: step {selected_step}." if selected_step is not None else
            "Evaluated checkpoint: the final state (no checkpoint selection).", ""]

  lines += [f"## Headline: `{head}` by `{grouping}`", ""]
  lines += _headline_table(split_results, primary) + [""]
  if privileged:
    lines += ["Privileged groups, the same in every split: "
              + "; ".join(f"{g}: {v['group']} ({v['reason']})" for g, v in privileged.items()) + ".", ""]
  if any(r.intervals for r in split_results.values()):
    lines += [f"Brackets: {INTERVALS_METHOD}", ""]
  lines += ["Disparate impact (selection) is the lowest group selection rate over the highest (the 80 % "
            "rule); disparate impact (correct) takes a correct prediction as the outcome, each group's "
            "accuracy over the privileged group's, lowest ratio (seed 000 §6.1.5).", ""]
  if any(_predicts_grouping(r.reports.get(tuple(primary)), grouping) for r in split_results.values()):
    lines += [f"The head predicts an attribute of {grouping}, so each group holds one true class: TPR exists "
              "only in some groups and FPR only in the others, and the odds and opportunity gaps are "
              "undefined (n/a). The accuracy gap, the spread of the classes' recalls, is the comparable "
              "figure.", ""]

  lines += ["## All heads", ""]
  lines += markdown.table(["split", "head", "loss", "accuracy", "macro F1", "MAE"], [
      [split, name, *(_fmt(result.metrics.get(f"{name}/{figure}")) for figure in ("loss", "accuracy", "macro_f1", "mae"))]
      for split, result in split_results.items() for name in _heads(result.metrics)])
  lines.append("")
  lines += _leakage_table(split_results)
  for title, section in (sections or {}).items():
    lines += [f"## {title}", "", *section, ""]

  for split, result in split_results.items():
    report = result.reports.get(tuple(primary))
    lines += [f"## Per group: {split}", ""]
    if report is None:
      warnings_list.append(f"{split}: no report for {head} by {grouping}")
      lines += ["(not evaluated)", ""]
      continue
    lines += _group_table(report) + [""]

  lines += ["## Figures", ""]
  for split in split_results:
    folder = split_dir(directory, split)
    summary_path = epath.Path(folder, "summary.json")
    if not summary_path.exists():
      warnings_list.append(f"{split}: write_split was not run; its by_group.csv, summary.json and figures "
                           "are missing")
      continue
    warnings_list.extend(f"skipped {s}" for s in json.loads(summary_path.read_text()).get("skipped_files", []))
    lines += [f"### {split}", "", f"Tables: [by_group.csv]({split}/by_group.csv), "
              f"[summary.json]({split}/summary.json)", ""]
    for pattern, caption in (("confusion_*.png", "Confusion matrices (rows: true, columns: predicted)"),
                             ("rates_*.png", "Rates by group"),
                             ("disparate_impact_*.png", "Disparate impact"),
                             ("mae_*.png", "Age error by group"),
                             ("embedding_*.png", "Embedding (t-SNE) by protected attribute")):
      names = sorted(p.name for p in epath.Path(folder).glob(pattern))
      if names:
        lines.append(f"{caption}: " + ", ".join(f"[{n[:-4]}]({split}/{n})" for n in names))
        lines.append("")

  lines += ["## Training curves", ""]
  curves = [m.format(h=head, g=grouping) for m in CURVE_METRICS]
  drawn = plot_training_curves(history, curves, os.path.join(out, "training_curves.png"), selected_step)
  if drawn:
    lines += ["![training curves](training_curves.png)", "", f"Panels: {', '.join(drawn)}.", ""]
  else:
    warnings_list.append("no finite training history: training_curves.png not written")
    lines += ["(no history)", ""]

  for split, result in split_results.items():
    warnings_list.extend(f"{split}: {w}" for w in result.warnings[:MAX_LISTED_WARNINGS])
    if len(result.warnings) > MAX_LISTED_WARNINGS:
      warnings_list.append(f"{split}: {len(result.warnings) - MAX_LISTED_WARNINGS} more FairnessWarnings in "
                           f"{split}/summary.json (warnings_all)")
  lines += ["## Warnings", ""]
  lines += [f"- {w}" for w in dict.fromkeys(warnings_list)] or ["None."]
  path = os.path.join(out, "report.md")
  with epath.Path(path).open("w") as f:
    f.write("\n".join(lines) + "\n")
  return path


def _headline_table(split_results, primary) -> list[str]:
  head, grouping = primary
  regression = any(r.reports.get(tuple(primary)) is not None and
                   r.reports[tuple(primary)].summary["task"] == "regression" for r in split_results.values())
  if regression:
    columns = (("MAE", f"{head}/mae"), ("MAE gap", f"{head}/{grouping}/mae_gap"),
               ("worst-group MAE", f"{head}/{grouping}/worst_group_mae"))
  else:
    columns = (("accuracy", f"{head}/accuracy"), ("macro F1", f"{head}/macro_f1"),
               ("equalized odds diff.", f"{head}/{grouping}/equalized_odds_difference"),
               ("equal opportunity diff.", f"{head}/{grouping}/equal_opportunity_difference"),
               ("accuracy gap", f"{head}/{grouping}/accuracy_gap"),
               ("disparate impact (selection)", f"{head}/{grouping}/disparate_impact"),
               ("disparate impact (correct)", f"{head}/{grouping}/disparate_impact_correct"),
               ("worst-group accuracy", f"{head}/{grouping}/worst_group_accuracy"))
  rows = []
  for split, result in split_results.items():
    report = result.reports.get(tuple(primary))
    privileged = report.summary.get("privileged_group", "") if report is not None else ""
    rows.append([split, *(_with_interval(result.metrics.get(k), result.intervals.get(k)) for _, k in columns),
                 privileged])
  return markdown.table(["split", *(c for c, _ in columns), "privileged"], rows)


def _with_interval(value, bounds) -> str:
  """``0.937 [0.933, 0.941]``; the figure alone without ``bounds``, ``[n/a]`` for undefined bounds."""
  text = _fmt(value)
  if bounds is None or text == "n/a":
    return text
  low, high = (float(b) for b in bounds)
  if not (math.isfinite(low) and math.isfinite(high)):
    return f"{text} [n/a]"
  return f"{text} [{_fmt(low)}, {_fmt(high)}]"


def _leakage_table(split_results) -> list[str]:
  """Each split's ``leakage_<attribute>`` metrics, with what they mean; nothing if there are none."""
  names = list(dict.fromkeys(k for result in split_results.values() for k in result.metrics
                             if k.startswith(LEAKAGE_PREFIX)))
  if not names:
    return []
  lines = ["## Leakage", ""] + markdown.table(
      ["split", *(n[len(LEAKAGE_PREFIX):] for n in names)],
      [[split, *(_fmt(r.metrics.get(n)) for n in names)] for split, r in split_results.items()])
  return lines + ["", "Accuracy of a fresh probe predicting the attribute from the model's embedding, minus "
                  "the majority-class rate (Wang et al. 2019): 0 is nothing above chance (see "
                  "`fairjax.train.leakage`).", ""]


def _predicts_grouping(report, grouping: str) -> bool:
  """Whether the report's classes are the values of an attribute of ``grouping`` (gender by gender)."""
  if report is None:
    return False
  classes = {str(c) for c in report.summary.get("classes", ())}
  return any(classes == set(groups.ATTRIBUTES[a]) for a in groups.GROUPINGS.get(grouping, ()))


def _group_table(report) -> list[str]:
  """Per-group rows of the primary report: rates at the positive class, or their means over classes."""
  summary, table = report.summary, report.by_group
  keys = summary["sensitive_columns"]
  labels = [", ".join(v) for v in zip(*(table[c].astype(str).tolist() for c in keys))]
  labels = list(dict.fromkeys(labels))  # multi-class tables repeat each group once per class
  if summary["task"] == "regression":
    header = ("count", "MAE", "mean signed error", "RMSE")
    rows = [(r["count"], r["mae"], r["mean_signed_error"], r["rmse"]) for _, r in table.iterrows()]
  elif summary["task"] == "binary":
    header = ("count", "accuracy", "TPR", "FPR", "selection rate", "disparate impact")
    rows = [(r["count"], r["accuracy"], r["tpr"], r["fpr"], r["selection_rate"], r["disparate_impact"])
            for _, r in table.iterrows()]
  else:
    header = ("count", "accuracy", "mean TPR", "mean FPR", "macro F1")
    mean_fpr = table.groupby(keys, sort=False)["fpr"].mean().to_numpy()  # NaN-skipping over classes
    rows = [(g["count"], g["accuracy"], g["macro_accuracy"], fpr, g["macro_f1"])
            for g, fpr in zip(summary["groups"], mean_fpr)]
  lines = markdown.table(["group", *header], [[label, _fmt(count, count=True), *(_fmt(v) for v in rest)]
                                              for label, (count, *rest) in zip(labels, rows)])
  if summary["task"] == "multiclass":
    lines += ["", "TPR and FPR are one-vs-rest, averaged over the classes where they are defined."]
  return lines


def _heads(metrics: Mapping[str, float]) -> list[str]:
  """Head names, in order, from the ``<head>/loss`` keys of the metrics."""
  return [k[:-len("/loss")] for k in metrics if k.endswith("/loss") and k.count("/") == 1]


def _flatten(config: Mapping, prefix: str = ""):
  for key, value in config.items():
    if isinstance(value, Mapping):
      yield from _flatten(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _fmt(value, count: bool = False) -> str:
  """A figure for a table: three decimals (a count: whole), ``n/a`` where undefined."""
  return markdown.number(value, general=count, missing="n/a")


def _md(value) -> str:
  """A config value in a table cell: pipes escaped, sequences comma-joined."""
  if isinstance(value, (list, tuple)):
    value = ", ".join(str(v) for v in value)
  return str(value).replace("|", "\\|")


def _json_value(value):
  """A metric for JSON, which has no NaN: null where undefined."""
  value = float(value)
  return value if math.isfinite(value) else None
