"""Plots of group audits (matplotlib, Agg backend: files, never windows).

Each function takes the tables/summaries of ``fairjax.metrics.group_report`` and writes one PNG, so the audit
command, the training report and the experiments draw the same pictures.
"""

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from etils import epath
import numpy as np
import pandas as pd

DEFAULT_RATES = ("selection_rate", "tpr", "fpr", "ppv", "accuracy")


def save_figure(fig, path) -> None:
  """Writes ``fig`` as a PNG at ``path`` through ``etils.epath`` (a local or a ``gs://`` run folder
  alike) and closes it.

  Cropped to what is drawn, as ``bbox_inches="tight"`` would, but from the artists' extents measured
  once: "tight" first draws the whole figure without rendering and then measures, so every figure was
  laid out twice. The default smoke run's 35 figures took a median 2.9 s this way against 3.2 s (four
  alternating runs each on the 2-core machine, noisy: 2.3-3.4 s), the same pictures to a pixel or two.
  """
  box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.1)  # matplotlib's pad_inches
  with epath.Path(path).open("wb") as f:
    fig.savefig(f, format="png", dpi=110, bbox_inches=box)
  plt.close(fig)


def _row_labels(table: pd.DataFrame, key_columns: Sequence[str]) -> list[str]:
  # Column by column: iterrows() would turn an int key into a float when other columns are floats.
  columns = [table[c].astype(str).tolist() for c in key_columns]
  return [", ".join(values) for values in zip(*columns)]


def plot_group_rates(table: pd.DataFrame, key_columns: Sequence[str], path: str,
                     rates: Sequence[str] = DEFAULT_RATES, title: str = "") -> None:
  """Grouped bars: each rate of each group, with its bootstrap interval where the table has one."""
  rates = [r for r in rates if r in table.columns]
  labels = _row_labels(table, key_columns)
  x = np.arange(len(labels))
  width = 0.8 / max(len(rates), 1)
  fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) * max(len(rates), 1) / 2.5), 4.2))
  for i, rate in enumerate(rates):
    values = table[rate].to_numpy(float)
    err = None
    if f"{rate}_lo" in table.columns:
      lo, hi = table[f"{rate}_lo"].to_numpy(float), table[f"{rate}_hi"].to_numpy(float)
      err = np.nan_to_num(np.stack([values - lo, hi - values]).clip(min=0))
    ax.bar(x + (i - (len(rates) - 1) / 2) * width, np.nan_to_num(values), width, yerr=err,
           capsize=2, label=rate)
  ax.set_xticks(x, labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("rate")
  ax.set_xlabel(", ".join(key_columns))
  ax.set_title(title or "Rates by group" + (" (95% bootstrap intervals)" if f"{rates[0]}_lo" in table else ""))
  ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
  ax.grid(axis="y", alpha=0.3)
  save_figure(fig, path)


def plot_disparate_impact(table: pd.DataFrame, key_columns: Sequence[str], path: str,
                          privileged: str, threshold: float = 0.8) -> None:
  """Disparate impact of each group against the privileged one, with the 80 % rule drawn in."""
  labels = _row_labels(table, key_columns)
  values = table["disparate_impact"].to_numpy(float)
  colors = ["tab:red" if v < threshold else "tab:blue" for v in np.nan_to_num(values, nan=1.0)]
  fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(labels)), 3.8))
  err = None
  if "disparate_impact_lo" in table.columns:
    lo, hi = table["disparate_impact_lo"].to_numpy(float), table["disparate_impact_hi"].to_numpy(float)
    err = np.nan_to_num(np.stack([values - lo, hi - values]).clip(min=0))
  ax.bar(np.arange(len(labels)), np.nan_to_num(values), yerr=err, capsize=3, color=colors)
  ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"{threshold:.0%} rule")
  ax.axhline(1.0, color="gray", linewidth=0.8)
  ax.set_xticks(np.arange(len(labels)), labels, rotation=30 if len(labels) > 4 else 0,
                ha="right" if len(labels) > 4 else "center")
  ax.set_ylabel("selection rate / privileged's")
  ax.set_title(f"Disparate impact against {privileged}")
  ax.legend(fontsize="small")
  save_figure(fig, path)


def plot_threshold_sweep(sweep: dict, path: str) -> None:
  """Accuracy and macro F1 over the decision threshold, with the best thresholds marked."""
  t = np.asarray(sweep["thresholds"], float)
  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  for name in ("accuracy", "macro_f1"):
    ax.plot(t, np.asarray(sweep[name], float), marker="o", markersize=3, label=name)
  best = sweep["best_macro_f1"]
  ax.axvline(best["threshold"], color="gray", linestyle=":",
             label=f"best macro F1 at {best['threshold']:.2f}")
  ax.set_xlabel("threshold on the positive class's score")
  ax.set_ylabel("pooled figure")
  ax.set_title("Threshold sweep")
  ax.legend(fontsize="small")
  ax.grid(alpha=0.3)
  save_figure(fig, path)
