r"""What group thresholds could make of a trained model: its accuracy against an equalized-odds bound.

  python -m experiments.eo_frontier --config=configs/default.py --workdir=out/default \
      [--split=test] [--epsilons=0.03,0.05,0.1,1]

Reads the checkpoint the run's report describes, scores ``--split`` with the primary head (binary) and,
for each epsilon, finds the best accuracy of any predictor derived from those scores and the primary
grouping with every pair of groups' TPRs and FPRs within epsilon (``fairjax.metrics.frontier``: Hardt
et al.'s post-processing, solved on these rows' labels, so an oracle for that split). Writes
``DIR/report/<split>/eo_frontier.csv`` and ``.md`` and prints the table.

Why: it tells a mitigation's result apart from what the standard model's scores already allow. On the
default task (``configs/default.py``) the frontier at 0.05 is 0.898 against the model's 0.937: no
threshold rule reaches both the constrained config's epsilon and "at most 3 points of accuracy"; an
in-training mitigation must improve the under-represented group's ROC itself to do better.
"""

import csv
import os

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
from ml_collections import config_flags

from fairjax import cli
from fairjax import paths
from fairjax.data import augment
from fairjax.data import groups
from fairjax.metrics import frontier
from fairjax.models import forward as forward_lib
from fairjax.report import run_report
from fairjax.train import leakage
from fairjax.train import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The trained run's folder.")
_SPLIT = flags.DEFINE_string("split", "test", "Evaluated split to score.")
_EPSILONS = flags.DEFINE_list("epsilons", ["0.02", "0.03", "0.05", "0.075", "0.1", "1"],
                              "Bounds on the equalized-odds gap.")
flags.mark_flags_as_required(["config", "workdir"])


def split_scores(run, state, split_name: str) -> dict:
  """``{score, label, group}`` of every row of the split: the primary head's class-1 logit (or logit
  margin), its label and the primary grouping's code."""
  head, grouping = run.primary
  spec = next(s for s in run.model.heads if s.name == head)
  if spec.kind != "binary" and not (spec.kind == "multiclass" and spec.num_outputs == 2):
    raise ValueError(f"the frontier is for a two-class head; {head!r} is {spec.kind} with {spec.num_outputs} outputs")
  data_config, apply_fn = run.config.data, run.model.apply

  def score(state, batch):
    outputs, _ = forward_lib.forward(apply_fn, state.params["model"], state.model_state,
                                    augment.eval_images(batch, data_config), jax.random.key(0), train=False)
    out = outputs[head]
    margin = out.reshape(-1) if out.ndim == 1 or out.shape[-1] == 1 else out[:, 1] - out[:, 0]
    return {"score": margin, "label": batch[spec.key], "group": groups.group_codes(batch, grouping),
            "mask": batch["mask"]}

  return leakage.split_rows(run, run.runner.row_function(score), state, run.eval_splits[split_name])


def write_tables(directory: str, results: list[dict], labels: list[str], model_row: dict, title: str) -> str:
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "eo_frontier.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["epsilon", "accuracy", *[f"accuracy_{g}" for g in labels]])
    for r in results:
      writer.writerow([r["epsilon"], r["accuracy"], *r["accuracy_by_group"]])
  lines = [f"# {title}", "",
           "Best accuracy of any group-threshold predictor (Hardt et al. 2016) of the model's scores with",
           "every pair of groups' TPRs and FPRs within epsilon, solved on this split's labels (an oracle).", "",
           f"The model as it is: accuracy {model_row['accuracy']:.4f}, equalized-odds gap "
           f"{model_row['gap']:.4f}.", "",
           "| epsilon | accuracy | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
  for r in results:
    lines.append(f"| {r['epsilon']:g} | {r['accuracy']:.4f} | "
                 + " | ".join(f"{a:.3f}" for a in r["accuracy_by_group"]) + " |")
  text = "\n".join(lines) + "\n"
  with open(os.path.join(directory, "eo_frontier.md"), "w") as f:
    f.write(text)
  return text


def model_as_is(rows: dict, num_groups: int) -> dict:
  """The model's own accuracy and equalized-odds gap at its decision threshold (logit 0)."""
  predicted, y, g = rows["score"] > 0, rows["label"] == 1, rows["group"]
  tpr = [np.mean(predicted[(g == k) & y]) for k in range(num_groups)]
  fpr = [np.mean(predicted[(g == k) & ~y]) for k in range(num_groups)]
  return {"accuracy": float(np.mean(predicted == y)), "gap": float(max(np.ptp(tpr), np.ptp(fpr)))}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  if _SPLIT.value not in config.eval.splits:
    raise app.UsageError(f"--split={_SPLIT.value}: the config evaluates {list(config.eval.splits)}")
  workdir = paths.resolve_str(_WORKDIR.value)
  run, state, step = loop.reported_state(config, workdir)
  rows = split_scores(run, state, _SPLIT.value)
  labels = groups.group_labels(run.primary[1])
  known = (rows["label"] >= 0) & (rows["group"] >= 0)
  rows = {k: v[known] for k, v in rows.items()}
  results = frontier.equalized_odds_frontier(rows["score"], rows["label"], rows["group"],
                                             [float(e) for e in _EPSILONS.value], num_groups=len(labels))
  title = (f"Equalized-odds frontier of {run.primary[0]} by {run.primary[1]} on {_SPLIT.value} "
           f"(checkpoint {step})")
  text = write_tables(run_report.split_dir(workdir, _SPLIT.value), results, labels,
                      model_as_is(rows, len(labels)), title)
  print(text)


if __name__ == "__main__":
  cli.run(main)
