"""Evaluation inside the training harness: per-device sums on the accelerator, figures on the host.

Evaluation has two halves, split where the audit splits them (see ``fairjax.metrics.confusion``):

  * ``make_evaluator`` builds the per-device function ``(state, batch, apply_fn) -> sums`` that
    ``step.make_eval_step`` wraps, psums over the batch axis and runs under pmap or shard_map. The
    sums are fixed-shape arrays (loss total and count, confusion counts, regression sums per group), so
    they add across devices, batches and hosts exactly, and the step compiles once.
  * ``summarise`` turns the accumulated sums into the figures a run logs and selects on (a flat
    ``metrics`` dict) and the per-group audits it writes (``GroupReport``s, through the same
    ``fairjax.metrics.group_report`` functions as the audit command), so a training run's validation report
    and an audit of its predictions read the same.

Every row counts where its labels allow and nowhere else: padding rows (``mask`` False) count nowhere,
a row whose head label is unknown (-1) counts nowhere for that head, and a row whose race or gender is
unknown still counts in the head's overall figures but in no group of a grouping that needs it.

Heads by kind: binary and multiclass heads are classifiers (confusion counts); regression heads are
regressors (error sums); a binned head is both, a classifier over its bins and a regressor through its
expected value (an age head gives bin accuracy and age MAE). multilabel_softmax heads report their
loss only, unless ``class_groups`` read them as a classifier (seed 002's Open Images labels read as
gender): then their loss is taken on their multi-hot targets and their confusion counts compare the
decoded class with the batch's ``class_key``, so they report as any classifier. A binned head's two
views have two reports: the regression view under the head's name and the classification view under
``<head>_bins``; its metrics all sit under ``<head>/``.
"""

import contextlib
import functools
import math
import warnings
from typing import Callable, Collection, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from fairjax.data import groups
from fairjax.metrics import confusion
from fairjax.metrics import disparity
from fairjax.metrics import figures as figures_lib
from fairjax.metrics import regression
from fairjax.metrics import group_report as report_lib
from fairjax.models import forward as forward_lib
from fairjax.models import heads as heads_lib
from fairjax.train import intervals

BINS_SUFFIX = "_bins"

# Per-grouping figures in ``report_lib.EvalResult.metrics``, as ``<head>/<grouping>/<name>``.
CLASSIFICATION_DISPARITIES = (
    "equalized_odds_difference", "equal_opportunity_difference", "demographic_parity_difference",
    "disparate_impact", "disparate_impact_correct", "accuracy_gap", "worst_group_accuracy")
REGRESSION_DISPARITIES = ("mae_gap", "worst_group_mae")
# A head's figures over all its labelled rows, whatever the grouping (``<head>/<name>``).
OVERALL_CLASSIFICATION = ("accuracy", "macro_accuracy", "macro_f1")
OVERALL_REGRESSION = ("mae", "mean_signed_error")
# Report-summary keys behind the first four (the binary task's positive class, or the macro over
# classes of a multi-class one): ``disparate_impact`` is the audit's demographic parity ratio.
_FROM_REPORT = {
    "equalized_odds_difference": "equalized_odds_difference",
    "equal_opportunity_difference": "equal_opportunity_difference",
    "demographic_parity_difference": "demographic_parity_difference",
    "disparate_impact": "demographic_parity_ratio",
}


def is_classifier(spec: heads_lib.HeadSpec) -> bool:
  """Whether the head's predictions are classes that confusion counts describe."""
  return spec.kind in ("binary", "multiclass", "binned") or bool(spec.class_groups)


def is_regressor(spec: heads_lib.HeadSpec) -> bool:
  """Whether the head predicts a value (a regression output, or a binned head's expected value)."""
  return spec.kind in ("regression", "binned")


def num_classes(spec: heads_lib.HeadSpec) -> int:
  """Classes of a classifying head: 2 for a one-unit sigmoid, its class groups for a multi-label head
  read as a classifier, its outputs otherwise."""
  if spec.class_groups:
    return len(spec.class_groups)
  return 2 if spec.kind == "binary" and spec.num_outputs == 1 else spec.num_outputs


def class_names(spec: heads_lib.HeadSpec) -> list:
  """The schema's names where the head's labels are gender or race, bin ranges for a binned head."""
  if spec.kind == "binned":
    edges = spec.bin_low + spec.bin_width * np.arange(spec.num_outputs + 1)
    return [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
  names = groups.ATTRIBUTES.get(spec.class_label_key)
  if names is not None and len(names) == num_classes(spec):
    return list(names)
  return list(range(num_classes(spec)))


def _check_heads(specs: Sequence[heads_lib.HeadSpec], groupings: Sequence[str]) -> None:
  groups.check_groupings(groupings)
  names = {spec.name for spec in specs}
  for spec in specs:
    if spec.kind == "binned" and spec.name + BINS_SUFFIX in names:
      raise ValueError(f"head {spec.name + BINS_SUFFIX!r} collides with the bin view of binned head "
                       f"{spec.name!r}")


def make_evaluator(model, *, images_fn: Callable,
                   groupings: Sequence[str] = groups.DEFAULT_GROUPINGS) -> Callable:
  """The per-device ``evaluator(state, batch, apply_fn) -> sums`` for ``step.make_eval_step``.

  Args:
    model: a registered model (``model.heads`` lists what to evaluate).
    images_fn: ``batch -> float32 images``, the same preprocessing as training minus augmentation.
    groupings: names from ``groups.GROUPINGS`` to count per group.

  Returns:
    A function whose output is this device's sums, ``{head: {...}}`` with, per head:
    ``loss`` float32 [2] (weighted loss total, count); for classifiers ``confusion`` {``overall``:
    [C, C], grouping: [G, C, C]} int32; for regressors ``regression`` {``overall``: [4], grouping:
    [G, 4]} float32 (count, signed, absolute, squared error sums, as ``regression.regression_sums``).
  """
  specs = tuple(model.heads)
  groupings = tuple(groupings)
  _check_heads(specs, groupings)

  def evaluator(state, batch, apply_fn, with_outputs: bool = False):
    """This device's sums; with ``with_outputs``, ``(sums, outputs)``: the model's outputs of the same
    forward pass too (the final report takes its evaluators' embeddings from it)."""
    images = images_fn(batch)
    # train=False: no dropout, so the key is never drawn from; any fixed key will do.
    outputs, _ = forward_lib.forward(apply_fn, state.params["model"], state.model_state, images,
                                    jax.random.key(0), train=False)
    size = images.shape[0]
    mask = jnp.asarray(batch["mask"], bool) if "mask" in batch else jnp.ones((size,), bool)
    codes = {g: groups.group_codes(batch, g) for g in groupings}
    sums = {}
    for spec in specs:
      labels = jnp.asarray(batch[spec.key])
      output = outputs[spec.name]
      total, count = heads_lib.loss_terms(spec, output, labels, mask=mask)
      head = {"loss": jnp.stack([total, count]).astype(jnp.float32)}
      predictions = heads_lib.predict(spec, output)
      if is_classifier(spec):
        classes = jnp.asarray(batch[spec.class_label_key])
        head["confusion"] = _confusions(spec, classes, predictions["label"], codes, mask)
      if is_regressor(spec):
        head["regression"] = _regression_sums(spec, labels, predictions["value"], codes, mask)
      sums[spec.name] = head
    return (sums, outputs) if with_outputs else sums

  return evaluator


def true_classes(spec: heads_lib.HeadSpec, labels) -> jax.Array:
  """A classifying head's batch labels as class indices: a binned head's values as their bins; -1 where
  the label is unknown (out-of-range classes are left for the counts to drop)."""
  labels = jnp.asarray(labels)
  if spec.kind == "binned":
    known = (labels >= 0) & ~jnp.isnan(labels.astype(jnp.float32))
    return jnp.where(known, heads_lib.bin_index(spec, labels), -1)
  return labels.astype(jnp.int32)


def _confusions(spec, labels, predicted, codes, mask) -> dict:
  if labels.ndim != 1:
    raise ValueError(f"head {spec.name!r}: evaluation needs one label per example, got labels of shape "
                     f"{labels.shape}")
  truth = true_classes(spec, labels)
  count = lambda g, n: confusion.confusion_counts(truth, predicted, g, num_groups=n,
                                                  num_classes=num_classes(spec), mask=mask)
  out = {"overall": count(jnp.zeros_like(truth), 1)[0]}
  for grouping, code in codes.items():
    out[grouping] = count(code, groups.num_groups(grouping))
  return out


def _regression_sums(spec, labels, values, codes, mask) -> dict:
  if labels.shape != values.shape:
    raise ValueError(f"head {spec.name!r}: labels of shape {labels.shape} for predictions of shape "
                     f"{values.shape}")
  truth = labels.astype(jnp.float32)
  if spec.kind == "binned" or jnp.issubdtype(labels.dtype, jnp.integer):
    truth = jnp.where(truth >= 0, truth, jnp.nan)  # ages, and integer labels: below zero is unknown
  # A head with K regressed values counts each value as a row of its example's group.
  per_value = lambda x: jnp.broadcast_to(x.reshape(x.shape + (1,) * (truth.ndim - 1)), truth.shape)
  add = lambda g, n: regression.regression_sums(truth, values, per_value(g), num_groups=n,
                                                mask=per_value(mask))
  out = {"overall": add(jnp.zeros(mask.shape, jnp.int32), 1)[0]}
  for grouping, code in codes.items():
    out[grouping] = add(code, groups.num_groups(grouping))
  return out


def summarise(
    model,
    sums,
    *,
    privileged: Optional[Mapping[str, Union[int, str]]] = None,
    num_resamples: int = 0,
    seed: int = 0,
    intervals_of: Optional[Collection[tuple[str, str]]] = None,
    report_intervals: bool = True,
) -> report_lib.EvalResult:
  """The figures of accumulated evaluator ``sums`` (one copy, not pmap's per-device stack).

  Metric names (every head ``h``, every grouping ``g`` in the sums):
    ``loss`` (sum of loss_weight * head loss, over heads with labelled examples) and ``h/loss``;
    classifiers: ``h/accuracy``, ``h/macro_accuracy``, ``h/macro_f1`` over all labelled rows, and
    ``h/g/<d>`` for d in CLASSIFICATION_DISPARITIES; regressors: ``h/mae``, ``h/mean_signed_error``,
    ``h/rmse`` and ``h/g/<d>`` for d in REGRESSION_DISPARITIES.
  ``disparate_impact`` is the ratio of the lowest to the highest selection rate (the audit's
  demographic parity ratio; binary heads at class 1, multi-class heads averaged over classes).
  ``disparate_impact_correct`` is seed 000 §6.1.5's reading, where the outcome is a correct
  prediction: the lowest ratio of a group's accuracy to the privileged group's.

  Args:
    model: the evaluated model (its ``heads``).
    sums: the evaluator's sums, added over batches, as numpy or JAX arrays.
    privileged: grouping -> privileged group (index, or name as ``groups.group_labels``), over
      groups.DEFAULT_PRIVILEGED; groupings without one take the largest group.
    num_resamples, seed: with ``num_resamples`` > 0, 95 % intervals of the figures of the (head,
      grouping) pairs in ``intervals_of``: ``result.intervals`` {metric name: (low, high)} (classifiers:
      a count bootstrap of ``num_resamples`` resamples; regressors: a normal approximation, as
      ``fairjax.train.intervals`` explains). Tables of more than ``intervals.MAX_CELLS`` cells get none.
    intervals_of: the (head name, grouping) pairs that get intervals; default every pair. Each new
      table shape costs a compilation, so a run asks for its headline pair only. A head's overall
      figures (``h/accuracy``, ``h/mae``) take their interval from its first pair.
    report_intervals: whether those pairs' classification reports also get the audit's bootstrap
      (``_lo`` / ``_hi`` columns of every group's rates, ``_ci`` keys; ``report.classification_report``).
      It compiles a larger function (several CPU-seconds), so a run leaves it out.
  """
  sums = jax.tree.map(np.asarray, sums)
  privileged = {**groups.DEFAULT_PRIVILEGED, **(privileged or {})}
  result = report_lib.EvalResult(metrics={}, reports={}, confusion={}, class_names={}, group_labels={}, warnings=[])
  wanted = (lambda head, grouping: num_resamples > 0 and (intervals_of is None or (head, grouping) in intervals_of))
  weighted_losses = []
  for spec in model.heads:
    head = sums[spec.name]
    total, count = (float(v) for v in head["loss"])
    loss = total / count if count > 0 else math.nan
    if count == 0:
      result.warnings.append(f"{spec.name}: no labelled examples; its loss is NaN and left out of 'loss'")
    else:
      weighted_losses.append(spec.loss_weight * loss)
    result.metrics[f"{spec.name}/loss"] = loss
    if is_classifier(spec):
      _summarise_classifier(result, spec, head["confusion"], privileged, num_resamples, seed,
                            functools.partial(wanted, spec.name), report_intervals)
    if is_regressor(spec):
      _summarise_regressor(result, spec, head["regression"], seed if num_resamples > 0 else None,
                           functools.partial(wanted, spec.name))
  result.metrics["loss"] = float(sum(weighted_losses)) if weighted_losses else math.nan
  for message in result.warnings:
    warnings.warn(message, report_lib.FairnessWarning, stacklevel=2)
  return result


def classifier_result(spec: heads_lib.HeadSpec, counts, *, privileged=None) -> report_lib.EvalResult:
  """The figures ``summarise`` gives a classifying head, from its confusion counts (``{'overall': [C, C],
  grouping: [G, C, C]}``, true x predicted): e.g. the expected counts of a post-processed rule."""
  privileged = {**groups.DEFAULT_PRIVILEGED, **(privileged or {})}
  result = report_lib.EvalResult(metrics={}, reports={}, confusion={}, class_names={}, group_labels={}, warnings=[])
  _summarise_classifier(result, spec, jax.tree.map(np.asarray, counts), privileged, 0, 0, lambda _: False,
                        False)
  return result


def _summarise_classifier(result, spec, counts, privileged, num_resamples, seed, wanted,
                          report_intervals) -> None:
  """Fills ``result`` with one classifying head's figures; ``wanted(grouping)``: whether that grouping's
  figures get intervals (and with ``report_intervals``, its report the audit's)."""
  view = spec.name + BINS_SUFFIX if spec.kind == "binned" else spec.name
  names = class_names(spec)
  result.class_names[view] = names
  overall = confusion.overall_summary(jnp.asarray(counts["overall"])[None])
  for name in ("accuracy", "macro_accuracy", "macro_f1"):
    result.metrics[f"{spec.name}/{name}"] = float(overall[name])
  for grouping, grouped in counts.items():
    if grouping == "overall":
      continue
    result.group_labels[grouping] = groups.group_labels(grouping)
    result.confusion[(view, grouping)] = grouped
    index = _privileged_index(grouping, privileged.get(grouping), grouped)
    bootstrapped = wanted(grouping) and np.size(grouped) + np.size(counts["overall"]) <= intervals.MAX_CELLS
    with _captured(result, f"{view}/{grouping}"):
      report = report_lib.classification_report(
          grouped, group_keys=groups.group_keys(grouping), class_names=names, privileged=index,
          num_resamples=num_resamples if bootstrapped and report_intervals else 0, seed=seed)
      accuracy = np.asarray(confusion.group_summary(jnp.asarray(grouped))["accuracy"])
      di_correct = _disparate_impact_correct(accuracy, index, result.group_labels[grouping])
    result.reports[(view, grouping)] = report
    prefix = f"{spec.name}/{grouping}/"
    for metric, key in _FROM_REPORT.items():
      result.metrics[prefix + metric] = _float(report.summary[key])
    result.metrics[prefix + "disparate_impact_correct"] = di_correct
    result.metrics[prefix + "accuracy_gap"] = float(disparity.difference(jnp.asarray(accuracy)))
    result.metrics[prefix + "worst_group_accuracy"] = _nan_reduce(np.min, accuracy)
    if bootstrapped:
      found = intervals.classification_intervals(grouped, counts["overall"], index,
                                                 num_resamples=num_resamples, seed=seed)
      _add_intervals(result, spec.name, grouping, found, OVERALL_CLASSIFICATION)


def _summarise_regressor(result, spec, sums, seed, wanted) -> None:
  """Fills ``result`` with one regressing head's figures; with a ``seed``, normal-approximation
  intervals of the groupings that ``wanted(grouping)`` names."""
  overall = regression.regression_metrics(jnp.asarray(sums["overall"]))
  if float(overall["count"]) == 0:
    result.warnings.append(f"{spec.name}: no labelled examples; its errors are NaN")
  for name in regression.REGRESSION_METRICS:
    result.metrics[f"{spec.name}/{name}"] = float(overall[name])
  for grouping, grouped in sums.items():
    if grouping == "overall":
      continue
    result.group_labels[grouping] = groups.group_labels(grouping)
    with _captured(result, f"{spec.name}/{grouping}"):
      report = regression_report_from_sums(grouped, group_keys=groups.group_keys(grouping))
    result.reports[(spec.name, grouping)] = report
    prefix = f"{spec.name}/{grouping}/"
    result.metrics[prefix + "mae_gap"] = _float(report.summary["mae_difference"])
    result.metrics[prefix + "worst_group_mae"] = _nan_reduce(np.max, report.by_group["mae"].to_numpy(float))
    if seed is not None and wanted(grouping):
      found = intervals.regression_intervals(grouped, sums["overall"], seed=seed)
      _add_intervals(result, spec.name, grouping, found, OVERALL_REGRESSION)


def _add_intervals(result, head: str, grouping: str, found: Mapping, overall: Sequence[str]) -> None:
  """``found`` {figure: (low, high)} into ``result.intervals`` under the metric names: the head's
  ``overall`` figures as ``<head>/<figure>`` (from its first grouping), the rest per grouping."""
  for figure, bounds in found.items():
    if figure in overall:
      result.intervals.setdefault(f"{head}/{figure}", bounds)
    else:
      result.intervals[f"{head}/{grouping}/{figure}"] = bounds


def regression_report_from_sums(sums, *, group_keys: pd.DataFrame) -> report_lib.GroupReport:
  """``report.regression_report``'s table and summary, from per-group sums ``[G, 4]`` instead of rows.

  The evaluator never holds the rows, only their ``regression_sums``; the figures come from the same
  ``figures.regression_figures`` the audit uses, and the layout is the audit's, so that tools reading
  one read the other (tests check the two agree on the same rows).
  """
  sums = np.asarray(sums, np.float32)
  figs = jax.tree.map(np.asarray, figures_lib.regression_figures(jnp.asarray(sums)))
  table = group_keys.reset_index(drop=True).copy()
  for name in ("count",) + regression.REGRESSION_METRICS:
    table[name] = figs["groups"][name]
  summary = {"task": "regression", "num_groups": len(group_keys),
             "sensitive_columns": list(group_keys.columns)}
  for section in ("overall", "disparities"):
    for name, value in figs[section].items():
      summary[name] = _json_float(value)
  labels = report_lib.group_labels(group_keys)
  summary["warnings"] = [f"{labels[g]}: no examples; its errors are NaN"
                         for g in range(len(group_keys)) if figs["groups"]["count"][g] == 0]
  for message in summary["warnings"]:
    warnings.warn(message, report_lib.FairnessWarning, stacklevel=2)
  return report_lib.GroupReport(table, summary)


TRAINING_LARGEST = "largest training group"
CONFIGURED = "config"


def run_privileged(configured: Mapping[str, str], training_rows: pd.DataFrame,
                   groupings: Sequence[str]) -> dict[str, dict]:
  """The privileged group of each grouping for every split of one run, and why.

  Disparate impact is measured against the privileged group, so it must not change between the splits
  of a run (the largest group of the validation split need not be the test split's). A name in
  ``configured`` (``config.eval.privileged``, a grouping -> a name of ``groups.group_labels``; empty:
  none) wins; otherwise the largest group of ``training_rows``, the training plan: the rows the model
  trains on, a treatment's copies included. Counted from the plan's labels, ties to the first group.

  Returns ``{grouping: {"group": name, "reason": CONFIGURED or TRAINING_LARGEST}}`` (``summarise``'s
  ``privileged`` is ``{g: v["group"]}``). A grouping of which no training row has a known group is
  left out: each split then takes its own largest group, as ``summarise`` does by default.
  """
  chosen = {}
  for grouping in groupings:
    name = (configured or {}).get(grouping) or ""
    labels = groups.group_labels(grouping)
    if name:
      _privileged_index(grouping, name, None)  # an unknown name is an error naming the groups
      chosen[grouping] = {"group": name, "reason": CONFIGURED}
      continue
    counts = groups.group_counts(training_rows, grouping)
    if counts.sum() > 0:
      chosen[grouping] = {"group": labels[int(np.argmax(counts))], "reason": TRAINING_LARGEST}
  return chosen


def _privileged_index(grouping: str, choice, counts) -> int:
  """The privileged group's index: ``choice`` by index or name, or the largest group."""
  if choice is None:
    return int(np.argmax(np.asarray(counts).sum((1, 2))))
  labels = groups.group_labels(grouping)
  if isinstance(choice, str):
    if choice not in labels:
      raise ValueError(f"privileged group {choice!r} is not a {grouping} group; groups: {labels}")
    return labels.index(choice)
  if not 0 <= int(choice) < len(labels):
    raise ValueError(f"privileged group index {choice} out of range for {len(labels)} {grouping} groups")
  return int(choice)


def _disparate_impact_correct(accuracy: np.ndarray, privileged: int, labels: Sequence[str]) -> float:
  """min over the other groups of accuracy / the privileged group's accuracy; NaN, warned, if undefined."""
  base = accuracy[privileged]
  others = np.delete(accuracy, privileged)
  others = others[~np.isnan(others)]
  if np.isnan(base) or base == 0 or not others.size:
    reason = ("the privileged group has no examples" if np.isnan(base) else
              "the privileged group has accuracy 0" if base == 0 else "no other group has examples")
    warnings.warn(f"{labels[privileged]} privileged: {reason}; disparate_impact_correct is NaN",
                  report_lib.FairnessWarning, stacklevel=3)
    return math.nan
  return float(others.min() / base)


@contextlib.contextmanager
def _captured(result: report_lib.EvalResult, prefix: str):
  """Moves the FairnessWarnings raised inside into ``result.warnings``, prefixed with ``prefix``.

  The reports' own messages name the group but not the head and grouping, which the run's list of
  warnings needs; ``summarise`` raises the prefixed messages again once it is done.
  """
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", report_lib.FairnessWarning)
    yield
  for warning in caught:
    if issubclass(warning.category, report_lib.FairnessWarning):
      result.warnings.append(f"{prefix}: {warning.message}")
    else:
      warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _nan_reduce(reduce, values) -> float:
  values = np.asarray(values, float)
  values = values[~np.isnan(values)]
  return float(reduce(values)) if values.size else math.nan


def _float(value) -> float:
  """A report-summary value (None where the figure is undefined) as a float."""
  return math.nan if value is None else float(value)


def _json_float(value):
  """As the audit writes a figure: seven significant digits of the float32, None for NaN."""
  value = float(np.asarray(value))
  return float(f"{value:.7g}") if math.isfinite(value) else None
