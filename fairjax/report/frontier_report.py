"""The equalized-odds frontier's tables: ``report/<split>/eo_frontier.md`` and ``eo_frontier.csv``."""

import csv
import io
from typing import Optional, Sequence

from etils import epath

from fairjax import markdown


def write_tables(directory: str, results: Sequence[dict], labels: Sequence[str], model_row: dict,
                 title: str, fitted: Optional[Sequence[dict]] = None, fit_split: str = "") -> str:
  """Writes the frontier (``fairjax.metrics.frontier.equalized_odds_frontier``'s rows, one per epsilon,
  with each group's accuracy under ``labels``) beside the model as it is (``model_as_is``), and where
  given the rule fitted on ``fit_split`` at each epsilon (``fairjax.postprocess.thresholds.frontier``'s
  rows) in ``eo_frontier_fitted.csv`` and a second table; returns the markdown."""
  folder = epath.Path(directory)
  folder.mkdir(parents=True, exist_ok=True)
  table = io.StringIO()
  writer = csv.writer(table, lineterminator="\n")
  writer.writerow(["epsilon", "accuracy", *[f"accuracy_{g}" for g in labels]])
  for r in results:
    writer.writerow([r["epsilon"], r["accuracy"], *r["accuracy_by_group"]])
  (folder / "eo_frontier.csv").write_text(table.getvalue())
  lines = [f"# {title}", "",
           "Best accuracy of any group-threshold predictor (Hardt et al. 2016) of the model's scores with",
           "every pair of groups' TPRs and FPRs within epsilon, solved on this split's labels (an oracle).", "",
           f"The model as it is: accuracy {model_row['accuracy']:.4f}, equalized-odds gap "
           f"{model_row['gap']:.4f}.", ""]
  lines += markdown.table(["epsilon", "accuracy", *labels], [
      [f"{r['epsilon']:g}", markdown.number(r["accuracy"], 4), *(markdown.number(a) for a in r["accuracy_by_group"])]
      for r in results])
  if fitted is not None:
    lines += _fitted_table(folder, fitted, fit_split)
  text = "\n".join(lines) + "\n"
  (folder / "eo_frontier.md").write_text(text)
  return text


def _fitted_table(folder, fitted: Sequence[dict], fit_split: str) -> list[str]:
  columns = ("epsilon", "accuracy", "accuracy_lo", "accuracy_hi", "gap", "gap_lo", "gap_hi", "fit_accuracy",
             "fit_gap", "oracle_accuracy")
  table = io.StringIO()
  writer = csv.writer(table, lineterminator="\n")
  writer.writerow(columns)
  for r in fitted:
    low_high = [*r.get("accuracy_ci", ("", "")), *r.get("gap_ci", ("", ""))]
    writer.writerow([r["epsilon"], r["accuracy"], *low_high[:2], r["gap"], *low_high[2:], r["fit_accuracy"],
                     r["fit_gap"], r["oracle_accuracy"]])
  (folder / "eo_frontier_fitted.csv").write_text(table.getvalue())

  def with_interval(r, key):
    interval = r.get(f"{key}_ci")
    shown = f" [{markdown.number(interval[0], 4)}, {markdown.number(interval[1], 4)}]" if interval else ""
    return markdown.number(r[key], 4) + shown

  lines = ["", f"## The rule fitted on {fit_split}, judged here", "",
           f"Group thresholds fitted on {fit_split} at each epsilon (what a run's `config.postprocess` "
           "deploys), their expected accuracy and equalized-odds gap on this split (95 % bootstrap "
           "intervals of its rows), beside their figures where they were fitted and the oracle's accuracy.", ""]
  lines += markdown.table(["epsilon", "accuracy", "gap", f"{fit_split} accuracy", f"{fit_split} gap", "oracle"], [
      [f"{r['epsilon']:g}", with_interval(r, "accuracy"), with_interval(r, "gap"),
       markdown.number(r["fit_accuracy"], 4), markdown.number(r["fit_gap"], 4),
       markdown.number(r["oracle_accuracy"], 4)] for r in fitted])
  return lines
