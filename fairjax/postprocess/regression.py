"""Regression post-processing of predicted ages: seed 001's correction model, fitted on one split
(validation) and applied to another (test).

Seed 001 (§ 校正模型, "correction model") fits a second-level model on the CNN's predicted age, gender and
race to correct systematic over- and under-estimation by demographic group, tunes several kinds of
model, and finds that none improves the CNN; it then tries a heuristic, the mean difference between
predicted and actual age by predicted-age band x race x gender, subtracted. All three are here, each a
model of the residual r = true - predicted from (predicted age, gender, race), the corrected age being
predicted + r_hat:

* ``linear``: ridge regression (closed form in numpy, the same numbers as scikit-learn's ``Ridge`` with
  its intercept; ``alpha`` 1.0, its default, keeps the collinear one-hot blocks solvable) on the predicted
  age, one-hot gender, one-hot race, one-hot race x gender, and each of the three one-hot blocks times
  the predicted age: one line per race x gender cell, pulled towards the gender's and the race's lines
  and the overall one where a cell has few rows. The race x gender block is beyond the seed's features,
  which would miss a bias of one cell alone (women of one race).
* ``gbt``: scikit-learn's ``HistGradientBoostingRegressor`` with gender and race as categorical features,
  a fixed ``random_state``, and shallow, shrunk trees by default. It is stored by joblib (a pickle:
  load only files you trust), not JSON.
* ``heuristic``: the mean residual of each (predicted-age band of ``band_width`` years) x race x gender
  cell of the fit split. A cell with fewer than ``min_cell_size`` rows falls back to its band's mean over
  every race and gender, and a band with fewer than that (or one the fit split never saw) to 0 (no
  correction); ``fallbacks`` counts the cells of each kind.

Models of the residual, not of the age, so that every method starts at "no correction" and must earn
any change. Gender and race are integer codes, -1 unknown: an unknown code has no one-hot column (its
row gets the gender-free or race-free part of the line) and no cell of its own in the heuristic.

A correction can only fix what is systematic: error that (predicted age, gender, race) predict. Where
the CNN's errors do not depend on them, a fitted correction only fits noise, which is the seed's finding
(tests/postprocess/test_regression.py plants both cases). ``correction_report`` shows, per race x gender
group of the applied split, whether the MAE moved by more than its bootstrap interval.
"""

import dataclasses
import functools
import io
import json
import os
import tempfile
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from fairjax import metrics

FORMAT = "fairjax.postprocess.regression/1"
METHODS = ("linear", "gbt", "heuristic")
OPTIONS = {
    "linear": {"alpha": 1.0},
    "gbt": {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 50,
            "l2_regularization": 1.0, "random_state": 0},
    "heuristic": {"band_width": 10.0, "min_cell_size": 10},
}


def _codes(values, name: str, n: int) -> np.ndarray:
  values = np.asarray(values)
  if values.shape != (n,):
    raise ValueError(f"{name} must be [{n}] like predicted_age, got shape {values.shape}")
  if values.size and not np.all(values == np.round(values)):
    raise ValueError(f"{name} must hold integer codes (-1 for unknown)")
  values = values.astype(np.int64)
  if values.size and values.min() < -1:
    raise ValueError(f"{name} codes must be -1 (unknown) or non-negative, got {values.min()}")
  return values


def _ages(values, name: str, n: Optional[int] = None, allow_nan: bool = False) -> np.ndarray:
  values = np.asarray(values, np.float64)
  if values.ndim != 1 or (n is not None and len(values) != n):
    raise ValueError(f"{name} must be [{n if n is not None else 'N'}], got shape {values.shape}")
  if not allow_nan and not np.all(np.isfinite(values)):
    raise ValueError(f"{name} holds {int(np.sum(~np.isfinite(values)))} NaN or infinite values")
  return values


def _one_hot(codes: np.ndarray, width: int) -> np.ndarray:
  known = (codes >= 0) & (codes < width)
  out = np.zeros((len(codes), width))
  out[np.flatnonzero(known), codes[known]] = 1.0
  return out


def linear_features(predicted_age, gender, race, num_genders: int, num_races: int) -> np.ndarray:
  """``[N, F]``: predicted age, one-hot gender, race and race x gender, and those times predicted age."""
  cell = np.where((gender >= 0) & (race >= 0), race * num_genders + gender, -1)
  blocks = [_one_hot(gender, num_genders), _one_hot(race, num_races), _one_hot(cell, num_genders * num_races)]
  age = predicted_age[:, None]
  return np.concatenate([age] + blocks + [age * block for block in blocks], axis=1)


def _ridge(features: np.ndarray, target: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
  """Ridge with an unpenalised intercept (centred features and target), as scikit-learn's ``Ridge``."""
  feature_mean, target_mean = features.mean(0), target.mean()
  centred = features - feature_mean
  gram = centred.T @ centred + alpha * np.eye(features.shape[1])
  coefficients = np.linalg.solve(gram, centred.T @ (target - target_mean))
  return coefficients, float(target_mean - feature_mean @ coefficients)


def _bands(predicted_age: np.ndarray, band_width: float) -> np.ndarray:
  return np.floor(predicted_age / band_width).astype(np.int64)


def _key(*parts: int) -> str:
  return ",".join(str(int(p)) for p in parts)


def _heuristic(predicted_age, gender, race, residual, band_width: float, min_cell_size: int):
  """The heuristic's table: mean residual per cell and per band where they have ``min_cell_size`` rows,
  and how many cells of the fit split's bands x races x genders use their own mean, the band's, or 0."""
  bands = _bands(predicted_age, band_width)
  band_means, cell_means = {}, {}
  for band in np.unique(bands):
    in_band = bands == band
    if in_band.sum() >= min_cell_size:
      band_means[_key(band)] = float(residual[in_band].mean())
    for r in np.unique(race[in_band & (race >= 0)]):
      for g in np.unique(gender[in_band & (race == r) & (gender >= 0)]):
        in_cell = in_band & (race == r) & (gender == g)
        if in_cell.sum() >= min_cell_size:
          cell_means[_key(band, r, g)] = float(residual[in_cell].mean())
  fallbacks = {"cell": 0, "band": 0, "zero": 0}
  races, genders = np.unique(race[race >= 0]), np.unique(gender[gender >= 0])
  for band in np.unique(bands):
    for r in races:
      for g in genders:
        if _key(band, r, g) in cell_means:
          fallbacks["cell"] += 1
        else:
          fallbacks["band" if _key(band) in band_means else "zero"] += 1
  return {"cells": cell_means, "bands": band_means}, fallbacks


@dataclasses.dataclass
class AgeCorrection:
  """A fitted correction of predicted ages; ``apply`` it to another split's predictions."""

  method: str
  options: dict[str, Any]
  num_genders: int
  num_races: int
  state: dict[str, Any]  # linear: coefficients, intercept; heuristic: cells, bands; gbt: the model
  summary: dict[str, Any]  # rows fitted on, and the heuristic's fallbacks

  @property
  def fallbacks(self) -> Optional[dict[str, int]]:
    """The heuristic's cells (fit split's bands x races x genders) using their own mean, their band's
    mean, or 0; None for the other methods."""
    return self.summary.get("fallbacks")

  def apply(self, predicted_age, gender, race) -> np.ndarray:
    """The corrected ages ``[N]`` (float64; NaN where the predicted age is NaN)."""
    predicted_age = _ages(predicted_age, "predicted_age", allow_nan=True)
    n = len(predicted_age)
    gender, race = _codes(gender, "gender", n), _codes(race, "race", n)
    if (gender.size and gender.max() >= self.num_genders) or (race.size and race.max() >= self.num_races):
      raise ValueError(f"codes beyond those fitted: gender < {self.num_genders} and race < {self.num_races}")
    finite = np.isfinite(predicted_age)
    age = np.where(finite, predicted_age, 0.0)
    if self.method == "linear":
      features = linear_features(age, gender, race, self.num_genders, self.num_races)
      offset = features @ np.asarray(self.state["coefficients"]) + self.state["intercept"]
    elif self.method == "gbt":
      with _one_thread():
        offset = self.state["model"].predict(_gbt_features(age, gender, race)) if n else np.zeros(0)
    else:
      bands = _bands(age, self.options["band_width"])
      cells, band_means = self.state["cells"], self.state["bands"]
      offset = np.array([cells.get(_key(b, r, g), band_means.get(_key(b), 0.0)) if r >= 0 and g >= 0
                         else band_means.get(_key(b), 0.0) for b, r, g in zip(bands, race, gender)])
    return np.where(finite, predicted_age + offset, np.nan)

  def to_json(self) -> str:
    """The correction as JSON (linear and heuristic; a gbt's trees are stored by ``save``, with joblib)."""
    if self.method == "gbt":
      raise ValueError("a gbt correction is a scikit-learn model: store it with save(path) (joblib)")
    return json.dumps({"format": FORMAT, **dataclasses.asdict(self)}, sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "AgeCorrection":
    stored = json.loads(text)
    if stored.pop("format", None) != FORMAT:
      raise ValueError(f"not an age correction of format {FORMAT}")
    return cls(**stored)

  def save(self, path: str) -> None:
    """Writes the correction to ``path`` (JSON, or joblib for gbt), replacing a file there only once
    complete."""
    if self.method == "gbt":
      import joblib  # pylint: disable=import-outside-toplevel  (scikit-learn's dependency)
      buffer = io.BytesIO()
      joblib.dump({"format": FORMAT, **dataclasses.asdict(self)}, buffer)
      data = buffer.getvalue()
    else:
      data = self.to_json().encode()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=folder, prefix=".correction-")
    try:
      with os.fdopen(handle, "wb") as f:
        f.write(data)
      os.replace(staging, path)
    except BaseException:
      if os.path.exists(staging):
        os.remove(staging)
      raise


def load_correction(path: str) -> AgeCorrection:
  """The correction ``AgeCorrection.save`` wrote to ``path``."""
  with open(path, "rb") as f:
    data = f.read()
  if data.lstrip().startswith(b"{"):
    return AgeCorrection.from_json(data.decode())
  import joblib  # pylint: disable=import-outside-toplevel
  stored = joblib.load(io.BytesIO(data))
  if not isinstance(stored, dict) or stored.pop("format", None) != FORMAT:
    raise ValueError(f"{path} is not an age correction of format {FORMAT}")
  return AgeCorrection(**stored)


def _one_thread():
  """scikit-learn's OpenMP pool held to one thread. Three features and tens of thousands of rows take a
  tenth of a second on one core; with more, the threads' spin-waiting on a busy machine (a run training
  beside it) made a 10,000-row fit take 8 s instead of 0.15 s (measured on 2 shared cores)."""
  import threadpoolctl  # pylint: disable=import-outside-toplevel  (scikit-learn's dependency)
  return threadpoolctl.threadpool_limits(limits=1, user_api="openmp")


def _gbt_features(predicted_age, gender, race) -> np.ndarray:
  categorical = lambda codes: np.where(codes >= 0, codes, np.nan)  # unknown: the trees' missing value
  return np.stack([predicted_age, categorical(gender), categorical(race)], axis=1)


def fit_correction(predicted_age, gender, race, true_age, method: str = "linear", **options) -> AgeCorrection:
  """A correction of ``predicted_age`` fitted to ``true_age`` on this split, by ``method``:

  * linear: ``alpha=1.0`` (the ridge penalty);
  * gbt: ``max_iter=200``, ``learning_rate=0.05``, ``max_leaf_nodes=15``, ``min_samples_leaf=50``,
    ``l2_regularization=1.0``, ``random_state=0`` (``HistGradientBoostingRegressor``'s);
  * heuristic: ``band_width=10.0`` years, ``min_cell_size=10`` rows.

  ``gender`` and ``race`` are integer codes, -1 for unknown.
  """
  if method not in METHODS:
    raise ValueError(f"unknown correction method {method!r}; known: {', '.join(METHODS)}")
  unknown = sorted(set(options) - set(OPTIONS[method]))
  if unknown:
    raise ValueError(f"correction method {method!r} has no option {', '.join(map(repr, unknown))}; its "
                     f"options: {', '.join(OPTIONS[method])}")
  options = {**OPTIONS[method], **options}
  predicted_age = _ages(predicted_age, "predicted_age")
  n = len(predicted_age)
  true_age = _ages(true_age, "true_age", n)
  gender, race = _codes(gender, "gender", n), _codes(race, "race", n)
  if n < 2:
    raise ValueError(f"a correction needs rows to fit on; got {n}")
  num_genders, num_races = int(max(gender.max(), 0)) + 1, int(max(race.max(), 0)) + 1
  residual = true_age - predicted_age
  summary = {"rows": n}
  if method == "linear":
    features = linear_features(predicted_age, gender, race, num_genders, num_races)
    coefficients, intercept = _ridge(features, residual, options["alpha"])
    state = {"coefficients": coefficients.tolist(), "intercept": intercept}
  elif method == "gbt":
    from sklearn import ensemble  # pylint: disable=import-outside-toplevel  (only this method needs it)
    model = ensemble.HistGradientBoostingRegressor(categorical_features=[1, 2], **options)
    with _one_thread():
      state = {"model": model.fit(_gbt_features(predicted_age, gender, race), residual)}
  else:
    if not options["band_width"] > 0 or options["min_cell_size"] < 1:
      raise ValueError(f"band_width must be positive and min_cell_size at least 1, got {options}")
    state, summary["fallbacks"] = _heuristic(predicted_age, gender, race, residual, options["band_width"],
                                             options["min_cell_size"])
  return AgeCorrection(method, options, num_genders, num_races, state, summary)


@functools.partial(jax.jit, static_argnames=("cells", "num_resamples"))
def _report_figures(key, true_age, before, after, usable, cell_of_row, *, cells: int, num_resamples: int):
  """The report's figures of every race x gender cell and then of all rows, and ``num_resamples``
  bootstrap draws of their MAE change; compiled once per shape, not per call."""
  n = true_age.shape[0]
  groupings = ((cell_of_row, cells), (jnp.zeros(n, jnp.int32), 1))

  def figures(multiplicity):
    out = {}
    for name, predicted in (("before", before), ("after", after)):
      found = [metrics.regression_metrics(metrics.regression_sums(
          true_age, predicted, groups, num_groups=size, weights=multiplicity, mask=usable))
               for groups, size in groupings]
      for key in ("count", "mae", "mean_signed_error"):
        out[f"{key}_{name}"] = jnp.concatenate([f[key] for f in found])
    out["mae_change"] = out["mae_after"] - out["mae_before"]
    return out

  draws = metrics.resample_rows(key, lambda m: figures(m)["mae_change"], n, num_resamples)
  return figures(jnp.ones(n, jnp.float32)), draws


def correction_report(true_age, predicted_before, predicted_after, gender, race, gender_names: Sequence[str],
                      race_names: Sequence[str], *, num_resamples: int = 1000, confidence: float = 0.95,
                      seed: int = 0) -> pd.DataFrame:
  """Per race x gender group (race-major, then ``all``/``all``): ``n``, MAE before and after, their
  difference ``mae_change`` (after - before, negative where the correction helped) with its bootstrap
  interval, and the mean signed error (predicted - true) before and after.

  The interval resamples rows jointly (``fairjax.metrics.bootstrap.resample_rows``; group sizes vary as in
  fairlearn's bootstrap), the same draw for before and after, so it is the interval of a paired
  difference. Rows with a NaN age count nowhere; rows with an unknown (-1) or unnamed code only in
  ``all``.
  """
  true_age = _ages(true_age, "true_age", allow_nan=True)
  n = len(true_age)
  before = _ages(predicted_before, "predicted_before", n, allow_nan=True)
  after = _ages(predicted_after, "predicted_after", n, allow_nan=True)
  gender, race = _codes(gender, "gender", n), _codes(race, "race", n)
  num_genders, num_races = len(gender_names), len(race_names)
  usable = np.isfinite(true_age) & np.isfinite(before) & np.isfinite(after)  # paired rows
  named = (gender >= 0) & (gender < num_genders) & (race >= 0) & (race < num_races)
  cells = num_genders * num_races
  cell_of_row = np.where(named, race * num_genders + gender, -1)
  point, draws = _report_figures(jax.random.PRNGKey(seed), true_age, before, after, usable, cell_of_row,
                                 cells=cells, num_resamples=num_resamples)
  point = jax.tree.map(np.asarray, point)
  lower, upper = metrics.percentile_interval(draws, confidence)
  races = [race_names[i // num_genders] for i in range(cells)] + ["all"]
  genders = [gender_names[i % num_genders] for i in range(cells)] + ["all"]
  return pd.DataFrame({
      "race": races, "gender": genders, "n": point["count_before"].astype(int),
      "mae_before": point["mae_before"], "mae_after": point["mae_after"], "mae_change": point["mae_change"],
      "mae_change_lower": np.asarray(lower), "mae_change_upper": np.asarray(upper),
      "mean_signed_error_before": point["mean_signed_error_before"],
      "mean_signed_error_after": point["mean_signed_error_after"],
  })
