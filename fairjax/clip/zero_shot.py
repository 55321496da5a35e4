"""Zero-shot gender and race classification from prompt sets, and its bias audit (seed 003, seed 000 §7.3).

Everything works on embeddings, whatever model made them. For image embeddings ``x`` [N, D], a prompt
set's class embeddings ``t`` [C, D] and the model's ``logit_scale`` (CLIP's learnable log inverse
temperature, so logits are ``exp(logit_scale) * cos(x, t)`` as in transformers' CLIPModel):

  * probabilities per set: ``softmax_c(exp(logit_scale) * <x/|x|, t_c/|t_c|>)``;
  * an ensemble averages its member sets' probabilities (seed 003: ``probability_g += probs / n``);
  * gender (binary, class 1 = female) is predicted female when ``P(female) > threshold``, strictly, as
    seed 003's ``gender_p > th``; race (five classes) by argmax.

The gender audit of each set reports, at threshold 0.5 and at the best threshold of the sweep
0.05, 0.10, ..., 0.95 (highest macro F1, the mean over both classes of F1, as seed 003's
``np.mean(f)`` of ``precision_recall_fscore_support``; ties go to the lowest threshold, as seed 003's
strict ``>``): the predicted share of each class against the true share, accuracy, macro accuracy and
macro F1, the share of the errors that come from each race (seed 003: among the errors, the fraction of
each race; its text calls these "error rates") beside each race's own error rate, a confusion matrix per
race, and ``fairjax.metrics.classification_report`` by race, gender and race x gender (selection rates,
TPR / FPR and every other rate, their gaps and ratios, disparate impact against the privileged group and
pairwise). The race audit reports accuracy, macro accuracy (balanced accuracy) and macro F1 (seed 000
§7.3.1 reports both for gender and race), each race's share classified correctly (what seed 000 §7.3.2
calls that race's "selection rate") and their pairwise ratios (its Black/White, Indian/White,
White/Asian), confusion matrices, and the same group reports.

The sweep counts every threshold in one pass (``fairjax.metrics.threshold_counts``, which counts
``score >= t``); seed 003's strict ``score > t`` is exactly ``score >= nextafter(t)`` in float32, so the
sweep is run at the next float above each threshold and reported at the threshold itself.
"""

import contextlib
import dataclasses
import math
import warnings
from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from fairjax.clip import references
from fairjax.data import groups
from fairjax.data import schema
from fairjax.metrics import confusion
from fairjax.metrics import disparity
from fairjax.metrics import group_report as report_lib
from fairjax.metrics import thresholds as thresholds_lib

GENDER, RACE = "gender", "race"
NUM_CLASSES = {GENDER: len(schema.GENDERS), RACE: len(schema.RACES)}
GROUPINGS = groups.DEFAULT_GROUPINGS  # the groupings the zero-shot audit reports (race always among them)
DEFAULT_THRESHOLD = 0.5
# Names of the default ensembles, built when an attribute has two or more prompt sets.
DEFAULT_ENSEMBLES = {GENDER: "ensemble", RACE: "race ensemble"}
# Logit scales above this are the temperature itself rather than its log (CLIP's is at most ln 100).
MAX_LOGIT_SCALE = math.log(1e4)

def normalize(x, axis: int = -1):
  """x / |x| along ``axis`` (CLIP compares directions, never lengths)."""
  x = jnp.asarray(x, jnp.float32)
  return x / jnp.linalg.norm(x, axis=axis, keepdims=True)


@jax.jit
def class_probabilities(image_embeddings, class_embeddings, logit_scale):
  """``[N, C]`` softmax over the classes of ``exp(logit_scale) * cosine(image, class)``."""
  cosine = normalize(image_embeddings) @ normalize(class_embeddings).T
  return jax.nn.softmax(jnp.exp(jnp.asarray(logit_scale, jnp.float32)) * cosine, axis=-1)


def ensemble_probabilities(probabilities: Sequence) -> jax.Array:
  """The mean of several sets' ``[N, C]`` probabilities (seed 003's ensemble)."""
  return jnp.mean(jnp.stack([jnp.asarray(p, jnp.float32) for p in probabilities]), axis=0)


@dataclasses.dataclass
class OperatingPoint:
  """The gender audit at one threshold on P(female)."""

  threshold: float
  accuracy: float
  macro_accuracy: float
  macro_f1: float
  accuracy_by_gender: dict       # class name -> share of its images predicted so (its recall)
  predicted_share: dict          # class name -> share of the images predicted so
  confusion_by_race: np.ndarray  # [races, 2, 2] counts (true, predicted), sklearn's confusion_matrix
  error_share_by_race: dict      # race -> share of all errors (seed 003); None without errors
  error_rate_by_race: dict       # race -> errors / images of that race
  disparate_impact_pairs: dict   # "Black/White" -> ratio of P(predicted female) by race
  reports: dict                  # grouping -> metrics.GroupReport

  def summary(self) -> dict:
    return {
        "threshold": self.threshold, "accuracy": self.accuracy, "macro_accuracy": self.macro_accuracy,
        "macro_f1": self.macro_f1, "accuracy_by_gender": self.accuracy_by_gender,
        "predicted_share": self.predicted_share,
        "confusion_by_race": {race: self.confusion_by_race[r].astype(int).tolist()
                              for r, race in enumerate(schema.RACES)},
        "error_share_by_race": self.error_share_by_race, "error_rate_by_race": self.error_rate_by_race,
        "disparate_impact_pairs": self.disparate_impact_pairs,
        "reports": {g: r.summary for g, r in self.reports.items()},
    }


@dataclasses.dataclass
class GenderAudit:
  """One gender prompt set (or ensemble): seed 003's figures at 0.5 and at the best threshold."""

  name: str
  members: tuple            # the prompt sets averaged (just the set itself if not an ensemble)
  p_female: np.ndarray      # [N]
  true_share: dict          # class name -> share of the images truly so
  sweep: dict               # thresholds, pooled accuracy and macro F1 at each, the best of each
  default: OperatingPoint   # at 0.5
  best: OperatingPoint      # at the threshold of highest macro F1

  @property
  def biased_towards(self) -> str:
    """The class predicted most at 0.5 (seed 003's mode of the predictions)."""
    return max(self.default.predicted_share, key=self.default.predicted_share.get)

  def summary(self) -> dict:
    return {"attribute": GENDER, "members": list(self.members), "biased_towards": self.biased_towards,
            "true_share": self.true_share, "threshold_sweep": self.sweep,
            "at_0.5": self.default.summary(), "at_best": self.best.summary()}


@dataclasses.dataclass
class RaceAudit:
  """One race prompt set (or ensemble), classified by argmax over the five races."""

  name: str
  members: tuple
  probabilities: np.ndarray  # [N, races]
  accuracy: float
  macro_accuracy: float
  macro_f1: float
  predicted_share: dict
  true_share: dict
  accuracy_by_race: dict     # race -> share of its images classified as that race (recall)
  accuracy_ratio: dict       # "Black/White" -> ratio of those shares (seed 000 §7.3.2's pairs)
  confusion: np.ndarray      # [races, races] (true, predicted)
  confusion_by_gender: np.ndarray  # [genders, races, races]
  reports: dict              # grouping -> metrics.GroupReport

  def summary(self) -> dict:
    return {"attribute": RACE, "members": list(self.members), "accuracy": self.accuracy,
            "macro_accuracy": self.macro_accuracy, "macro_f1": self.macro_f1,
            "predicted_share": self.predicted_share, "true_share": self.true_share,
            "accuracy_by_race": self.accuracy_by_race, "accuracy_ratio": self.accuracy_ratio,
            "confusion": self.confusion.astype(int).tolist(),
            "confusion_by_gender": {g: self.confusion_by_gender[i].astype(int).tolist()
                                    for i, g in enumerate(schema.GENDERS)},
            "reports": {g: r.summary for g, r in self.reports.items()}}


@dataclasses.dataclass
class ZeroShotResult:
  """Every prompt set's audit; ``fairjax.clip.zero_shot_report.write_zero_shot`` writes it out."""

  gender: dict   # name -> GenderAudit
  race: dict     # name -> RaceAudit
  num_examples: int
  skipped: dict  # reason -> rows left out
  logit_scale: float
  warnings: list  # undefined figures, "<set> / <operating point> / <grouping>: <message>"

  def summary(self) -> dict:
    return {"num_examples": self.num_examples, "skipped": self.skipped, "logit_scale": self.logit_scale,
            "gender": {n: a.summary() for n, a in self.gender.items()},
            "race": {n: a.summary() for n, a in self.race.items()},
            "seed_003": references.SEED_003_ZERO_SHOT, "seed_000": references.SEED_000_ZERO_SHOT,
            "warnings": self.warnings}

  def by_group(self, name: str) -> pd.DataFrame:
    """Every group report of one set stacked: operating point, threshold, grouping, keys, figures."""
    if name in self.gender:
      audit = self.gender[name]
      parts = [(label, point.threshold, point.reports)
               for label, point in (("at_0.5", audit.default), ("at_best", audit.best))]
    elif name in self.race:
      parts = [("argmax", math.nan, self.race[name].reports)]
    else:
      raise KeyError(f"no prompt set {name!r}; sets: {sorted(self.gender) + sorted(self.race)}")
    frames = []
    for label, threshold, reports in parts:
      for grouping, report in reports.items():
        frame = report.by_group.copy()
        frame.insert(0, "grouping", grouping)
        frame.insert(0, "threshold", threshold)
        frame.insert(0, "operating_point", label)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True, sort=False)
    keys = [c for c in ("race", "gender", "class") if c in table.columns]
    table[keys] = table[keys].astype(object).where(table[keys].notna(), "")
    rest = [c for c in table.columns if c not in ["operating_point", "threshold", "grouping"] + keys]
    return table[["operating_point", "threshold", "grouping"] + keys + rest]

  def save(self, directory: str) -> list[str]:
    """Writes summary.json, results.md, and per set by_group.csv and plots (see zero_shot_report)."""
    from fairjax.clip import zero_shot_report  # pylint: disable=g-import-not-at-top  (matplotlib)
    return zero_shot_report.write_zero_shot(self, directory)


def evaluate(
    image_embeddings,
    gender,
    race,
    prompt_embeddings: Mapping[str, object],
    logit_scale: float,
    *,
    ensembles: Optional[Mapping[str, Sequence[str]]] = None,
    thresholds: Sequence[float] = report_lib.DEFAULT_THRESHOLDS,
    groupings: Sequence[str] = GROUPINGS,
    num_resamples: int = 0,
    seed: int = 0,
) -> ZeroShotResult:
  """Zero-shot audit of every prompt set on the same images.

  Args:
    image_embeddings: ``[N, D]`` image embeddings (any length; compared by cosine).
    gender, race: ``[N]`` schema codes (gender 0 male / 1 female, race 0..4); rows where either is -1
      (unknown) are left out and counted in ``skipped``, as seed 003 keeps only labelled rows.
    prompt_embeddings: set name -> ``[C, D]`` class embeddings in schema order (``prompts.
      embed_prompt_sets``); C = 2 is a gender set, C = 5 a race set.
    logit_scale: the model's ``logit_scale`` parameter (the log of the softmax's inverse temperature).
    ensembles: name -> member set names, each ensemble averaging its members' probabilities; default
      one "ensemble" of all gender sets (and a "race ensemble" of all race sets) where there are two
      or more. ``{}`` for none.
    thresholds: the sweep on P(female), ascending; default 0.05, 0.10, ..., 0.95.
    groupings: the group reports to build, from ``race``, ``gender``, ``race_x_gender``; ``race`` is
      always among them (seed 003's per-race figures come from it).
    num_resamples: bootstrap resamples for the group reports' intervals (0: none).
  """
  x, gender, race, skipped = _check_rows(image_embeddings, gender, race)
  scale = _check_logit_scale(logit_scale)
  attributes, classes = _check_prompts(prompt_embeddings, x.shape[1])
  ensemble_sets = _check_ensembles(ensembles, attributes)
  groupings = _check_groupings(groupings)
  grid = np.sort(np.asarray([float(t) for t in thresholds], np.float32))
  if grid.size == 0 or not np.all((grid > 0) & (grid < 1)):
    raise ValueError(f"thresholds must lie strictly between 0 and 1, got {list(thresholds)}")

  probabilities = {n: np.asarray(class_probabilities(x, c, scale)) for n, c in classes.items()}
  for name, members in ensemble_sets.items():
    probabilities[name] = np.asarray(ensemble_probabilities([probabilities[m] for m in members]))
  members_of = {**{n: (n,) for n in classes}, **ensemble_sets}
  attribute_of = {**attributes, **{n: attributes[m[0]] for n, m in ensemble_sets.items()}}

  caught_warnings = []
  gender_audits, race_audits = {}, {}
  for name, probs in probabilities.items():
    if attribute_of[name] == GENDER:
      gender_audits[name] = _audit_gender(name, members_of[name], probs[:, 1], gender, race, grid,
                                          groupings, num_resamples, seed, caught_warnings)
    else:
      race_audits[name] = _audit_race(name, members_of[name], probs, race, gender, groupings,
                                      num_resamples, seed, caught_warnings)
  result = ZeroShotResult(gender_audits, race_audits, int(x.shape[0]), skipped, scale, caught_warnings)
  if caught_warnings:
    warnings.warn(f"{len(caught_warnings)} group figures are undefined (NaN), e.g. {caught_warnings[0]}; "
                  "all are listed in ZeroShotResult.warnings", report_lib.FairnessWarning, stacklevel=2)
  return result


def _audit_gender(name, members, p_female, gender, race, grid, groupings, num_resamples, seed,
                  sink) -> GenderAudit:
  scores = jnp.asarray(p_female, jnp.float32)
  strictly_above = np.nextafter(grid, np.float32(np.inf))  # score >= nextafter(t)  <=>  score > t
  race_sweep = thresholds_lib.threshold_counts(scores, gender, race, strictly_above,
                                               num_groups=len(schema.RACES))
  # The race report at 0.5 carries the sweep (as the audit command's report does); its best macro F1
  # threshold is the second operating point.
  default = _operating_point(scores, gender, race, DEFAULT_THRESHOLD, groupings, num_resamples, seed,
                             (sink, f"{name} / at_0.5"), sweep=(grid, race_sweep))
  sweep = default.reports["race"].summary["threshold_sweep"]
  best = _operating_point(scores, gender, race, float(sweep["best_macro_f1"]["threshold"]), groupings,
                          num_resamples, seed, (sink, f"{name} / at_best"))
  true_share = {c: float(np.mean(gender == i)) for i, c in enumerate(schema.GENDERS)}
  return GenderAudit(name, tuple(members), np.asarray(p_female), true_share, sweep, default, best)


def _operating_point(scores, gender, race, threshold, groupings, num_resamples, seed, warn_to,
                     sweep=None) -> OperatingPoint:
  predicted = (scores > jnp.float32(threshold)).astype(jnp.int32)
  labels = {"race": race, "gender": gender}
  reports, counts_of = {}, {}
  for grouping in groupings:
    counts_of[grouping] = _grouped_counts(gender, predicted, labels, grouping, len(schema.GENDERS))
    with _collected(*warn_to, grouping):
      reports[grouping] = report_lib.classification_report(
          counts_of[grouping], group_keys=groups.group_keys(grouping), class_names=list(schema.GENDERS),
          positive_class=1, privileged=_privileged(grouping, counts_of[grouping]),
          num_resamples=num_resamples, seed=seed, sweep=sweep if grouping == "race" else None)
  by_race = np.asarray(counts_of["race"])
  overall = confusion.overall_summary(jnp.asarray(by_race))
  errors = by_race.sum((1, 2)) - np.trace(by_race, axis1=1, axis2=2)
  total_errors = errors.sum()
  predicted_np = np.asarray(predicted)
  selection = np.asarray(confusion.class_rates(jnp.asarray(by_race))["selection_rate"][:, 1])
  recall = np.asarray(confusion.class_rates(jnp.asarray(by_race.sum(0, keepdims=True)))["tpr"][0])
  return OperatingPoint(
      threshold=float(threshold),
      accuracy=_float(overall["accuracy"]),
      macro_accuracy=_float(overall["macro_accuracy"]),
      macro_f1=_float(overall["macro_f1"]),
      accuracy_by_gender={c: _float(recall[i]) for i, c in enumerate(schema.GENDERS)},
      predicted_share={c: float(np.mean(predicted_np == i)) for i, c in enumerate(schema.GENDERS)},
      confusion_by_race=by_race,
      error_share_by_race={r: (float(errors[i] / total_errors) if total_errors else None)
                           for i, r in enumerate(schema.RACES)},
      error_rate_by_race={r: _float(confusion.safe_div(errors[i], by_race[i].sum()))
                          for i, r in enumerate(schema.RACES)},
      disparate_impact_pairs=_named_ratios(selection),
      reports=reports)


def _audit_race(name, members, probabilities, race, gender, groupings, num_resamples, seed,
                sink) -> RaceAudit:
  predicted = jnp.argmax(jnp.asarray(probabilities), axis=-1).astype(jnp.int32)
  labels = {"race": race, "gender": gender}
  reports, counts_of = {}, {}
  for grouping in groupings:
    counts_of[grouping] = _grouped_counts(race, predicted, labels, grouping, len(schema.RACES))
    with _collected(sink, f"{name} / argmax", grouping):
      reports[grouping] = report_lib.classification_report(
          counts_of[grouping], group_keys=groups.group_keys(grouping), class_names=list(schema.RACES),
          privileged=_privileged(grouping, counts_of[grouping]), num_resamples=num_resamples, seed=seed)
  by_race = jnp.asarray(counts_of["race"])
  overall = confusion.overall_summary(by_race)
  correct = np.asarray(confusion.group_summary(by_race)["accuracy"])
  predicted_np = np.asarray(predicted)
  return RaceAudit(
      name=name, members=tuple(members), probabilities=np.asarray(probabilities),
      accuracy=_float(overall["accuracy"]), macro_accuracy=_float(overall["macro_accuracy"]),
      macro_f1=_float(overall["macro_f1"]),
      predicted_share={c: float(np.mean(predicted_np == i)) for i, c in enumerate(schema.RACES)},
      true_share={c: float(np.mean(race == i)) for i, c in enumerate(schema.RACES)},
      accuracy_by_race={c: _float(correct[i]) for i, c in enumerate(schema.RACES)},
      accuracy_ratio=_named_ratios(correct),
      confusion=np.asarray(by_race).sum(0),
      confusion_by_gender=_grouped_counts(race, predicted, labels, "gender", len(schema.RACES)),
      reports=reports)


@contextlib.contextmanager
def _collected(sink: list, prefix: str, grouping: str):
  """Moves the FairnessWarnings raised inside into ``sink`` as ``"<prefix> / <grouping>: <message>"``.

  A gender classifier grouped by gender always has groups without positives (or negatives): their
  NaN rates are expected, recorded and written to summary.json, and summed up in one warning.
  """
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", report_lib.FairnessWarning)
    yield
  for w in caught:
    if issubclass(w.category, report_lib.FairnessWarning):
      sink.append(f"{prefix} / {grouping}: {w.message}")
    else:
      warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _grouped_counts(y_true, y_pred, labels, grouping, num_classes):
  codes = groups.group_codes(labels, grouping)
  return np.asarray(confusion.confusion_counts(y_true, y_pred, codes, num_groups=groups.num_groups(grouping),
                                               num_classes=num_classes))


def _privileged(grouping: str, counts) -> int:
  """Men for the gender grouping (seed 000 §6.1.5, as the training reports), else the largest group."""
  choice = groups.DEFAULT_PRIVILEGED.get(grouping)
  if choice is not None:
    return groups.group_labels(grouping).index(choice)
  return int(np.argmax(np.asarray(counts).sum((1, 2))))


def _named_ratios(per_race: np.ndarray) -> dict:
  matrix = np.asarray(disparity.pairwise_disparate_impact(jnp.asarray(per_race, jnp.float32)))
  index = {r: i for i, r in enumerate(schema.RACES)}
  return {f"{a}/{b}": _float(matrix[index[a], index[b]]) for a, b in references.SEED_000_RACE_PAIRS}


def _float(value) -> Optional[float]:
  """A figure for JSON: a Python float, None where undefined (NaN)."""
  value = float(np.asarray(value))
  return value if math.isfinite(value) else None


def _check_rows(image_embeddings, gender, race):
  x = np.asarray(image_embeddings, np.float32)
  if x.ndim != 2 or x.shape[0] == 0:
    raise ValueError(f"image_embeddings must be [N, D] with N > 0, got shape {x.shape}")
  labels = {}
  for attribute, values in (("gender", gender), ("race", race)):
    values = np.asarray(values)
    if values.shape != (x.shape[0],):
      raise ValueError(f"{attribute} has shape {values.shape}; expected ({x.shape[0]},), one per image")
    if not np.issubdtype(values.dtype, np.integer):
      if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        raise ValueError(f"{attribute} labels must be integer codes, got dtype {values.dtype}")
    values = values.astype(np.int64)
    size = NUM_CLASSES[attribute]
    bad = (values != schema.UNKNOWN) & ((values < 0) | (values >= size))
    if bad.any():
      raise ValueError(f"{attribute} codes must be 0..{size - 1} or {schema.UNKNOWN} (unknown); "
                       f"{int(bad.sum())} row(s) have e.g. {int(values[bad][0])}")
    labels[attribute] = values
  bad = ~np.isfinite(x).all(axis=1)
  if bad.any():
    raise ValueError(f"{int(bad.sum())} image embedding(s) are not finite, "
                     f"first at row {int(np.argmax(bad))}")
  zero = np.linalg.norm(x, axis=1) == 0
  if zero.any():
    raise ValueError(f"{int(zero.sum())} image embedding(s) are zero (no direction), first at row "
                     f"{int(np.argmax(zero))}")
  unknown_gender = labels["gender"] == schema.UNKNOWN
  unknown_race = labels["race"] == schema.UNKNOWN
  keep = ~(unknown_gender | unknown_race)
  if not keep.any():
    raise ValueError("no image has both a known gender and a known race")
  # A row unknown in both counts under gender.
  skipped = {"unknown_gender": int(unknown_gender.sum()),
             "unknown_race": int((unknown_race & ~unknown_gender).sum())}
  return (x[keep], labels["gender"][keep].astype(np.int32), labels["race"][keep].astype(np.int32), skipped)


def _check_logit_scale(logit_scale) -> float:
  scale = float(np.asarray(logit_scale))
  if not math.isfinite(scale):
    raise ValueError(f"logit_scale must be finite, got {scale}")
  if scale > MAX_LOGIT_SCALE:
    raise ValueError(f"logit_scale {scale:g} would scale cosines by exp({scale:g}); pass the model's "
                     "logit_scale parameter (the log, e.g. ln 100 = 4.605), not its exponential")
  return scale


def _check_prompts(prompt_embeddings, dim):
  if not prompt_embeddings:
    raise ValueError("no prompt sets given")
  by_size = {n: a for a, n in NUM_CLASSES.items()}
  attributes, classes = {}, {}
  for name, value in prompt_embeddings.items():
    value = np.asarray(value, np.float32)
    if value.ndim != 2 or value.shape[0] not in by_size:
      raise ValueError(f"prompt set {name!r} has shape {value.shape}; expected [2, D] (gender: "
                       f"{', '.join(schema.GENDERS)}) or [5, D] (race: {', '.join(schema.RACES)})")
    if value.shape[1] != dim:
      raise ValueError(f"prompt set {name!r} has dimension {value.shape[1]}, the images {dim}")
    if not np.isfinite(value).all() or (np.linalg.norm(value, axis=1) == 0).any():
      raise ValueError(f"prompt set {name!r} has a non-finite or zero class embedding")
    attributes[name], classes[name] = by_size[value.shape[0]], value
  return attributes, classes


def _check_groupings(groupings) -> tuple:
  groupings = tuple(dict.fromkeys(groupings))
  unknown = [g for g in groupings if g not in GROUPINGS]
  if unknown or "race" not in groupings:
    raise ValueError(f"groupings must be among {GROUPINGS} and include race, got {list(groupings)}")
  return groupings


def _check_ensembles(ensembles, attributes) -> dict:
  if ensembles is None:
    ensembles = {}
    for attribute, name in DEFAULT_ENSEMBLES.items():
      members = [n for n, a in attributes.items() if a == attribute]
      if len(members) >= 2 and name not in attributes:
        ensembles[name] = members
  out = {}
  for name, members in ensembles.items():
    members = tuple(members)
    if name in attributes:
      raise ValueError(f"ensemble {name!r} has the name of a prompt set")
    unknown = [m for m in members if m not in attributes]
    if not members or unknown:
      raise ValueError(f"ensemble {name!r}: unknown or no member sets {unknown or list(members)}; "
                       f"sets: {sorted(attributes)}")
    kinds = {attributes[m] for m in members}
    if len(kinds) != 1:
      raise ValueError(f"ensemble {name!r} mixes gender and race sets: {list(members)}")
    out[name] = members
  return out
