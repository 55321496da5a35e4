"""Post-processing in a run: group thresholds fitted on one evaluated split and applied to every one.

With ``config.postprocess.constraint`` set, a run ends by fitting Hardt et al.'s group thresholds
(``fairjax.postprocess.thresholds``) to the primary head's scores on ``fit_split`` (validation), by the
primary grouping, and applying them to every evaluated split. The fitted rule is saved as
``report/postprocess/thresholds.json`` (``python -m fairjax.postprocess --predictor=...`` applies it to
any CSV of scores). Each split's post-processed figures are the *expected* figures of the randomised rule
(each row counts as predicted positive with its probability ``p_post``: no one draw's noise), computed by
the same summary as the raw ones (``evaluate.classifier_result``), and join the split's metrics as
``postprocessed/<head>/...``; so ``final_metrics.json`` holds ``<split>/postprocessed/<head>/...`` beside
the raw ``<split>/<head>/...``, and ``report.md`` gets a table of both.

The fit split must not be the one the result is read on: on validation-fitted thresholds the test
figures are honest, the validation ones optimistic (they are shown, and labelled as the fit).
"""

import json
import os

import jax.numpy as jnp
import numpy as np

from fairjax import markdown
from fairjax import paths
from fairjax.data import groups
from fairjax.metrics import confusion
from fairjax.postprocess import thresholds
from fairjax.report import run_report
from fairjax.train import evaluate
from fairjax.train import evaluators

PREFIX = "postprocessed/"
FOLDER = "postprocess"
# The figures report.md shows raw beside post-processed, by (name, metric key under the head).
SHOWN = (("accuracy", "accuracy"), ("worst-group accuracy", "{grouping}/worst_group_accuracy"),
         ("equalized-odds gap", "{grouping}/equalized_odds_difference"),
         ("equal-opportunity gap", "{grouping}/equal_opportunity_difference"),
         ("demographic-parity gap", "{grouping}/demographic_parity_difference"))


def check_config(config) -> None:
  """One-line errors for a post-processing config that cannot run, before training starts."""
  options = config.postprocess
  if not options.constraint:
    return
  if options.constraint not in thresholds.CONSTRAINTS:
    raise ValueError(f"config.postprocess.constraint must be one of {', '.join(thresholds.CONSTRAINTS)} (or '' "
                     f"for none), got {options.constraint!r}")
  if not 0 <= options.epsilon <= 1:
    raise ValueError(f"config.postprocess.epsilon must lie in [0, 1], got {options.epsilon}")
  if options.fit_split not in config.eval.splits:
    raise ValueError(f"config.postprocess.fit_split {options.fit_split!r} is not evaluated; config.eval.splits "
                     f"is {list(config.eval.splits)}")


def soft_counts(p_post, labels, codes, num_groups: int):
  """``[G, 2, 2]`` expected confusion counts (true x predicted) of rows predicted 1 with probability
  ``p_post``."""
  positive = confusion.confusion_counts(labels, jnp.ones_like(labels), codes, num_groups=num_groups,
                                        num_classes=2, weights=p_post)
  negative = confusion.confusion_counts(labels, jnp.zeros_like(labels), codes, num_groups=num_groups,
                                        num_classes=2, weights=1.0 - p_post)
  return positive + negative


def postprocess(context: evaluators.RunContext, *, constraint: str, epsilon: float = 0.0,
                fit_split: str = "validation", randomized: bool = True, min_group_size: int = 30,
                seed: int = 0) -> evaluators.Findings:
  """Fits the rule on ``fit_split`` and returns every split's post-processed figures and a report note.

  ``context.splits`` must hold ``fit_split``; the head is the run's primary head (two classes), the
  grouping its primary grouping. ``seed`` is recorded with the rule (the figures are expected values)."""
  head, grouping = context.primary
  if fit_split not in context.splits:
    raise ValueError(f"postprocess: fit_split {fit_split!r} is not evaluated; the run evaluates "
                     f"{sorted(context.splits)}")
  spec = next(s for s in context.model.heads if s.name == head)
  labels = groups.group_labels(grouping)
  rows = {name: _known(evaluators.primary_scores(context, name)) for name in context.splits}
  fit = rows[fit_split]
  predictor = thresholds.fit(fit["score"], fit["label"], fit["group"], num_groups=len(labels),
                             constraint=constraint, epsilon=epsilon, randomized=randomized,
                             group_names=labels, min_group_size=min_group_size)
  predictor.source = {"run": context.workdir, "checkpoint": int(context.step), "head": head,
                      "grouping": grouping, "fit_split": fit_split, "score": "logit of class 1", "seed": seed}
  found = evaluators.Findings()
  for name, split_rows in rows.items():
    p_post = predictor.probabilities(split_rows["score"], split_rows["group"])
    counts = soft_counts(p_post, jnp.asarray(split_rows["label"]), jnp.asarray(split_rows["group"]), len(labels))
    result = evaluate.classifier_result(spec, {"overall": counts.sum(0), grouping: counts},
                                        privileged=context.privileged)
    found.metrics[name] = {PREFIX + key: value for key, value in result.metrics.items()}
  if context.writes:
    path = os.path.join(context.workdir, run_report.REPORT_DIR, FOLDER, "thresholds.json")
    if paths.is_remote(path):
      paths.resolve(path).parent.mkdir(parents=True, exist_ok=True)
      paths.resolve(path).write_text(json.dumps(predictor.to_json(), indent=2))
    else:
      predictor.save(path)
    found.notes.extend(_note(predictor, head, grouping, fit_split))
  return found


def _known(rows: dict) -> dict:
  known = (rows["label"] >= 0) & (rows["group"] >= 0)
  return {key: value[known] for key, value in rows.items()}


def _note(predictor, head, grouping, fit_split) -> list:
  """Lines of ``report.md``: the rule, and each split raw beside post-processed. The raw figures are the
  split's own metrics, filled in by ``raw_beside_postprocessed`` once the evaluation is at hand."""
  rule = "randomised" if predictor.randomized else "deterministic"
  lines = [f"Post-processing: {rule} group thresholds of {head}'s scores by {grouping} under "
           f"{predictor.constraint} (gaps at most {predictor.epsilon:g}), fitted on {fit_split} "
           f"([thresholds]({FOLDER}/thresholds.json)); figures are the rule's expected ones."]
  pooled = [name for name, flag in zip(predictor.group_names, predictor.pooled) if flag]
  if pooled:
    lines.append(f"Groups too small to fit on {fit_split}, given the pooled rule: {', '.join(pooled)}.")
  if predictor.note:
    lines.append(predictor.note)
  return lines


def raw_beside_postprocessed(results, head: str, grouping: str, fit_split: str) -> list:
  """A markdown table: the figures of ``SHOWN`` (rows) of each split raw and post-processed (columns),
  the fit split marked."""
  header = ["figure"]
  for name in results:
    label = f"{name} (fit)" if name == fit_split else name
    header += [f"{label} raw", f"{label} post-processed"]
  table_rows = []
  for figure, key in SHOWN:
    key = f"{head}/{key.format(grouping=grouping)}"
    cells = [figure]
    for result in results.values():
      cells += [markdown.number(result.metrics.get(key, np.nan)), markdown.number(result.metrics.get(PREFIX + key, np.nan))]
    table_rows.append(cells)
  return markdown.table(header, table_rows)
