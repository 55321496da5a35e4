"""Every figure of fairjax.metrics against fairlearn / scikit-learn on the same data.

Binary and multi-class, single and intersectional groups, weighted rows, and the adversarial cases:
an empty group, a one-class group, all-positive predictions. Where the two libraries differ by design
(fairjax gives NaN for a rate without a denominator, scikit-learn gives 0 with a warning), the test
checks fairjax's NaN and compares the rest.
"""

import warnings

import fairlearn.metrics as flm
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from fairjax import metrics

RATE_FUNCTIONS = {
    "selection_rate": flm.selection_rate,
    "tpr": flm.true_positive_rate,
    "fpr": flm.false_positive_rate,
    "tnr": flm.true_negative_rate,
    "fnr": flm.false_negative_rate,
    "ppv": lambda y, p, **kw: skm.precision_score(y, p, zero_division=np.nan, **kw),
    "accuracy": skm.accuracy_score,
    "f1": lambda y, p, **kw: skm.f1_score(y, p, zero_division=np.nan, **kw),
}


def _data(n=3000, groups=4, classes=2, seed=0):
  rng = np.random.default_rng(seed)
  g = rng.integers(0, groups, n)
  y = rng.integers(0, classes, n)
  # A predictor whose accuracy differs by group, so that disparities are not ~0.
  correct = rng.random(n) < 0.55 + 0.1 * g
  p = np.where(correct, y, rng.integers(0, classes, n))
  return y, p, g


def _frame(y, p, g, weights=None):
  params = {k: {"sample_weight": weights} for k in RATE_FUNCTIONS} if weights is not None else None
  return flm.MetricFrame(metrics=RATE_FUNCTIONS, y_true=y, y_pred=p, sensitive_features=g,
                         sample_params=params)


def _ours(y, p, g, num_groups, num_classes=2, weights=None):
  counts = metrics.confusion_counts(y, p, g, num_groups=num_groups, num_classes=num_classes,
                                    weights=weights)
  return counts, {k: np.asarray(v) for k, v in metrics.class_rates(counts).items()}


@pytest.mark.parametrize("weighted", [False, True])
def test_binary_rates_and_disparities(weighted):
  y, p, g = _data()
  w = np.random.default_rng(1).uniform(0.2, 3.0, len(y)) if weighted else None
  counts, rates = _ours(y, p, g, 4, weights=w)
  frame = _frame(y, p, g, w)
  for name in RATE_FUNCTIONS:
    np.testing.assert_allclose(rates[name][:, 1], frame.by_group[name].to_numpy(float), rtol=1e-5,
                               err_msg=name)
  disp = {k: np.asarray(v)[1] for k, v in metrics.disparities(counts).items()}
  kw = dict(sensitive_features=g, sample_weight=w)
  np.testing.assert_allclose(disp["demographic_parity_difference"], flm.demographic_parity_difference(y, p, **kw), rtol=1e-5)
  np.testing.assert_allclose(disp["demographic_parity_ratio"], flm.demographic_parity_ratio(y, p, **kw), rtol=1e-5)
  np.testing.assert_allclose(disp["equalized_odds_difference"], flm.equalized_odds_difference(y, p, **kw), rtol=1e-5)
  np.testing.assert_allclose(disp["equalized_odds_ratio"], flm.equalized_odds_ratio(y, p, **kw), rtol=1e-5)
  np.testing.assert_allclose(disp["equal_opportunity_difference"], flm.equal_opportunity_difference(y, p, **kw), rtol=1e-5)
  np.testing.assert_allclose(disp["equal_opportunity_ratio"], flm.equal_opportunity_ratio(y, p, **kw), rtol=1e-5)


def test_the_eight_rates_from_confusion_matrices():
  y, p, g = _data(seed=3)
  _, rates = _ours(y, p, g, 4)
  for group in range(4):
    tn, fp, fn, tp = skm.confusion_matrix(y[g == group], p[g == group], labels=[0, 1]).ravel()
    expected = dict(tpr=tp / (tp + fn), fnr=fn / (tp + fn), tnr=tn / (tn + fp), fpr=fp / (tn + fp),
                    ppv=tp / (tp + fp), fdr=fp / (tp + fp), npv=tn / (tn + fn), **{"for": fn / (tn + fn)})
    for name, value in expected.items():
      np.testing.assert_allclose(rates[name][group, 1], value, rtol=1e-6, err_msg=name)
  te = np.asarray(metrics.treatment_equality(metrics.confusion_counts(y, p, g, num_groups=4, num_classes=2)))
  for group in range(4):
    tn, fp, fn, tp = skm.confusion_matrix(y[g == group], p[g == group], labels=[0, 1]).ravel()
    np.testing.assert_allclose(te[group, 1], fn / fp, rtol=1e-6)


def test_multiclass_one_vs_rest_and_macro_figures():
  y, p, g = _data(classes=5, seed=4)
  counts, rates = _ours(y, p, g, 4, num_classes=5)
  summary = {k: np.asarray(v) for k, v in metrics.group_summary(counts).items()}
  for group in range(4):
    yg, pg = y[g == group], p[g == group]
    np.testing.assert_allclose(summary["accuracy"][group], skm.accuracy_score(yg, pg), rtol=1e-6)
    np.testing.assert_allclose(summary["macro_f1"][group], skm.f1_score(yg, pg, average="macro"), rtol=1e-5)
    np.testing.assert_allclose(summary["macro_accuracy"][group], skm.balanced_accuracy_score(yg, pg), rtol=1e-5)
    np.testing.assert_allclose(rates["tpr"][group], skm.recall_score(yg, pg, average=None), rtol=1e-5)
    np.testing.assert_allclose(rates["ppv"][group], skm.precision_score(yg, pg, average=None), rtol=1e-5)
  overall = {k: np.asarray(v) for k, v in metrics.overall_summary(counts).items()}
  np.testing.assert_allclose(overall["macro_f1"], skm.f1_score(y, p, average="macro"), rtol=1e-5)
  np.testing.assert_allclose(overall["macro_accuracy"], skm.balanced_accuracy_score(y, p), rtol=1e-5)
  disp = {k: np.asarray(v) for k, v in metrics.disparities(counts).items()}
  for c in range(5):
    yc, pc = (y == c).astype(int), (p == c).astype(int)
    np.testing.assert_allclose(disp["equalized_odds_difference"][c],
                               flm.equalized_odds_difference(yc, pc, sensitive_features=g), rtol=1e-5)
    np.testing.assert_allclose(disp["demographic_parity_ratio"][c],
                               flm.demographic_parity_ratio(yc, pc, sensitive_features=g), rtol=1e-5)


def test_intersectional_groups_match_fairlearn_multi_column_features():
  rng = np.random.default_rng(5)
  n = 4000
  frame = pd.DataFrame({"race": rng.choice(["W", "B", "A", "I", "O"], n), "gender": rng.integers(0, 2, n)})
  y = rng.integers(0, 2, n)
  p = np.where(rng.random(n) < 0.8, y, 1 - y)
  codes, keys = metrics.encode_columns(frame, ["race", "gender"])
  counts = metrics.confusion_counts(y, p, codes, num_groups=len(keys), num_classes=2)
  report = metrics.classification_report(counts, group_keys=keys)
  reference = _frame(y, p, frame[["race", "gender"]]).by_group.reset_index()
  merged = report.by_group.merge(reference, on=["race", "gender"], suffixes=("", "_fl"))
  assert len(merged) == 10
  for name in RATE_FUNCTIONS:
    np.testing.assert_allclose(merged[name], merged[f"{name}_fl"], rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(
      report.summary["equalized_odds_difference"],
      flm.equalized_odds_difference(y, p, sensitive_features=frame[["race", "gender"]]), rtol=1e-5)
  # On the device side, the same groups come from a mixed-radix index.
  race_codes = pd.Categorical(frame["race"], categories=sorted(frame["race"].unique())).codes
  index = np.asarray(metrics.intersect([race_codes, frame["gender"].to_numpy()], [5, 2]))
  np.testing.assert_array_equal(index, codes)


def test_empty_group_is_nan_with_count_zero_and_a_warning():
  y, p, g = _data(groups=3)
  counts = metrics.confusion_counts(y, p, g, num_groups=4, num_classes=2)  # group 3 never occurs
  with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)  # no numpy division warnings either
    with pytest.warns(metrics.FairnessWarning, match="group=3: no examples"):
      report = metrics.classification_report(counts)
  row = report.by_group.iloc[3]
  assert row["count"] == 0
  assert all(np.isnan(row[m]) for m in metrics.CLASS_METRICS)
  # Disparities are taken over the groups that exist, and then agree with fairlearn.
  np.testing.assert_allclose(report.summary["equalized_odds_difference"],
                             flm.equalized_odds_difference(y, p, sensitive_features=g), rtol=1e-5)
  np.testing.assert_allclose(report.summary["demographic_parity_ratio"],
                             flm.demographic_parity_ratio(y, p, sensitive_features=g), rtol=1e-5)


def test_one_class_group_gives_nan_tpr_not_zero():
  y, p, g = _data(groups=3, seed=7)
  y = np.where(g == 2, 0, y)  # group 2 has no positives
  counts = metrics.confusion_counts(y, p, g, num_groups=3, num_classes=2)
  with pytest.warns(metrics.FairnessWarning, match="group=2: no positive examples"):
    report = metrics.classification_report(counts)
  row = report.by_group.iloc[2]
  assert np.isnan(row["tpr"]) and np.isnan(row["fnr"]) and row["positives"] == 0
  assert not np.isnan(row["fpr"])
  # The TPR gap is over groups 0 and 1 only; the FPR gap over all three.
  _, rates = _ours(y, p, g, 3)
  tpr_gap = np.ptp(rates["tpr"][:2, 1])
  fpr_gap = np.ptp(rates["fpr"][:, 1])
  np.testing.assert_allclose(report.summary["equal_opportunity_difference"], tpr_gap, rtol=1e-5)
  np.testing.assert_allclose(report.summary["equalized_odds_difference"], max(tpr_gap, fpr_gap), rtol=1e-5)


def test_all_positive_predictions():
  y, _, g = _data(seed=8)
  p = np.ones_like(y)
  counts, rates = _ours(y, p, g, 4)
  np.testing.assert_allclose(rates["selection_rate"][:, 1], 1.0)
  np.testing.assert_allclose(rates["tpr"][:, 1], 1.0)
  assert np.isnan(rates["npv"][:, 1]).all() and np.isnan(rates["for"][:, 1]).all()
  frame = _frame(y, p, g)
  np.testing.assert_allclose(rates["ppv"][:, 1], frame.by_group["ppv"].to_numpy(float), rtol=1e-6)
  disp = metrics.disparities(counts)
  assert float(disp["demographic_parity_difference"][1]) == 0.0
  assert float(disp["demographic_parity_ratio"][1]) == 1.0


def test_a_single_group_has_no_disparity_rather_than_zero():
  y, p, _ = _data(seed=9)
  counts = metrics.confusion_counts(y, p, np.zeros_like(y), num_groups=1, num_classes=2)
  with pytest.warns(metrics.FairnessWarning, match="fewer than two"):
    report = metrics.classification_report(counts)
  assert report.summary["demographic_parity_difference"] is None


def test_out_of_range_rows_are_dropped_and_mask_excludes_padding():
  y = np.array([0, 1, 1, 5, 1])
  p = np.array([0, 1, 0, 1, 1])
  g = np.array([0, 0, 1, 1, 7])
  counts = np.asarray(metrics.confusion_counts(y, p, g, num_groups=2, num_classes=2))
  assert counts.sum() == 3
  masked = np.asarray(metrics.confusion_counts(y, p, g, num_groups=2, num_classes=2,
                                               mask=np.array([1, 0, 1, 1, 1], bool)))
  assert masked.sum() == 2 and masked[0, 1, 1] == 0
