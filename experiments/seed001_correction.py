r"""Seed 001's correction models on its retrained age models: do they lower the test MAE?

  python -m experiments.seed001_correction --manual_dir=../shared/data [--output_dir=out/seeds] \
      [--rows=seed001_age,seed001_age_x2,seed001_age_x3]

Seed 001 (§ 校正模型) fits a second-level model on its CNN's (predicted age, gender, race) to correct the
CNN's systematic errors by group, tunes several kinds of model, then tries a heuristic (the mean error
of each predicted-age band x race x gender cell, subtracted), and reports that none improved the CNN,
without figures. This runs the ``age_correction`` evaluator (``fairjax.train.age_correction``: linear,
gradient-boosted trees and the heuristic, fitted on validation, judged on test) on each seed 001 age run
that ``python -m experiments.reproduce_seeds --run --rows=seed001_age,seed001_age_x2,seed001_age_x3``
trained into ``--output_dir``, on the checkpoint each run's report describes, and writes
``experiments/results/seed001_correction.md`` and ``.csv`` (``--results_dir``): per run, the overall MAE
and mean signed error before and after each correction, the MAE's change with its paired bootstrap
interval, and each race x gender group's; each run's own report gets ``report/test/age_correction.md``.
A run not trained yet is listed as such, with the command that trains it. ``--smoke`` trains the rows'
smoke variants into ``--output_dir`` first and writes the table there (for tests; numbers meaningless).
"""

import os
import sys
import time

from absl import flags
from absl import logging
import pandas as pd

from experiments import seed_headlines
from fairjax import cli
from fairjax import markdown
from fairjax.train import age_correction
from fairjax.train import evaluators
from fairjax.train import loop

ROWS = ("seed001_age", "seed001_age_x2", "seed001_age_x3")
SEED_FINDING = ("Seed 001: neither the correction models nor the heuristic improved the CNN's MAE "
                "(no figures given); its best model, over-60s x3, has MAE 7.8.")

_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder holding UTKFace.tar.gz.")
_OUTPUT = flags.DEFINE_string("output_dir", "out/seeds", "Folder of reproduce_seeds' training runs.")
_RESULTS = flags.DEFINE_string("results_dir", seed_headlines.RESULTS, "Where seed001_correction.md/.csv go.")
_ROWS = flags.DEFINE_list("rows", list(ROWS), "Which of seed 001's age runs to correct.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Train the smoke runs first; table in --output_dir (for tests).")


def correct(row: seed_headlines.Row, output_dir: str, manual_dir, smoke: bool) -> pd.DataFrame:
  """The evaluator's table for one finished run (a ``run`` column in front)."""
  workdir = os.path.join(output_dir, row.key)
  config = row.build_config(manual_dir, smoke)
  context = loop.reported_context(config, workdir)
  evaluators.run_evaluators(context, [age_correction.NAME])
  table = pd.read_csv(os.path.join(workdir, "report", "test", age_correction.NAME + ".csv"))
  return table.assign(run=row.key)[["run", *table.columns]]


def write(tables: dict, missing: dict, results_dir: str, seconds: float) -> str:
  os.makedirs(results_dir, exist_ok=True)
  lines = ["# Seed 001's correction models on its retrained age models", "",
           f"Command: `python -m experiments.seed001_correction --manual_dir=../shared/data` ({seconds:.0f} s for "
           "the corrections, on the checkpoints each run's report describes; seed 0). Each correction is fitted "
           "on the run's validation predictions and judged on its test split (adults, as the seed scored); "
           "change = MAE after - before, negative where it helped, with a paired bootstrap 95 % interval "
           "(1,000 resamples of the test rows).", "", SEED_FINDING, ""]
  for key, table in tables.items():
    lines += [f"## {key}", ""]
    lines += markdown.table(["method", "n", *age_correction.FIGURE_HEADER],
                            age_correction.table_rows(age_correction.overall_rows(table), with_groups=False))
    helped = table[(table.mae_change_upper < 0) & (table.race != "all")]
    hurt = table[(table.mae_change_lower > 0) & (table.race != "all")]
    lines += ["", f"Race x gender groups whose MAE the correction lowered beyond its interval: "
              f"{_groups(helped) or 'none'}; raised: {_groups(hurt) or 'none'}. Every group's figures: "
              "`seed001_correction.csv`.", ""]
  for key, command in missing.items():
    lines += [f"## {key}", "", f"Not trained yet: `{command}`.", ""]
  if tables:  # each file written whole, then renamed into place: a killed run leaves the old one
    table_path = os.path.join(results_dir, "seed001_correction.csv")
    pd.concat(tables.values(), ignore_index=True).to_csv(table_path + ".tmp", index=False, float_format="%.6g")
    os.replace(table_path + ".tmp", table_path)
  path = os.path.join(results_dir, "seed001_correction.md")
  with open(path + ".tmp", "w") as f:
    f.write("\n".join(lines))
  os.replace(path + ".tmp", path)
  return path


def _groups(frame: pd.DataFrame) -> str:
  return "; ".join(f"{r.method} {r.race} {r.gender} ({r.mae_change:+.2f})" for r in frame.itertuples())


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  unknown = sorted(set(_ROWS.value) - set(ROWS))
  if unknown:
    raise ValueError(f"--rows names {unknown}; seed 001's age runs: {', '.join(ROWS)}")
  rows = {row.key: row for row in seed_headlines.ROWS if row.key in _ROWS.value}
  output_dir = os.path.abspath(_OUTPUT.value)
  manual_dir = seed_headlines.utkface(_MANUAL_DIR.value)
  if _SMOKE.value:
    for row in rows.values():
      seed_headlines.train(row, output_dir, manual_dir, smoke=True)
  started = time.time()
  tables, missing = {}, {}
  for key, row in rows.items():
    if loop.finished(os.path.join(output_dir, key), row.build_config(manual_dir, _SMOKE.value)):
      tables[key] = correct(row, output_dir, manual_dir, _SMOKE.value)
    else:
      missing[key] = row.command
  path = write(tables, missing, output_dir if _SMOKE.value else _RESULTS.value, time.time() - started)
  print(open(path).read(), end="")
  sys.stdout.flush()


if __name__ == "__main__":
  cli.run(main)
