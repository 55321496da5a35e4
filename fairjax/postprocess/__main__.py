r"""Fits group thresholds on one CSV of scores and applies them to another (Hardt et al. 2016).

  python -m fairjax.postprocess --fit_input=val.csv --apply_input=test.csv --label_column=y \
      --score_column=p --sensitive_columns=race[,gender] --constraint=equalized_odds [--epsilon=0] \
      [--randomized=true] [--min_group_size=30] [--positive_label=1] [--seed=0] [--n_boot=0] --output_dir=OUT

  python -m fairjax.postprocess --predictor=OUT/thresholds.json --apply_input=new.csv ... --output_dir=OUT2

Writes OUT/thresholds.json (the fitted rule), OUT/predictions.csv (every row of the apply set with
``p_post``, the probability of the positive label, and ``y_post``, the label the rule drew with --seed)
and the audit of the post-processed predictions as ``python -m fairjax.audit`` writes it (by_group.csv,
summary.json, plots). Bad input ends with one ``error:`` line and exit status 1, and OUT is left
untouched: everything is computed first, then written to a staging folder and moved into OUT together.
"""

import os
import sys
import warnings

from absl import flags
from absl import logging
import jax
import numpy as np
import pandas as pd

from fairjax import cli
from fairjax import paths
from fairjax.audit import core
from fairjax.audit import inputs
from fairjax.metrics import group_report as report_lib
from fairjax.postprocess import thresholds

_FIT = flags.DEFINE_string("fit_input", None, "CSV to fit the thresholds on (e.g. validation predictions).")
_APPLY = flags.DEFINE_string("apply_input", None, "CSV to apply them to (e.g. test predictions).")
_PREDICTOR = flags.DEFINE_string("predictor", None, "A saved thresholds.json to apply, not fitting.")
_LABEL = flags.DEFINE_string("label_column", "y", "Column of true labels (0/1; see --positive_label).")
_SCORE = flags.DEFINE_string("score_column", "p", "Column of the positive class's probability, or any score.")
_SENSITIVE = flags.DEFINE_list("sensitive_columns", ["race"], "Sensitive attribute column(s), intersected.")
_CONSTRAINT = flags.DEFINE_enum("constraint", "equalized_odds", list(thresholds.CONSTRAINTS),
                                "Rates the groups must share (within --epsilon).")
_EPSILON = flags.DEFINE_float("epsilon", 0.0, "Largest gap between groups' rates on the fit set, in [0, 1].")
_RANDOMIZED = flags.DEFINE_bool("randomized", True, "Mix two thresholds where needed (false: one per group).")
_MIN_GROUP = flags.DEFINE_integer("min_group_size", thresholds.DEFAULT_MIN_GROUP_SIZE,
                                  "Smaller groups get the pooled rule (one threshold for all).")
_POSITIVE = flags.DEFINE_float("positive_label", 1, "Label value of the positive class.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the randomised decisions y_post (and of the bootstrap).")
_N_BOOT = flags.DEFINE_integer("n_boot", 0, "Bootstrap resamples for 95% intervals in the audit (0: none).")
_OUTPUT = flags.DEFINE_string("output_dir", None, "Folder for thresholds.json, predictions.csv, the audit.")

_FIT_ONLY = (_CONSTRAINT, _EPSILON, _RANDOMIZED, _MIN_GROUP)
GAP_NAMES = {"equalized_odds": "equalized-odds gap", "equal_opportunity": "equal-opportunity gap",
             "demographic_parity": "demographic-parity gap"}
AUDIT_GAPS = {"equalized_odds": "equalized_odds_difference",
              "equal_opportunity": "equal_opportunity_difference",
              "demographic_parity": "demographic_parity_difference"}


def _check_flags() -> None:
  if not _OUTPUT.value:
    raise inputs.AuditInputError("--output_dir is required")
  if not _APPLY.value:
    raise inputs.AuditInputError("give --apply_input=FILE.csv, the rows to post-process")
  if bool(_FIT.value) == bool(_PREDICTOR.value):
    raise inputs.AuditInputError("give either --fit_input=FILE.csv (fit a rule) or "
                                 "--predictor=thresholds.json (apply a saved one)"
                                 + (", not both" if _FIT.value else ""))
  if _PREDICTOR.value:
    given = [f"--{flag.name}" for flag in _FIT_ONLY if flags.FLAGS[flag.name].present]
    if given:
      raise inputs.AuditInputError(f"{', '.join(given)} fit a rule; --predictor applies a saved one as it is")
  if not 0 <= _EPSILON.value <= 1:
    raise inputs.AuditInputError(f"--epsilon must lie in [0, 1], got {_EPSILON.value:g}")
  if _MIN_GROUP.value < 1:
    raise inputs.AuditInputError(f"--min_group_size must be at least 1, got {_MIN_GROUP.value}")
  if _N_BOOT.value < 0:
    raise inputs.AuditInputError(f"--n_boot must be >= 0, got {_N_BOOT.value}")


def _read(path: str, sensitive_columns) -> tuple[inputs.AuditInput, np.ndarray]:
  """One CSV, checked and encoded (``fairjax.audit.inputs``), and its 0/1 labels."""
  frame = inputs.read_csv(paths.resolve_str(path))
  label, positive = _LABEL.value, _POSITIVE.value
  if label in frame.columns:
    values = pd.to_numeric(frame[label], errors="coerce")  # text and NaN are encode's to report
    allowed = {0.0, 1.0} if positive in (0, 1) else {positive, *sorted(set(values.dropna()) - {positive})[:1]}
    bad = values.notna() & ~values.isin(allowed)
    if bad.any():
      row = int(np.flatnonzero(bad.to_numpy())[0])
      values = " and ".join(f"{v:g}" for v in sorted(allowed))
      raise inputs.AuditInputError(f"label column {label!r} of {path} must hold {values} only: it has "
                                   f"{frame[label].iloc[row]!r} in data row {row + 1}")
  # The label as its own prediction: encode checks and encodes it once, with the scores and the groups.
  data = inputs.encode(frame, label_column=label, prediction_column=label, score_column=_SCORE.value,
                       sensitive_columns=sensitive_columns, positive_label=positive)
  return data, (data.y_true == data.positive_class).astype(np.int32)


def _group_index(data: inputs.AuditInput, predictor: thresholds.GroupThresholds, path: str):
  """Each row's group index in ``predictor`` (by name; -1, the pooled rule, for groups it does not know)
  and a warning for each unknown group."""
  known = {name: k for k, name in enumerate(predictor.group_names)}
  names = report_lib.group_labels(data.group_keys)
  rows = np.bincount(data.groups, minlength=len(names))
  lookup = np.array([known.get(name, -1) for name in names], np.int32)
  notes = [f"group {name} of {path} ({rows[g]} rows) is not among the fitted groups: it gets the pooled rule"
           for g, name in enumerate(names) if lookup[g] < 0]
  return lookup[data.groups], notes


def _write(output_dir: str, predictor, predictions: pd.DataFrame, audited) -> list[str]:
  """The rule, the predictions and the audit into ``output_dir`` all together; returns the names."""

  def fill(folder):
    core.fill_report(audited, folder, {"predictions.csv": predictions})
    predictor.save(os.path.join(folder, "thresholds.json"))

  return core.write_staged(output_dir, fill, prefix=".postprocess-")


def _run():
  _check_flags()
  notes = []
  if _PREDICTOR.value:
    predictor = thresholds.GroupThresholds.load(paths.resolve_str(_PREDICTOR.value))
    sensitive = predictor.source.get("sensitive_columns") or _SENSITIVE.value
    if flags.FLAGS["sensitive_columns"].present and _SENSITIVE.value != sensitive:
      raise inputs.AuditInputError(f"--sensitive_columns={','.join(_SENSITIVE.value)}, but the predictor was "
                                   f"fitted by {','.join(sensitive)}")
    data, y01 = _read(_APPLY.value, sensitive)
  else:
    sensitive = _SENSITIVE.value
    fit_data, fit_y = _read(_FIT.value, sensitive)
    data, y01 = _read(_APPLY.value, sensitive)
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always", thresholds.PoolingWarning)
      predictor = thresholds.fit(fit_data.scores, fit_y, fit_data.groups, num_groups=len(fit_data.group_keys),
                                 constraint=_CONSTRAINT.value, epsilon=_EPSILON.value,
                                 randomized=_RANDOMIZED.value, min_group_size=_MIN_GROUP.value,
                                 group_names=report_lib.group_labels(fit_data.group_keys))
    notes += [str(w.message) for w in caught if issubclass(w.category, thresholds.PoolingWarning)]
    predictor.source = {"fit_input": _FIT.value, "label_column": _LABEL.value, "score_column": _SCORE.value,
                        "sensitive_columns": list(sensitive), "positive_label": _POSITIVE.value}
  groups, unknown = _group_index(data, predictor, _APPLY.value)
  notes += unknown
  p_post = np.asarray(predictor.probabilities(data.scores, groups))
  decided = np.asarray(predictor.predict(data.scores, groups, jax.random.PRNGKey(_SEED.value)))
  negative = [c for c in data.class_names if c != data.class_names[data.positive_class]]
  positive_value = data.class_names[data.positive_class]
  predictions = data.frame.copy()
  predictions["y_post"] = np.where(decided == 1, positive_value, negative[0] if negative else 0)
  predictions["p_post"] = p_post
  audited = core.audit(predictions, label_column=_LABEL.value, prediction_column="y_post",
                       score_column="p_post", sensitive_columns=sensitive, positive_label=_POSITIVE.value,
                       n_boot=_N_BOOT.value, seed=_SEED.value)
  applied = {"post-processed": predictor.evaluate(data.scores, y01, groups),
             "one threshold for all": predictor.one_threshold().evaluate(data.scores, y01, groups)}
  names = _write(paths.resolve_str(_OUTPUT.value), predictor, predictions, audited)
  return predictor, sensitive, len(predictions), applied, audited.summary, names, notes


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep JAX's backend chatter off the console
  warnings.simplefilter("ignore", report_lib.FairnessWarning)
  try:
    predictor, sensitive, rows, applied, summary, names, notes = _run()
  except inputs.AuditInputError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  fit, gap_name = predictor.fit, GAP_NAMES[predictor.constraint]
  rule = (f"{predictor.constraint}, epsilon {predictor.epsilon:g}, "
          f"{'randomised' if predictor.randomized else 'one threshold per group'}, by {', '.join(sensitive)}")
  fitted_on = f"{predictor.source.get('fit_input', 'its fit set')} ({fit.get('rows', '?')} rows)"
  if _PREDICTOR.value:
    print(f"applied the group thresholds of {_PREDICTOR.value} ({rule}; fitted on {fitted_on}) to "
          f"{_APPLY.value} ({rows} rows); wrote {', '.join(names)} to {_OUTPUT.value}")
  else:
    print(f"fitted group thresholds ({rule}) on {fitted_on} and applied them to {_APPLY.value} "
          f"({rows} rows); wrote {', '.join(names)} to {_OUTPUT.value}")
  print(f"  {'':38s} {'accuracy':>8s}  {gap_name}")

  def line(what, figures):
    gap = figures.get("gap")
    print(f"  {what:38s} {figures['accuracy']:8.4f}  {'NaN' if gap is None else f'{gap:.4f}'}")

  line("fit set, one threshold for all", fit["one_threshold"])
  line("fit set, post-processed", fit)
  line("apply set, one threshold for all", applied["one threshold for all"])
  line("apply set, post-processed (expected)", applied["post-processed"])
  line(f"apply set, y_post (drawn, seed {_SEED.value})",
       {"accuracy": summary["accuracy"], "gap": summary[AUDIT_GAPS[predictor.constraint]]})
  print(f"  {gap_name}s are over the {sum(~predictor.pooled)} fitted group(s)")
  for message in ([predictor.note] if predictor.note else []) + notes + summary["warnings"]:
    print(f"  warning: {message}")


if __name__ == "__main__":
  cli.run(main)
