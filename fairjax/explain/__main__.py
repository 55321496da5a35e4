r"""Why a trained run's model errs, by group: attribution maps, their faithfulness, and galleries.

  python -m fairjax.explain --config=configs/default.py --workdir=out/default \
      --methods=ig,gradcam,lime [--split=test] [--per_group=16] [--head=gender] \
      [--method_options='{"lime": {"num_samples": 500}}'] [--seed=0] [--output_dir=...]

Reads the checkpoint the run's report describes, explains up to ``--per_group`` faces of each race x
gender group of ``--split`` with each method (``ig``, ``smoothgrad``, ``gradcam``, ``occlusion``,
``lime``), and writes ``explain.json``, ``explain.md`` and PNG figures under ``--output_dir`` (default
``DIR/report/<split>/explain``), linked from the run's ``report.md``. See ``fairjax.explain.by_group``
for the figures and ``fairjax.explain.explain_report`` for the files. Bad input (an unknown method or
option, a head the model lacks, a workdir without a finished run) is one ``error:`` line.
"""

import json

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fairjax import cli
from fairjax import paths
from fairjax.explain import by_group
from fairjax.explain import explain_report
from fairjax.explain import methods as methods_lib
from fairjax.train import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The trained run's folder.")
_METHODS = flags.DEFINE_list("methods", ["ig", "gradcam", "lime"],
                             f"Attribution methods, from {', '.join(methods_lib.NAMES)}.")
_SPLIT = flags.DEFINE_string("split", "test", "Evaluated split whose faces are explained.")
_PER_GROUP = flags.DEFINE_integer("per_group", 16, "Faces explained (and misclassified faces shown) per "
                                  "race x gender group.")
_HEAD = flags.DEFINE_string("head", None, "Head to explain (default: the run's primary head).")
_METHOD_OPTIONS = flags.DEFINE_string("method_options", "{}", "JSON: options per method, e.g. "
                                      '\'{"lime": {"num_samples": 500}, "ig": {"steps": 32}}\'.')
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the faces drawn and of the methods' randomness.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write (default DIR/report/<split>/explain).")
flags.mark_flags_as_required(["config", "workdir"])


def _method_options() -> dict:
  try:
    options = json.loads(_METHOD_OPTIONS.value)
  except json.JSONDecodeError as error:
    raise app.UsageError(f"--method_options is not JSON: {error}") from error
  if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
    raise app.UsageError('--method_options must map methods to options, e.g. {"lime": {"num_samples": 500}}')
  return options


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  methods = [m.strip() for m in _METHODS.value if m.strip()]
  if not methods:
    raise app.UsageError("--methods names no method")
  options = _method_options()
  methods_lib.check(methods, options)  # before the run is restored: a typo costs no time
  if _SPLIT.value not in config.eval.splits:
    raise app.UsageError(f"--split={_SPLIT.value}: the config evaluates {list(config.eval.splits)}")
  workdir = paths.resolve_str(_WORKDIR.value)
  context = loop.reported_context(config, workdir)
  result = by_group.explain_run(context, _SPLIT.value, methods, head=_HEAD.value,
                                per_group=_PER_GROUP.value, seed=_SEED.value, options=options)
  directory = (paths.resolve_str(_OUTPUT_DIR.value) if _OUTPUT_DIR.value
               else explain_report.output_dir(workdir, _SPLIT.value))
  if context.writes:
    explain_report.write(result, directory, workdir)
    print(f"wrote {directory}/explain.md")


if __name__ == "__main__":
  cli.run(main)
