"""Seed 001's correction of predicted ages: it removes a planted group bias on a held-out split, improves
nothing where the errors are not systematic, falls back from small cells as stated, and round-trips.

The synthetic "CNN" is calibrated before any bias is planted: the true age is the predicted age plus
noise that (predicted age, gender, race) do not predict, so the best correction there is none. (Noise
added to the true age instead would leave a systematic part, regression to the mean, that a correction
rightly removes.)
"""

import json

import numpy as np
import pytest
from sklearn import linear_model

from fairjax.postprocess import regression

GENDERS = ["man", "woman"]
RACES = ["white", "black", "asian", "indian", "other"]
RACE_RATES = [0.45, 0.2, 0.15, 0.15, 0.05]
WOMAN, ASIAN = 1, 2


def _sample(seed, n, bias=None):
  """(predicted age, gender, race, true age); ``bias(predicted, gender, race)`` is the planted
  over-estimate."""
  rng = np.random.default_rng(seed)
  gender = rng.integers(0, 2, n)
  race = rng.choice(len(RACES), n, p=RACE_RATES)
  predicted = rng.uniform(1, 85, n)
  true = predicted + rng.normal(0, 6, n)
  if bias is not None:
    true -= bias(predicted, gender, race)
  return predicted, gender, race, true


def _step(predicted, gender, race):  # Asian women under 30 over-estimated by 5 years
  return np.where((gender == WOMAN) & (race == ASIAN) & (predicted < 30), 5.0, 0.0)


def _slope(predicted, gender, race):  # seed 001's pattern: young women over-, older ones under-estimated
  return np.where((gender == WOMAN) & (race == ASIAN), 0.2 * (45 - predicted), 0.0)


def _signed_error(predicted, true, rows):
  return float(np.mean(predicted[rows] - true[rows]))


def _mae(predicted, true, rows=slice(None)):
  return float(np.mean(np.abs(predicted[rows] - true[rows])))


def test_the_heuristic_removes_a_step_bias_and_the_models_most_of_it():
  validation, test = _sample(0, 20_000, _step), _sample(1, 20_000, _step)
  predicted, gender, race, true = test
  planted = (gender == WOMAN) & (race == ASIAN) & (predicted < 30)
  group = (gender == WOMAN) & (race == ASIAN)
  assert _signed_error(predicted, true, planted) > 4.5
  for method, left in (("heuristic", 0.5), ("linear", 2.0), ("gbt", 2.0)):
    corrected = regression.fit_correction(*validation, method=method).apply(predicted, gender, race)
    print(method, _signed_error(corrected, true, planted), _mae(predicted, true, group),
          _mae(corrected, true, group))
    assert abs(_signed_error(corrected, true, planted)) < left, method
    assert _mae(corrected, true, group) < _mae(predicted, true, group) - 0.3, method
    assert _mae(corrected, true) < _mae(predicted, true), method


@pytest.mark.parametrize("method", ["heuristic", "linear"])
def test_an_age_dependent_group_bias_is_removed(method):
  validation, test = _sample(2, 20_000, _slope), _sample(3, 20_000, _slope)
  predicted, gender, race, true = test
  correction = regression.fit_correction(*validation, method=method)
  corrected = correction.apply(predicted, gender, race)
  group = (gender == WOMAN) & (race == ASIAN)
  for rows in (group & (predicted < 30), group & (predicted >= 60)):  # about 5.5 years either way
    before = _signed_error(predicted, true, rows)
    assert abs(before) > 4.0
    assert abs(_signed_error(corrected, true, rows)) < 0.2 * abs(before)  # four fifths of it gone
  report = regression.correction_report(true, predicted, corrected, gender, race, GENDERS, RACES,
                                        num_resamples=200)
  cell = report[(report.race == "asian") & (report.gender == "woman")].iloc[0]
  assert cell.mae_change_upper < -1.0  # the group's MAE drops by more than a year, surely
  overall = report.iloc[-1]
  assert (overall.race, overall.gender, overall.n) == ("all", "all", len(true))
  assert overall.mae_change_upper < 0


@pytest.mark.parametrize("method", regression.METHODS)
def test_no_method_improves_on_errors_that_are_not_systematic(method):
  """Seed 001's finding: the correction models improved nothing."""
  validation, test = _sample(4, 10_000), _sample(5, 20_000)
  predicted, gender, race, true = test
  corrected = regression.fit_correction(*validation, method=method).apply(predicted, gender, race)
  report = regression.correction_report(true, predicted, corrected, gender, race, GENDERS, RACES,
                                        num_resamples=200)
  overall = report.iloc[-1]
  print(method, overall.mae_change, overall.mae_change_lower, overall.mae_change_upper)
  assert overall.mae_change > -0.03 and overall.mae_change_upper > 0


def test_small_cells_fall_back_to_their_band_then_to_zero():
  # Band [20, 30): 12 white men (residual +1), 3 white women (+5): the women's cell is too small and takes
  # the band's mean. Band [50, 60): 4 rows, too few for the band: no correction. 12 white men in [40, 50).
  predicted = np.array([25.0] * 12 + [25.0] * 3 + [55.0] * 4 + [45.0] * 12)
  gender = np.array([0] * 12 + [1] * 3 + [1] * 4 + [0] * 12)
  race = np.zeros(len(predicted), int)
  true = predicted + np.array([1.0] * 12 + [5.0] * 3 + [2.0] * 4 + [-3.0] * 12)
  correction = regression.fit_correction(predicted, gender, race, true, method="heuristic")
  # Bands 2, 4, 5 x one race x two genders: men of 20s and 40s own; women of 20s and 40s their band's;
  # both of 50s nothing.
  assert correction.fallbacks == {"cell": 2, "band": 2, "zero": 2}
  band_mean = (12 * 1.0 + 3 * 5.0) / 15
  corrected = correction.apply([25.0, 25.0, 55.0, 45.0, 45.0, 95.0, 25.0], [0, 1, 1, 0, 1, 0, -1],
                               [0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_allclose(corrected, [26.0, 25.0 + band_mean, 55.0, 42.0, 42.0, 95.0, 25.0 + band_mean])
  # A smaller min_cell_size lets the women's cell and the 50s band stand on their own.
  small = regression.fit_correction(predicted, gender, race, true, method="heuristic", min_cell_size=3)
  assert small.fallbacks == {"cell": 4, "band": 2, "zero": 0}
  np.testing.assert_allclose(small.apply([25.0, 55.0], [1, 0], [0, 0]), [30.0, 57.0])


@pytest.mark.parametrize("method", regression.METHODS)
def test_round_trip(tmp_path, method):
  validation, test = _sample(6, 3000, _slope), _sample(7, 500, _slope)
  correction = regression.fit_correction(*validation, method=method)
  path = tmp_path / f"{method}.correction"
  correction.save(str(path))
  loaded = regression.load_correction(str(path))
  np.testing.assert_array_equal(loaded.apply(*test[:3]), correction.apply(*test[:3]))
  if method == "gbt":
    with pytest.raises(ValueError, match="joblib"):
      correction.to_json()
  else:
    text = correction.to_json()
    assert json.loads(text)["method"] == method
    again = regression.AgeCorrection.from_json(text)
    np.testing.assert_array_equal(again.apply(*test[:3]), correction.apply(*test[:3]))


def test_the_linear_model_is_scikit_learns_ridge():
  predicted, gender, race, true = _sample(8, 2000, _slope)
  gender = np.where(np.arange(len(gender)) % 17 == 0, -1, gender)  # unknown codes: no one-hot column
  correction = regression.fit_correction(predicted, gender, race, true, method="linear", alpha=3.0)
  features = regression.linear_features(predicted, gender, race, 2, len(RACES))
  reference = linear_model.Ridge(alpha=3.0).fit(features, true - predicted)
  expected = predicted + reference.predict(features)
  np.testing.assert_allclose(correction.apply(predicted, gender, race), expected, atol=1e-8)


def test_the_report_figures():
  true = np.array([10.0, 20.0, 30.0, 40.0, 50.0, np.nan])
  before = np.array([12.0, 18.0, 35.0, 40.0, 45.0, 1.0])
  after = np.array([11.0, 20.0, 31.0, 42.0, 50.0, 1.0])
  gender = np.array([0, 0, 1, 1, -1, 0])
  race = np.array([0, 0, 0, 1, 0, 0])
  report = regression.correction_report(true, before, after, gender, race, ["m", "f"], ["a", "b"],
                                        num_resamples=200)
  assert list(report.race) == ["a", "a", "b", "b", "all"]
  assert list(report.gender) == ["m", "f", "m", "f", "all"]
  np.testing.assert_array_equal(report.n, [2, 1, 0, 1, 5])
  np.testing.assert_allclose(report.mae_before, [2.0, 5.0, np.nan, 0.0, 14 / 5], rtol=1e-6)
  np.testing.assert_allclose(report.mae_after, [0.5, 1.0, np.nan, 2.0, 4 / 5], rtol=1e-6)
  np.testing.assert_allclose(report.mean_signed_error_before, [0.0, 5.0, np.nan, 0.0, 0.0])
  np.testing.assert_allclose(report.mae_change, report.mae_after - report.mae_before)
  finite = np.isfinite(report.mae_change)
  assert np.all(report.mae_change_lower[finite] <= report.mae_change[finite] + 1e-6)
  assert np.all(report.mae_change[finite] <= report.mae_change_upper[finite] + 1e-6)


def test_bad_input_is_a_one_line_value_error():
  predicted, gender, race, true = _sample(9, 100)
  cases = {
      "known: linear, gbt, heuristic": dict(method="ridge"),
      "its options: band_width, min_cell_size": dict(method="heuristic", band=5),
      "band_width must be positive": dict(method="heuristic", band_width=0),
  }
  for expected, options in cases.items():
    with pytest.raises(ValueError, match=expected):
      regression.fit_correction(predicted, gender, race, true, **options)
  with pytest.raises(ValueError, match=r"gender must be \[100\]"):
    regression.fit_correction(predicted, gender[:-1], race, true)
  with pytest.raises(ValueError, match="true_age holds 1 NaN"):
    regression.fit_correction(predicted, gender, race, np.where(np.arange(100) == 5, np.nan, true))
  correction = regression.fit_correction(predicted, gender, race, true)
  with pytest.raises(ValueError, match="codes beyond those fitted"):
    correction.apply(predicted, gender + 2, race)
