r"""Trains, evaluates by group and reports one experiment.

  python -m fairjax.main --config=configs/default.py[:smoke] --workdir=DIR \
      [--config.optimizer.learning_rate=1e-4 ...]

Writes DIR/config.json, DIR/checkpoints/, TensorBoard events in DIR, DIR/history.jsonl and DIR/report/
(report.md; per evaluated split by_group.csv, summary.json and plots). Restarting with the same DIR
resumes from the last checkpoint. On a pod slice or cluster, run the same command on every host (see
launch/README.md).
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

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
  distributed.initialize(_DISTRIBUTED.value)
  logging.info("config:\n%s", _CONFIG.value)
  final = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if distributed.is_chief():
    print(f"report: {_WORKDIR.value}/report/report.md (selected step {final['selected_step']})")


if __name__ == "__main__":
  app.run(main)
