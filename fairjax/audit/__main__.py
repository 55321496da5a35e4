r"""Audits any model's predictions from a CSV file with fairjax's group metrics.

  python -m fairjax.audit --input=preds.csv --label_column=y --prediction_column=y_hat \
      [--score_column=p] [--positive_label=1] --sensitive_columns=race[,gender] \
      [--privileged_group=0[,1]] [--n_boot=1000] [--seed=0] --output_dir=OUT

  python -m fairjax.audit --example --output_dir=OUT   # a built-in example, no input needed

Writes OUT/by_group.csv, OUT/summary.json and PNG plots. Bad input ends with a one-line error and exit
status 1, and OUT is left untouched: everything is computed before the first file is written, and the
files are written to a staging folder and moved into OUT together.
"""

import sys
import warnings

from absl import flags
from absl import logging

from fairjax import cli
from fairjax import paths
from fairjax.audit import core
from fairjax.audit import example as example_lib
from fairjax.audit import inputs
from fairjax.metrics import group_report as report_lib

_INPUT = flags.DEFINE_string("input", None, "CSV file with one row per example.")
_EXAMPLE = flags.DEFINE_bool("example", False, "Audit a built-in example instead of --input.")
_LABEL = flags.DEFINE_string("label_column", "y", "Column of true labels (numeric class values).")
_PREDICTION = flags.DEFINE_string("prediction_column", "y_hat", "Column of predicted labels.")
_SCORE = flags.DEFINE_string("score_column", None, "Optional column of the positive class's score.")
_POSITIVE = flags.DEFINE_float("positive_label", 1, "Label value of the positive class (binary tasks).")
_SENSITIVE = flags.DEFINE_list("sensitive_columns", ["race"], "Sensitive attribute column(s).")
_PRIVILEGED = flags.DEFINE_list(
    "privileged_group", None,
    "Value of each sensitive column for the privileged group; default the largest group.")
_N_BOOT = flags.DEFINE_integer("n_boot", 0, "Bootstrap resamples for 95% intervals (0: none).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the bootstrap (and of the built-in example).")
_THRESHOLDS = flags.DEFINE_list(
    "thresholds", [str(t) for t in report_lib.DEFAULT_THRESHOLDS],
    "Thresholds of the score sweep (with --score_column).")
_OUTPUT = flags.DEFINE_string("output_dir", None, "Folder for the report.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep JAX's backend chatter off the console
  # Undefined figures are listed by the report and printed below; don't repeat them as Python warnings.
  warnings.simplefilter("ignore", report_lib.FairnessWarning)
  try:
    if not _OUTPUT.value:
      raise inputs.AuditInputError("--output_dir is required")
    if _EXAMPLE.value:
      frame = example_lib.make_example(seed=_SEED.value)
      config = dict(label_column="y", prediction_column="y_hat", score_column="p",
                    sensitive_columns=["race"], positive_label=1)
      extra = {"example_input.csv": frame}
    else:
      if not _INPUT.value:
        raise inputs.AuditInputError("give --input=FILE.csv (or --example)")
      frame = inputs.read_csv(paths.resolve_str(_INPUT.value))
      config = dict(label_column=_LABEL.value, prediction_column=_PREDICTION.value,
                    score_column=_SCORE.value, sensitive_columns=_SENSITIVE.value,
                    positive_label=_POSITIVE.value)
      extra = None
    result = core.audit(frame, **config, privileged_group=_PRIVILEGED.value, n_boot=_N_BOOT.value,
                   seed=_SEED.value, thresholds=_THRESHOLDS.value)
    names = core.write_report(result, paths.resolve_str(_OUTPUT.value), extra)
  except inputs.AuditInputError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  s = result.summary
  print(f"audited {s['num_examples']:.0f} rows in {s['num_groups']} groups "
        f"({', '.join(s['sensitive_columns'])}); wrote {', '.join(names)} to {_OUTPUT.value}")
  for key in ("accuracy", "macro_f1", "demographic_parity_ratio", "equalized_odds_difference",
              "equal_opportunity_difference"):
    value = s[key]
    print(f"  {key:32s} {'NaN' if value is None else f'{value:.4f}'}")
  for message in s["warnings"]:
    print(f"  warning: {message}")


if __name__ == "__main__":
  cli.run(main)
