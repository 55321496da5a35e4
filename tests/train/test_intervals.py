"""Intervals of a run's headline figures: they hold the figure, narrow with more rows, recompute the
summary's own definitions, and (regression) match what the rows give."""

import math
import types
import warnings

import numpy as np
import pytest

from fairjax.data import groups
from fairjax.metrics import figures as figures_lib
from fairjax.metrics import group_report as report_lib
from fairjax.metrics import regression
from fairjax.models.heads import HeadSpec
from fairjax.train import evaluate
from fairjax.train import intervals

GENDER = HeadSpec("gender", "binary")
RACE = HeadSpec("race", "multiclass", num_outputs=5)
AGE = HeadSpec("age", "regression")
HEADLINE = {f"gender/{name}" for name in evaluate.OVERALL_CLASSIFICATION} | {
    f"gender/race/{name}" for name in evaluate.CLASSIFICATION_DISPARITIES}


def _summarise(heads, sums, **kwargs):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    return evaluate.summarise(types.SimpleNamespace(heads=heads), sums, **kwargs)


def _binary_sums(scale=1):
  """A gender classifier by race whose groups differ clearly (every headline figure defined), with
  rows of unknown race in the overall counts; ``scale`` times as many rows, same proportions."""
  race = np.zeros((5, 2, 2), np.int64)
  race[0] = [[80, 20], [10, 90]]   # White: accuracy .85
  race[1] = [[30, 10], [15, 25]]   # Black: .69
  race[2] = [[40, 5], [5, 40]]     # Asian: .89
  race[3] = [[25, 15], [10, 30]]   # Indian: .69
  race[4] = [[20, 10], [10, 20]]   # Others: .67
  overall = race.sum(0) + [[6, 1], [2, 5]]
  gender = np.stack([overall * 0, overall])  # every row female: the gender grouping is not the one read
  return {"gender": {"loss": np.array([1.0, 10.0], np.float32),
                     "confusion": {"overall": overall * scale, "race": race * scale, "gender": gender * scale}}}


def test_intervals_hold_each_headline_figure_and_narrow_with_more_rows():
  widths = {}
  for scale in (1, 16):
    result = _summarise((GENDER,), _binary_sums(scale), num_resamples=400, seed=3,
                        intervals_of={("gender", "race")}, report_intervals=False)  # as a run asks
    assert set(result.intervals) == HEADLINE  # the asked-for pair only: nothing by gender
    for name, (low, high) in result.intervals.items():
      assert low <= result.metrics[name] <= high, (scale, name, low, result.metrics[name], high)
      widths[(scale, name)] = high - low
    assert "accuracy_ci" not in result.reports[("gender", "race")].summary
  for name in HEADLINE:
    assert 0 < widths[(16, name)] < 0.5 * widths[(1, name)], (name, widths[(1, name)], widths[(16, name)])


def test_no_resamples_no_intervals_and_the_audit_bootstrap_of_the_asked_pairs():
  assert not _summarise((GENDER,), _binary_sums()).intervals
  result = _summarise((GENDER,), _binary_sums(), num_resamples=200, intervals_of={("gender", "race")},
                      report_intervals=True)
  summary = result.reports[("gender", "race")].summary
  assert summary["bootstrap"]["resamples"] == 200 and "accuracy_ci" in summary
  assert "accuracy_ci" not in result.reports[("gender", "gender")].summary


def test_same_seed_same_intervals_and_sums_add_before_they_are_resampled():
  """The intervals are a function of the summed counts and the seed: two halves of an evaluation
  (two devices, two batches) added give the whole's intervals."""
  whole = _binary_sums(2)
  halves = [_binary_sums(1), _binary_sums(1)]
  added = {"gender": {"loss": whole["gender"]["loss"], "confusion": {
      k: halves[0]["gender"]["confusion"][k] + halves[1]["gender"]["confusion"][k]
      for k in whole["gender"]["confusion"]}}}
  a = _summarise((GENDER,), whole, num_resamples=200, seed=5, intervals_of={("gender", "race")})
  b = _summarise((GENDER,), added, num_resamples=200, seed=5, intervals_of={("gender", "race")})
  assert a.intervals == b.intervals


def _random_counts(rng, num_groups, num_classes, size):
  return rng.multinomial(size, rng.dirichlet(np.ones(num_groups * num_classes ** 2))).reshape(
      num_groups, num_classes, num_classes)


@pytest.mark.parametrize("head", [GENDER, RACE])
def test_resampled_figures_are_the_summarys_figures(head):
  """``intervals.classification_figures`` restates the summary's definitions for the resamples: at the
  observed counts it must give the summary's own figures (binary at class 1, multi-class macro)."""
  rng = np.random.default_rng(0)
  classes = 2 if head is GENDER else 5
  sums = {"loss": np.array([1.0, 2.0], np.float32), "confusion": {
      grouping: _random_counts(rng, groups.num_groups(grouping), classes, 300)
      for grouping in groups.DEFAULT_GROUPINGS}}
  overall = sums["confusion"]["race"].sum(0) + 3  # and rows of unknown race
  sums["confusion"]["overall"] = overall
  privileged = {"race": "Black", "gender": "female", "race_x_gender": "White, male"}
  result = _summarise((head,), {head.name: sums}, privileged=privileged)
  for grouping in groups.DEFAULT_GROUPINGS:
    index = groups.group_labels(grouping).index(privileged[grouping])
    found = intervals.classification_figures(sums["confusion"][grouping].astype(np.float32),
                                             overall.astype(np.float32), index)
    for name, value in found.items():
      key = f"{head.name}/{name}" if name in evaluate.OVERALL_CLASSIFICATION else f"{head.name}/{grouping}/{name}"
      assert float(value) == pytest.approx(result.metrics[key], rel=1e-5, abs=1e-6, nan_ok=True), key


def _regression_rows(seed=0, per_group=(400, 300, 500)):
  """Age predictions whose error grows with the group (race White, Black, Asian), and race codes."""
  rng = np.random.default_rng(seed)
  codes = np.concatenate([np.full(n, g, np.int32) for g, n in enumerate(per_group)])
  y_true = rng.uniform(16, 80, codes.size).astype(np.float32)
  y_pred = (y_true + rng.normal(1.0, 4.0 + 3.0 * codes, codes.size)).astype(np.float32)
  return y_true, y_pred, codes


def _regression_sums(y_true, y_pred, codes):
  by_race = np.asarray(regression.regression_sums(y_true, y_pred, codes, num_groups=5))
  by_gender = np.asarray(regression.regression_sums(y_true, y_pred, np.zeros_like(codes), num_groups=2))
  return {"age": {"loss": np.array([1.0, 1.0], np.float32),
                  "regression": {"overall": by_race.sum(0), "race": by_race, "gender": by_gender}}}


def test_regression_intervals_are_the_normal_approximation_of_the_rows():
  y_true, y_pred, codes = _regression_rows()
  result = _summarise((AGE,), _regression_sums(y_true, y_pred, codes), num_resamples=1,
                      intervals_of={("age", "race")})
  assert set(result.intervals) == {"age/mae", "age/mean_signed_error", "age/race/mae_gap",
                                   "age/race/worst_group_mae"}
  errors = (y_pred - y_true).astype(np.float64)
  for name, values in (("mae", np.abs(errors)), ("mean_signed_error", errors)):
    half = 1.959964 * values.std(ddof=1) / math.sqrt(values.size)
    np.testing.assert_allclose(result.intervals[f"age/{name}"],
                               [values.mean() - half, values.mean() + half], rtol=1e-4, atol=1e-4)
  for name in ("age/race/mae_gap", "age/race/worst_group_mae", "age/mae"):
    low, high = result.intervals[name]
    assert low < result.metrics[name] < high, name
  # Against the audit's row bootstrap of the same rows: the same interval, up to resampling noise.
  _, bounds = figures_lib.compute_regression(y_true, y_pred, codes, num_groups=3, num_resamples=400, seed=1)
  rows_gap = (bounds[0]["disparities"]["mae_difference"], bounds[1]["disparities"]["mae_difference"])
  rows_mae = (bounds[0]["overall"]["mae"], bounds[1]["overall"]["mae"])
  for got, expected in ((result.intervals["age/race/mae_gap"], rows_gap), (result.intervals["age/mae"], rows_mae)):
    width = expected[1] - expected[0]
    np.testing.assert_allclose(got, expected, atol=0.15 * width)


def test_a_regression_group_of_one_row_has_no_gap_interval():
  y_true, y_pred, codes = _regression_rows(per_group=(50, 1, 50))
  result = _summarise((AGE,), _regression_sums(y_true, y_pred, codes), num_resamples=1,
                      intervals_of={("age", "race")})
  assert all(math.isnan(v) for v in result.intervals["age/race/mae_gap"])
  assert all(math.isfinite(v) for v in result.intervals["age/mae"])


def test_a_table_too_large_to_resample_gets_no_intervals():
  identity = HeadSpec("identity", "multiclass", num_outputs=70)
  counts = np.zeros((5, 70, 70), np.int64)
  np.fill_diagonal(counts[0], 1)
  sums = {"identity": {"loss": np.array([1.0, 70.0], np.float32),
                       "confusion": {"overall": counts.sum(0), "race": counts}}}
  assert counts.size > intervals.MAX_CELLS
  assert not _summarise((identity,), sums, num_resamples=100).intervals
