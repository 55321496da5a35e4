"""The equalized-odds frontier's tables: ``report/<split>/eo_frontier.md`` and ``eo_frontier.csv``."""

import csv
import io
from typing import Sequence

from etils import epath

from fairjax import markdown


def write_tables(directory: str, results: Sequence[dict], labels: Sequence[str], model_row: dict,
                 title: str) -> str:
  """Writes the frontier (``fairjax.metrics.frontier.equalized_odds_frontier``'s rows, one per epsilon,
  with each group's accuracy under ``labels``) beside the model as it is (``model_as_is``); returns the
  markdown."""
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
  text = "\n".join(lines) + "\n"
  (folder / "eo_frontier.md").write_text(text)
  return text
