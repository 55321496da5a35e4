"""Bootstrap intervals, threshold sweeps and per-group regression error."""

import fairlearn.metrics as flm
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from fairjax import metrics
from fairjax.metrics import figures


def _binary(n=2000, seed=0):
  rng = np.random.default_rng(seed)
  g = rng.integers(0, 3, n)
  y = rng.integers(0, 2, n)
  score = np.clip(0.5 + (y - 0.5) * (0.3 + 0.1 * g) + rng.normal(0, 0.25, n), 0, 1)
  return y, score, g


def test_count_resamples_keep_the_total_and_are_unbiased():
  counts = jnp.array([[[50, 10], [5, 35]], [[20, 20], [0, 60]]])
  samples = np.asarray(metrics.resample_counts(jax.random.key(0), counts, 4000))
  assert samples.shape == (4000, 2, 2, 2)
  np.testing.assert_array_equal(samples.sum((1, 2, 3)), 200)
  np.testing.assert_allclose(samples.mean(0), counts, atol=0.6)
  assert samples[:, 1, 1, 0].max() == 0  # an empty cell stays empty


def test_count_bootstrap_matches_row_bootstrap_and_fairlearn():
  """Resampling counts is the row bootstrap in law: their intervals agree, and agree with fairlearn's."""
  y, score, g = _binary()
  p = (score >= 0.5).astype(int)
  counts = metrics.confusion_counts(y, p, g, num_groups=3, num_classes=2)
  _, (lo_c, hi_c) = figures.compute_classification(counts, 0, num_resamples=2000, seed=1)
  rows = (y, p, g, np.ones(len(y), np.float32))
  _, (lo_r, hi_r) = figures.compute_classification(counts, 0, num_resamples=2000, seed=2, rows=rows)
  for name in ("selection_rate", "tpr", "fpr"):
    np.testing.assert_allclose(lo_c["rates"][name][:, 1], lo_r["rates"][name][:, 1], atol=0.012)
    np.testing.assert_allclose(hi_c["rates"][name][:, 1], hi_r["rates"][name][:, 1], atol=0.012)
  np.testing.assert_allclose(lo_c["disparities"]["equalized_odds_difference"][1],
                             lo_r["disparities"]["equalized_odds_difference"][1], atol=0.015)
  frame = flm.MetricFrame(metrics={"tpr": flm.true_positive_rate}, y_true=y, y_pred=p,
                          sensitive_features=g, n_boot=400, ci_quantiles=[0.025, 0.975], random_state=3)
  lo_fl, hi_fl = (q["tpr"].to_numpy(float) for q in frame.by_group_ci)
  np.testing.assert_allclose(lo_c["rates"]["tpr"][:, 1], lo_fl, atol=0.02)
  np.testing.assert_allclose(hi_c["rates"]["tpr"][:, 1], hi_fl, atol=0.02)


def test_intervals_bracket_the_estimate_and_shrink_with_data():
  widths = []
  for n in (500, 8000):
    y, score, g = _binary(n, seed=4)
    counts = metrics.confusion_counts(y, (score >= 0.5).astype(int), g, num_groups=3, num_classes=2)
    report = metrics.classification_report(counts, num_resamples=500)
    table = report.by_group
    assert (table["tpr_lo"] <= table["tpr"]).all() and (table["tpr"] <= table["tpr_hi"]).all()
    lo, hi = report.summary["equalized_odds_difference_ci"]
    assert lo <= report.summary["equalized_odds_difference"] <= hi
    widths.append((table["tpr_hi"] - table["tpr_lo"]).mean())
  assert widths[1] < widths[0] / 2.5  # ~ 1/sqrt(n): 4x narrower for 16x the data


def test_weighted_counts_need_rows_to_bootstrap():
  y, score, g = _binary(300)
  w = np.random.default_rng(0).uniform(0.5, 2, len(y))
  counts = metrics.confusion_counts(y, (score > 0.5).astype(int), g, num_groups=3, num_classes=2, weights=w)
  with pytest.raises(ValueError, match="pass the rows"):
    figures.compute_classification(counts, 0, num_resamples=10)


def test_percentile_interval_ignores_nan_resamples_and_checks_confidence():
  samples = jnp.array([[0.0, np.nan], [1.0, np.nan], [2.0, 5.0], [3.0, np.nan]])
  lo, hi = metrics.percentile_interval(samples, 0.5)
  np.testing.assert_allclose(lo, [0.75, 5.0])
  np.testing.assert_allclose(hi, [2.25, 5.0])
  assert np.isnan(metrics.percentile_interval(jnp.full((3, 1), jnp.nan))[0]).all()
  with pytest.raises(ValueError, match="confidence"):
    metrics.percentile_interval(samples, 1.5)


def test_threshold_sweep_equals_recounting_at_every_threshold():
  y, score, g = _binary(seed=5)
  grid = np.round(np.arange(0.05, 0.951, 0.05), 2).astype(np.float32)
  sweep = np.asarray(metrics.threshold_counts(score, y, g, grid, num_groups=3))
  assert sweep.shape == (len(grid), 3, 2, 2)
  for j, t in enumerate(grid):
    direct = metrics.confusion_counts(y, (score >= t).astype(int), g, num_groups=3, num_classes=2)
    np.testing.assert_array_equal(sweep[j], np.asarray(direct), err_msg=f"threshold {t}")


def test_best_threshold_maximises_macro_f1_like_a_brute_force_search():
  y, score, g = _binary(seed=6)
  grid = np.round(np.arange(0.05, 0.951, 0.05), 2).astype(np.float32)
  sweep = metrics.threshold_counts(score, y, g, grid, num_groups=3)
  best, value = metrics.best_threshold(grid, sweep, "macro_f1")
  brute = [skm.f1_score(y, (score >= t).astype(int), average="macro") for t in grid]
  assert float(best) == pytest.approx(grid[int(np.argmax(brute))])
  assert float(value) == pytest.approx(max(brute), rel=1e-5)
  best_acc, _ = metrics.best_threshold(grid, sweep, "accuracy")
  brute_acc = [skm.accuracy_score(y, (score >= t).astype(int)) for t in grid]
  assert float(best_acc) == pytest.approx(grid[int(np.argmax(brute_acc))])
  with pytest.raises(ValueError, match="objective"):
    metrics.best_threshold(grid, sweep, "auc")


def test_figures_jit_and_vmap_over_stacked_counts():
  y, score, g = _binary(seed=7)
  grid = jnp.linspace(0.1, 0.9, 9)
  sweep = metrics.threshold_counts(score, y, g, grid, num_groups=3)
  per_threshold = jax.jit(jax.vmap(metrics.classification_figures, in_axes=(0, None)))(sweep, 0)
  eo = np.asarray(per_threshold["disparities"]["equalized_odds_difference"][:, 1])
  for j, t in enumerate(np.asarray(grid)):
    expected = flm.equalized_odds_difference(y, (score >= t).astype(int), sensitive_features=g)
    np.testing.assert_allclose(eo[j], expected, rtol=1e-4, atol=1e-6)


def test_regression_error_by_group():
  rng = np.random.default_rng(8)
  g = rng.integers(0, 4, 3000)
  age = rng.uniform(1, 90, 3000)
  pred = age + rng.normal(2.0 * g, 3 + g, 3000)
  with pytest.warns(metrics.FairnessWarning, match="group=4: no examples"):
    report = metrics.regression_report(age, pred, g, num_groups=5, num_resamples=300)
  table = report.by_group
  for group in range(4):
    m = g == group
    np.testing.assert_allclose(table["mae"][group], skm.mean_absolute_error(age[m], pred[m]), rtol=1e-5)
    np.testing.assert_allclose(table["mean_signed_error"][group], np.mean(pred[m] - age[m]), rtol=1e-4)
    np.testing.assert_allclose(table["rmse"][group], np.sqrt(skm.mean_squared_error(age[m], pred[m])), rtol=1e-5)
    assert table["mae_lo"][group] <= table["mae"][group] <= table["mae_hi"][group]
  assert table["count"][4] == 0 and np.isnan(table["mae"][4])
  assert any("no examples" in w for w in report.summary["warnings"])
  np.testing.assert_allclose(report.summary["mae_difference"], np.ptp(table["mae"][:4]), rtol=1e-5)
