"""The ``age_correction`` evaluator: seed 001's correction models of a trained age model, fitted on one
split and judged on another.

Seed 001 (§ 校正模型) fits a second-level model on the CNN's (predicted age, gender, race) to correct its
systematic over- and under-estimation by group, and a heuristic (the mean error of each predicted-age
band x race x gender cell, subtracted), and finds that neither improves the CNN. This evaluator fits
each of ``fairjax.postprocess.regression``'s methods (linear, gbt, heuristic) to the age head's
predictions on ``fit_split`` (validation) and applies it to ``apply_split`` (test), where it reports,
per race x gender group and overall, the MAE and mean signed error before and after with a bootstrap
interval on the MAE's change (``regression.correction_report``). A correction fitted and judged on the
same rows would flatter itself, so the two splits must differ.

Written on the writing process: ``report/<apply_split>/age_correction.{md,csv}`` and the fitted
corrections, ``report/age_correction/<method>.json`` (``.joblib`` for gbt), which
``regression.load_correction`` reads back to apply at inference. Figures joining ``apply_split``'s
metrics: ``age_correction/<method>/mae`` and ``.../mae_change`` beside ``age_correction/mae_before``.

List it in ``config.evaluators``, or run it on a finished run's reported checkpoint after the fact
(``loop.reported_context`` then ``evaluators.run_evaluators``), as ``experiments/seed001_correction.py``
does for seed 001's three age runs.
"""

import io
import os
import tempfile
from typing import Sequence

from etils import epath
import numpy as np
import pandas as pd

from fairjax import markdown
from fairjax import paths
from fairjax.data import groups
from fairjax.models import heads as heads_lib
from fairjax.postprocess import regression
from fairjax.report import run_report
from fairjax.train import evaluate
from fairjax.train import evaluators

NAME = "age_correction"


def _age_rows(context: evaluators.RunContext, head: str, split_name: str) -> dict:
  """``{predicted, true, gender, race}`` of every row of a split: the head's predicted value (a binned
  head's expected value, as the run's report scores it) and the row's label."""
  spec = next((s for s in context.model.heads if s.name == head), None)
  if spec is None or not evaluate.is_regressor(spec):
    raise ValueError(f"{NAME}: head {head!r} is not a regression or binned head of this model; its heads: "
                     f"{[s.name for s in context.model.heads]}")

  def predict(state, batch):
    value = heads_lib.predict(spec, context.outputs(state, batch)[head])["value"].reshape(-1)
    return {"predicted": value, "true": batch[spec.key], "mask": batch["mask"],
            **{attribute: batch[attribute] for attribute in groups.ATTRIBUTES}}

  rows = context.rows(predict, split_name)
  rows["true"] = np.where(rows["true"] >= 0, rows["true"], np.nan).astype(np.float64)  # -1: unknown age
  return rows


def fit_and_report(fit: dict, apply: dict, methods: Sequence[str], *, num_resamples: int, seed: int):
  """Each method's correction fitted on ``fit``'s rows with a known age, and one table of their reports
  on ``apply`` (a ``method`` column in front of ``regression.correction_report``'s)."""
  known = np.isfinite(fit["true"]) & np.isfinite(fit["predicted"])
  if known.sum() < 2:
    raise ValueError(f"{NAME}: the fit split has {int(known.sum())} rows with a known age; a correction "
                     "needs more")
  corrections, tables = {}, []
  for method in methods:
    correction = regression.fit_correction(fit["predicted"][known], fit["gender"][known], fit["race"][known],
                                           fit["true"][known], method=method)
    after = correction.apply(apply["predicted"], apply["gender"], apply["race"])
    table = regression.correction_report(apply["true"], apply["predicted"], after, apply["gender"],
                                         apply["race"], groups.ATTRIBUTES["gender"], groups.ATTRIBUTES["race"],
                                         num_resamples=num_resamples, seed=seed)
    corrections[method] = correction
    tables.append(table.assign(method=method)[["method", *table.columns]])
  return corrections, pd.concat(tables, ignore_index=True)


# The columns of ``table_rows``: the figures of one row of the table, without its race and gender.
FIGURE_HEADER = ["MAE before", "MAE after", "change [95% CI]", "signed error before", "signed error after"]


def overall_rows(table: pd.DataFrame) -> pd.DataFrame:
  """Each method's row over all groups."""
  return table[(table.race == "all") & (table.gender == "all")]


def table_rows(frame: pd.DataFrame, with_groups: bool = True) -> list[list]:
  """Markdown cells of each row: method, [race, gender,] n, then ``FIGURE_HEADER``'s figures."""
  return [[r.method, *((r.race, r.gender) if with_groups else ()), r.n, markdown.number(r.mae_before, 2),
           markdown.number(r.mae_after, 2), f"{r.mae_change:+.2f} [{r.mae_change_lower:+.2f}, {r.mae_change_upper:+.2f}]",
           f"{r.mean_signed_error_before:+.2f}", f"{r.mean_signed_error_after:+.2f}"] for r in frame.itertuples()]


def markdown_table(table: pd.DataFrame, title: str) -> str:
  """The report's page: the overall row of each method, then each method's groups."""
  header = ["method", "race", "gender", "n", *FIGURE_HEADER]
  overall = overall_rows(table)
  lines = [f"# {title}", "",
           "MAE in years of the age head's predictions before and after each correction, fitted on the fit",
           "split's predictions and applied to these rows; change = after - before (negative: the correction",
           "helped), its interval a paired bootstrap over rows; signed error = predicted - true.", "",
           "## All rows", ""]
  lines += markdown.table(header, table_rows(overall))
  lines += ["", "## By race x gender", ""]
  lines += markdown.table(header, table_rows(table.drop(overall.index)))
  return "\n".join(lines) + "\n"


@evaluators.register(NAME)
def age_correction(context: evaluators.RunContext, *, head: str = "age", fit_split: str = "validation",
                   apply_split: str = "test", methods: Sequence[str] = regression.METHODS,
                   num_resamples: int = 1000) -> evaluators.Findings:
  """Seed 001's correction models of ``head``, fitted on ``fit_split`` and reported on ``apply_split``."""
  for name in (fit_split, apply_split):
    if name not in context.splits:
      raise ValueError(f"{NAME}: split {name!r} is not evaluated; the run evaluates {sorted(context.splits)}")
  if fit_split == apply_split:
    raise ValueError(f"{NAME}: fit_split and apply_split are both {fit_split!r}; a correction judged on the "
                     "rows it was fitted on flatters itself")
  unknown = sorted(set(methods) - set(regression.METHODS))
  if unknown:
    raise ValueError(f"{NAME}: unknown method {', '.join(map(repr, unknown))}; known: "
                     f"{', '.join(regression.METHODS)}")
  corrections, table = fit_and_report(_age_rows(context, head, fit_split), _age_rows(context, head, apply_split),
                                      methods, num_resamples=num_resamples, seed=context.config.seed)
  overall = overall_rows(table).set_index("method")
  figures = {f"{NAME}/mae_before": float(overall.mae_before.iloc[0])}
  for method, r in overall.iterrows():
    figures.update({f"{NAME}/{method}/mae": float(r.mae_after), f"{NAME}/{method}/mae_change": float(r.mae_change)})
  found = evaluators.Findings(metrics={apply_split: figures})
  if context.writes:
    folder = epath.Path(run_report.split_dir(context.workdir, apply_split))
    folder.mkdir(parents=True, exist_ok=True)
    csv_text = io.StringIO()
    table.to_csv(csv_text, index=False, float_format="%.6g")
    (folder / f"{NAME}.csv").write_text(csv_text.getvalue())
    title = (f"Correction models of {head}, fitted on {fit_split}, applied to {apply_split} "
             f"(checkpoint {context.step})")
    (folder / f"{NAME}.md").write_text(markdown_table(table, title))
    saved = epath.Path(context.workdir) / "report" / NAME
    saved.mkdir(parents=True, exist_ok=True)
    for method, correction in corrections.items():
      _save(correction, os.fspath(saved / (method + (".joblib" if method == "gbt" else ".json"))))
    found.notes.append(f"Correction models of {head} (fitted on {fit_split}): MAE on {apply_split} "
                       f"{figures[f'{NAME}/mae_before']:.2f} before; " + ", ".join(
                           f"{m} {r.mae_after:.2f}" for m, r in overall.iterrows())
                       + f" ([{apply_split}/{NAME}.md]({apply_split}/{NAME}.md)).")
  return found


def _save(correction: regression.AgeCorrection, path: str) -> None:
  """``correction.save`` to a local path; through a local file to a remote workdir."""
  if not paths.is_remote(path):
    correction.save(path)
    return
  with tempfile.TemporaryDirectory(prefix="fairjax-correction-") as local:
    staged = os.path.join(local, os.path.basename(path))
    correction.save(staged)
    epath.Path(path).write_bytes(epath.Path(staged).read_bytes())
