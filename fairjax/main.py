r"""Trains, evaluates by group and reports one experiment.

  python -m fairjax.main --config=configs/default.py[:smoke] --workdir=DIR \
      [--config.optimizer.learning_rate=1e-4 ...]

Writes DIR/config.json, DIR/checkpoints/, TensorBoard events in DIR, DIR/history.jsonl and DIR/report/
(report.md; per evaluated split by_group.csv, summary.json and plots). DIR may be relative (to the
current folder) or remote (``gs://...``). Restarting with the same DIR resumes from the last checkpoint.
Bad input (a missing config file, an unknown or mistyped key, missing data, a DIR holding another
config's run) ends with one ``error:`` line and nothing written. On a pod slice or cluster, run the same
command on every host (see launch/README.md).
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fairjax import cli
from fairjax import paths
from fairjax.train import distributed
from fairjax.train import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, logs and the report.")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                 "Join a multi-process JAX job (auto: when a cluster is detected).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # orbax and CLU log every save at INFO
    logging.set_verbosity(logging.WARNING)
  workdir = paths.resolve(_WORKDIR.value)
  config = _CONFIG.value
  distributed.initialize(_DISTRIBUTED.value)
  logging.info("config:\n%s", config)
  final = loop.train_and_evaluate(config, workdir)
  if distributed.is_chief():
    print(f"report: {_WORKDIR.value}/report/report.md (selected step {final['selected_step']})")


if __name__ == "__main__":
  cli.run(main)
