r"""What group thresholds could make of a trained model: its accuracy against an equalized-odds bound.

  python -m experiments.eo_frontier --config=configs/default.py --workdir=out/default \
      [--split=test] [--epsilons=0.03,0.05,0.1,1] [--fit_split=validation]

Reads the checkpoint the run's report describes, scores ``--split`` with the primary head (binary) and,
for each epsilon, finds the best accuracy of any predictor derived from those scores and the primary
grouping with every pair of groups' TPRs and FPRs within epsilon (``fairjax.metrics.frontier``: Hardt
et al.'s post-processing, solved on these rows' labels, so an oracle for that split). Writes
``DIR/report/<split>/eo_frontier.csv`` and ``.md`` and prints the table. It is the ``eo_frontier``
evaluator (``fairjax.train.evaluators``) run after the fact; a config that lists it in
``config.evaluators`` gets the same tables at the end of training. ``--fit_split`` adds the deployable
frontier: the rule fitted on that split at each epsilon, judged on ``--split`` with bootstrap intervals
(``eo_frontier_fitted.csv``), groups of fewer faces than the config's ``postprocess.min_group_size``
pooled.

Why: it tells a mitigation's result apart from what the standard model's scores already allow. On the
default task (``configs/default.py``) the frontier at 0.05 is 0.898 against the model's 0.937: no
threshold rule reaches both the constrained config's epsilon and "at most 3 points of accuracy"; an
in-training mitigation must improve the under-represented group's ROC itself to do better.
"""

from absl import app
from absl import flags
from absl import logging
from etils import epath
from ml_collections import config_flags

from fairjax import cli
from fairjax import paths
from fairjax.report import run_report
from fairjax.train import evaluators
from fairjax.train import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The trained run's folder.")
_SPLIT = flags.DEFINE_string("split", "test", "Evaluated split to score.")
_EPSILONS = flags.DEFINE_list("epsilons", ["0.02", "0.03", "0.05", "0.075", "0.1", "1"],
                              "Bounds on the equalized-odds gap.")
_FIT_SPLIT = flags.DEFINE_string("fit_split", "", "Also fit the thresholds on this split and judge them on --split.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  if _SPLIT.value not in config.eval.splits:
    raise app.UsageError(f"--split={_SPLIT.value}: the config evaluates {list(config.eval.splits)}")
  try:
    epsilons = [float(e) for e in _EPSILONS.value]
  except ValueError as error:
    raise app.UsageError(f"--epsilons: {error}") from error
  workdir = paths.resolve_str(_WORKDIR.value)
  context = loop.reported_context(config, workdir)
  if _FIT_SPLIT.value and _FIT_SPLIT.value not in config.eval.splits:
    raise app.UsageError(f"--fit_split={_FIT_SPLIT.value}: the config evaluates {list(config.eval.splits)}")
  options = {"split": _SPLIT.value, "epsilons": epsilons}
  if _FIT_SPLIT.value:
    options.update(fit_split=_FIT_SPLIT.value, min_group_size=int(config.postprocess.min_group_size))
  evaluators.run_evaluators(context, ["eo_frontier"], {"eo_frontier": options})
  print((epath.Path(run_report.split_dir(workdir, _SPLIT.value)) / "eo_frontier.md").read_text())


if __name__ == "__main__":
  cli.run(main)
