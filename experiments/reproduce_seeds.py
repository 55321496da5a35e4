r"""Every seed's headline on real UTKFace in one table: the seed's number, fairjax's, a 95 % interval.

  python -m experiments.reproduce_seeds --manual_dir=../shared/data             # tabulate what has run
  python -m experiments.reproduce_seeds --manual_dir=../shared/data --run \
      [--rows=seed000_6.1,seed001_age]                                         # train what is missing

Writes ``experiments/results/seeds.md`` and ``seeds.csv`` (``--results_dir``): per row the seed's figure,
fairjax's with its bootstrap interval, this CPU's size, the wall time, the command that gives it, and one
line on why they differ. The training rows run in ``OUT/<row>`` (``--output_dir``, default out/seeds),
reusing finished runs and resuming interrupted ones, so ``--run`` in the background, stopped and
restarted, ends where one uninterrupted call would. Rows read from other experiments (seed 001's
pretrained models, seed 003's CLIP, seed 004) are run by their own commands, which the table names.
A row that has not run says so and gives its command and its cost on this CPU. ``--smoke`` trains the
training rows' smoke variants into ``--output_dir`` and writes the table there (for tests; the numbers
mean nothing).
"""

import os
import time

from absl import flags
from absl import logging

from experiments import seed_headlines
from fairjax import cli

_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder holding UTKFace.tar.gz.")
_OUTPUT = flags.DEFINE_string("output_dir", "out/seeds", "Folder of the training rows' runs.")
_RESULTS = flags.DEFINE_string("results_dir", seed_headlines.RESULTS, "Where seeds.md and seeds.csv go.")
_ROWS = flags.DEFINE_list("rows", None, "Rows to train with --run (default: every training row).")
_RUN = flags.DEFINE_bool("run", False, "Train the training rows that have not finished.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Smoke runs, table in --output_dir (for tests).")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  keys = {row.key: row for row in seed_headlines.ROWS}
  chosen = _ROWS.value or [row.key for row in seed_headlines.ROWS if row.config]
  unknown = [k for k in chosen if k not in keys]
  if unknown:
    raise ValueError(f"--rows names unknown rows {unknown}; rows: {', '.join(keys)}")
  not_trained = [k for k in chosen if not keys[k].config]
  if _RUN.value and not_trained:
    raise ValueError(f"--rows {not_trained} are read from other experiments; run the commands the table names")
  output_dir = os.path.abspath(_OUTPUT.value)
  if _RUN.value or _SMOKE.value:
    manual_dir = seed_headlines.utkface(_MANUAL_DIR.value)
    for key in chosen:
      started = time.time()
      seed_headlines.train(keys[key], output_dir, manual_dir, smoke=_SMOKE.value)
      print(f"{key}: {time.time() - started:.0f} s", flush=True)
  rows = [keys[k] for k in chosen] if _SMOKE.value else seed_headlines.ROWS
  results_dir = output_dir if _SMOKE.value else _RESULTS.value
  entries = seed_headlines.table_rows(rows, output_dir, os.path.join(results_dir, "seeds.csv"))
  intro = ["Each row: the seed's headline figure, fairjax's on real UTKFace at this CPU's size, the 95 % "
           "bootstrap interval of the run report (test rows resampled), the training time on this 2-core CPU "
           "(summed over the sessions that trained it, and shared with other runs and tests: an upper bound), "
           "the command, and why the two differ. Rows not yet run give their command and cost instead of a "
           "number; a row whose run is not on the machine that wrote the table keeps the figure the table held, "
           "measured by the same command. Written by `python -m experiments.reproduce_seeds`."]
  path = seed_headlines.write(entries, results_dir, intro)
  print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
