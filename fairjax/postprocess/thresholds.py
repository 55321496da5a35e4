"""Group thresholds fitted on one split and applied to another (Hardt, Price & Srebro 2016).

A model's scores may be fair enough to rank but not to threshold: one cut-off gives groups different
error rates. Hardt et al.'s remedy needs no retraining: pick, per group, a threshold (randomised between
two where needed) so that the groups' rates agree within epsilon and accuracy is as high as that
allows. ``fairjax.metrics.frontier`` computes how accurate that can be on a split's own labels (an
oracle); here the rule is fitted on one split (validation), saved, and applied to another (test), where
its accuracy and gap are what a deployment would see. ``frontier`` reports both across epsilons.

``fit`` returns a ``GroupThresholds``: per group five numbers (``derive.RULE_FIELDS``): P(predict 1 |
score s, group g) = ``p_above`` if s >= ``t_high``, ``p_between`` if ``t_low`` <= s < ``t_high``,
``p_below`` if s < ``t_low``; on the rows it was fitted on, each group's expected (FPR, TPR) is exactly
the point the search chose. ``probabilities`` gives that P per row, ``predict`` draws the decisions from
a PRNG key. The JSON file (``save`` / ``load``) holds the rules, the pooled rule of groups too small to
fit, and the fit set's figures.
"""

import dataclasses
import functools
import json
import os
import tempfile
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fairjax.metrics import bootstrap
from fairjax.metrics import frontier as frontier_lib
from fairjax.postprocess import derive

Array = jax.Array

CONSTRAINTS = frontier_lib.CONSTRAINTS
DEFAULT_MIN_GROUP_SIZE = 30
PoolingWarning = derive.PoolingWarning
RULE_TEXT = ("P(predict 1 | score s) = p_above if s >= t_high, p_between if t_low <= s < t_high, "
             "p_below if s < t_low")


@dataclasses.dataclass
class GroupThresholds:
  """A fitted post-processing rule: one derived rule per group, and a pooled rule for the rest."""

  constraint: str
  epsilon: float               # the bound asked for
  randomized: bool
  group_names: list            # [G] name of each group index
  rules: np.ndarray            # [G, 5] each group's rule, columns derive.RULE_FIELDS
  pooled_rule: np.ndarray      # [5] for groups too small to fit and groups the fit never saw
  pooled: np.ndarray           # [G] bool: the group got the pooled rule
  fit: dict                    # the fit set's figures: accuracy, gap, one_threshold, by_group, ...
  note: str = ""               # what the fit could not do (a deterministic rule that is trivial)
  source: dict = dataclasses.field(default_factory=dict)  # where the fit rows came from (the command's)

  @property
  def num_groups(self) -> int:
    return len(self.group_names)

  def probabilities(self, scores, groups) -> Array:
    """``[N]`` P(predict 1) of each row: its group's rule (group index as fitted; any other index, such
    as -1, gets the pooled rule) at its score."""
    return jnp.asarray(self._padded_probabilities(scores, groups)[:np.size(scores)])

  def _padded_probabilities(self, scores, groups) -> np.ndarray:
    scores = np.ravel(np.asarray(scores, np.float32))
    groups = np.ravel(np.asarray(groups, np.int32))
    padded = derive.apply_rules(self.rules, self.pooled_rule, derive.pad(scores, 0), derive.pad(groups, -1))
    return np.asarray(padded)

  def predict(self, scores, groups, key: Array) -> Array:
    """``[N]`` int32 randomised decisions, 1 with probability ``probabilities``; the same key draws the
    same decisions."""
    decided = _draw(key, self._padded_probabilities(scores, groups))
    return jnp.asarray(np.asarray(decided)[:np.size(scores)])

  def one_threshold(self) -> "GroupThresholds":
    """The pooled rule for every group (one threshold for all: the fit set's most accurate), to compare
    with; gaps are still taken over the groups this rule fitted."""
    return dataclasses.replace(self, rules=np.tile(self.pooled_rule, (self.num_groups, 1)))

  def evaluate(self, scores, y_true, groups) -> dict:
    """Expected figures of the rule on labelled rows (``derive.expected_figures``, as floats and lists):
    ``accuracy`` over all rows, the constraint's ``gap`` over the fitted groups, and per group rates."""
    groups = np.asarray(groups)
    known = (groups >= 0) & (groups < self.num_groups)
    scores, y_true, groups = derive.check_rows(scores, y_true, np.where(known, groups, self.num_groups),
                                               self.num_groups + 1)
    figures = derive.expected_figures(self._padded_probabilities(scores, groups), derive.pad(y_true, 0),
                                      derive.pad(groups, -1), ~self.pooled, num_groups=self.num_groups,
                                      constraint=self.constraint, weights=derive.pad(np.ones_like(scores), 0))
    return _as_python(figures)

  def to_json(self) -> dict:
    groups = []
    for g, name in enumerate(self.group_names):
      entry = {"name": name, "pooled": bool(self.pooled[g]), **_rule_json(self.rules[g])}
      if self.fit.get("by_group"):
        entry["fit"] = self.fit["by_group"][g]
      groups.append(entry)
    return {"method": "group thresholds (Hardt, Price & Srebro 2016)", "constraint": self.constraint,
            "epsilon": self.epsilon, "randomized": self.randomized, "note": self.note, "rule": RULE_TEXT,
            "groups": groups, "pooled_rule": _rule_json(self.pooled_rule),
            "fit": {k: v for k, v in self.fit.items() if k != "by_group"}, "source": self.source}

  @classmethod
  def from_json(cls, data: dict) -> "GroupThresholds":
    try:
      groups = data["groups"]
      rules = np.array([[float(g[k]) for k in derive.RULE_FIELDS] for g in groups], np.float32)
      fit = dict(data.get("fit", {}))
      if all("fit" in g for g in groups):
        fit["by_group"] = [g["fit"] for g in groups]
      pooled_rule = np.array([float(data["pooled_rule"][k]) for k in derive.RULE_FIELDS], np.float32)
      result = cls(constraint=data["constraint"], epsilon=float(data["epsilon"]),
                   randomized=bool(data["randomized"]), group_names=[str(g["name"]) for g in groups],
                   rules=rules.reshape(len(groups), len(derive.RULE_FIELDS)), pooled_rule=pooled_rule,
                   pooled=np.array([bool(g["pooled"]) for g in groups], bool), fit=fit, note=data.get("note", ""),
                   source=data.get("source", {}))
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f"not a saved group-threshold rule: {type(e).__name__} {e}") from None
    if result.constraint not in CONSTRAINTS:
      raise ValueError(f"not a saved group-threshold rule: unknown constraint {result.constraint!r}")
    return result

  def save(self, path: str) -> None:
    """Writes the JSON to ``path`` atomically (a temporary file beside it, then renamed)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".thresholds-", suffix=".json", dir=folder)
    try:
      with os.fdopen(handle, "w") as f:
        json.dump(self.to_json(), f, indent=2, allow_nan=False)
        f.write("\n")
      os.replace(temporary, path)
    finally:
      if os.path.exists(temporary):
        os.remove(temporary)

  @classmethod
  def load(cls, path: str) -> "GroupThresholds":
    if not os.path.exists(path):
      raise FileNotFoundError(f"predictor file not found: {path}")
    try:
      with open(path) as f:
        data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f"predictor file is not JSON ({path}): {e}") from None
    return cls.from_json(data)


@jax.jit
def _draw(key: Array, p_post: Array) -> Array:
  return (jax.random.uniform(key, p_post.shape) < p_post).astype(jnp.int32)


def _rule_json(rule) -> dict:
  """A rule as JSON numbers; the end thresholds +-inf (predict all 0 / all 1) as the strings "inf",
  "-inf" (JSON has no infinity; ``float`` reads them back)."""
  return {k: (float(v) if np.isfinite(v) else ("inf" if v > 0 else "-inf"))
          for k, v in zip(derive.RULE_FIELDS, rule)}


def _as_python(tree) -> dict:
  """Arrays as floats and lists, NaN as None (JSON has no NaN)."""

  def convert(x):
    x = np.asarray(x, np.float64)
    values = np.where(np.isnan(x), None, x.astype(object))
    return values.tolist() if x.ndim else values.item()

  return jax.tree.map(convert, dict(tree))


def _check_options(constraint: str, epsilon: float, min_group_size: int) -> None:
  if constraint not in CONSTRAINTS:
    raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)}, got {constraint!r}")
  if not 0 <= epsilon <= 1:
    raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
  if min_group_size < 1:
    raise ValueError(f"min_group_size must be at least 1, got {min_group_size}")


def fit(scores, y_true, groups, *, num_groups: int, constraint: str = "equalized_odds", epsilon: float = 0.0,
        randomized: bool = True, group_names: Optional[Sequence[str]] = None,
        min_group_size: int = DEFAULT_MIN_GROUP_SIZE, resolution: int = 400,
        num_thresholds: int = 256) -> GroupThresholds:
  """The most accurate group-threshold rule on these rows whose ``constraint`` gap is at most
  ``epsilon`` there.

  ``scores`` [N]: any monotone score of class 1 (a probability, a logit); ``y_true`` [N] in {0, 1};
  ``groups`` [N] in [0, num_groups) (an intersection of attributes is one code,
  ``fairjax.metrics.intersect``). ``constraint``: equalized_odds (every pair of groups' TPRs and FPRs
  within epsilon), equal_opportunity (TPRs), demographic_parity (selection rates). Epsilon 0 is Hardt
  et al.'s exact rule, larger epsilon the relaxed one. The objective is expected accuracy on these
  rows; the search runs on a grid of ``1 / resolution`` in rates over ROCs at ``num_thresholds`` cuts
  (see ``fairjax.metrics.frontier``).

  ``randomized=False`` fits one threshold per group, no mixing: the most accurate choice whose gap on
  these rows is at most epsilon (an exact search over the ROC thresholds). Thresholds alone rarely
  equalise rates exactly, so at epsilon 0 (and small epsilon) the only choices are usually the trivial
  ones, every group predicted all 0 (or all 1), which always have gap 0; ``note`` (and the JSON) says
  so when the rule is trivial for every fitted group. A positive epsilon, or randomising, does better.

  Groups with fewer than ``min_group_size`` rows (and, under equalized odds or equal opportunity,
  groups without positives or negatives) are not fitted: a ``PoolingWarning`` names them, and they get
  the pooled rule, the most accurate single threshold on all rows. The constraint binds the fitted
  groups.
  """
  _check_options(constraint, epsilon, min_group_size)
  scores, y_true, groups = derive.check_rows(scores, y_true, groups, num_groups)
  names = [str(g) for g in range(num_groups)] if group_names is None else [str(n) for n in group_names]
  if len(names) != num_groups:
    raise ValueError(f"group_names has {len(names)} names for {num_groups} groups")
  problem, sizes = derive.prepare(scores, y_true, groups, num_groups=num_groups, constraint=constraint,
                                  min_group_size=min_group_size, num_thresholds=num_thresholds,
                                  resolution=resolution, group_names=names)
  note = ""
  if randomized:
    table, fpr, tpr = derive.randomized_rules(problem, jnp.float32(epsilon), constraint=constraint,
                                              resolution=resolution, num_groups=num_groups)
  else:
    table, fpr, tpr = derive.deterministic_rules(problem, epsilon, constraint=constraint,
                                                 num_groups=num_groups)
    constant = ((fpr == 0) & (tpr == 0)) | ((fpr == 1) & (tpr == 1))
    if len(constant) and constant.all():
      note = (f"no single threshold per group keeps the {constraint} gap within {epsilon:g} on the fit rows "
              "but the trivial ones: every fitted group is predicted all 0 (or all 1); a larger epsilon, or "
              "randomised thresholds, do better")
  pooled_rule = np.asarray(problem.pooled_rule)
  predictor = GroupThresholds(constraint=constraint, epsilon=float(epsilon), randomized=randomized,
                              group_names=names, rules=np.asarray(table), pooled_rule=pooled_rule,
                              pooled=sizes["pooled"], fit={}, note=note)
  predictor.fit = _fit_figures(predictor, scores, y_true, groups, sizes, np.asarray(problem.fitted),
                               np.asarray(fpr), np.asarray(tpr))
  return predictor


def _fit_figures(predictor, scores, y_true, groups, sizes, fitted, fpr, tpr) -> dict:
  """The ``fit`` entry: expected figures on the fit rows, of the rule and of one threshold for all."""
  figures = predictor.evaluate(scores, y_true, groups)
  raw = predictor.one_threshold().evaluate(scores, y_true, groups)
  target = {int(g): (float(f), float(t)) for g, f, t in zip(fitted, fpr, tpr)}
  by_group = []
  for g in range(predictor.num_groups):
    entry = {"rows": int(sizes["rows"][g]), "positives": int(sizes["positives"][g]),
             "negatives": int(sizes["negatives"][g])}
    entry.update({k: figures[k][g] for k in ("tpr", "fpr", "selection_rate")})
    entry["accuracy"] = figures["group_accuracy"][g]
    if g in target:
      entry["target_fpr"], entry["target_tpr"] = target[g]
    by_group.append(entry)
  return {"rows": int(len(scores)), "accuracy": figures["accuracy"], "gap": figures["gap"],
          "gap_over": "the fitted groups", "one_threshold": {"accuracy": raw["accuracy"], "gap": raw["gap"]},
          "by_group": by_group}


def fit_one_vs_rest(scores, y_true, groups, *, num_groups: int, **options) -> list[GroupThresholds]:
  """One binary rule per class of a multi-class head, each fitted on its class's score against the rest.

  ``scores`` [N, C] (class probabilities or any per-class monotone scores), ``y_true`` [N] in
  [0, C). The result is C binary decisions, one per class, each with its own constraint (for equalized
  odds: class c's TPR and FPR against the rest agree across groups), not a single class label: a row
  may be predicted positive for several classes or none. ``options`` are ``fit``'s.
  """
  scores = np.asarray(scores)
  if scores.ndim != 2:
    raise ValueError(f"one-vs-rest needs scores [N, C], got shape {scores.shape}")
  y_true = np.ravel(np.asarray(y_true))
  if not np.isin(y_true, np.arange(scores.shape[1])).all():
    raise ValueError(f"labels must be class indices in [0, {scores.shape[1]})")
  return [fit(scores[:, c], (y_true == c).astype(np.int32), groups, num_groups=num_groups, **options)
          for c in range(scores.shape[1])]


def probabilities_one_vs_rest(predictors: Sequence[GroupThresholds], scores, groups) -> Array:
  """``[N, C]``: P(predict 1) of each class's rule (``fit_one_vs_rest``) at its column of ``scores``."""
  scores = np.asarray(scores)
  return jnp.stack([p.probabilities(scores[:, c], groups) for c, p in enumerate(predictors)], axis=1)


def frontier(fit, apply, epsilons: Sequence[float], *, num_groups: int, constraint: str = "equalized_odds",
             num_resamples: int = 1000, seed: int = 0, min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
             resolution: int = 400, num_thresholds: int = 256, confidence: float = 0.95) -> list[dict]:
  """The validation-fitted frontier: the rule fitted on ``fit`` at each epsilon, judged on ``apply``.

  ``fit`` and ``apply`` are ``(scores, y_true, groups)`` triples as ``fit`` takes them. Returns per
  epsilon a dict: ``accuracy`` and ``gap`` on the apply rows (expected values of the randomised rule,
  from its probabilities, not one draw) with ``accuracy_ci`` / ``gap_ci``, ``confidence`` percentile
  intervals of ``num_resamples`` bootstrap resamples of the apply rows (``fairjax.metrics.bootstrap``;
  0 for none); ``fit_accuracy`` / ``fit_gap`` on the fit rows; and ``oracle_accuracy`` /
  ``oracle_gap``, the rule fitted on the apply rows themselves (the oracle ``fairjax.metrics.frontier``
  computes), which bounds what any rule fitted elsewhere reaches there. Gaps are over the groups the
  rule fitted. Every epsilon is fitted in one vmapped, once-compiled program.
  """
  epsilons = [float(e) for e in epsilons]
  for epsilon in epsilons:
    _check_options(constraint, epsilon, min_group_size)
  if num_resamples < 0:
    raise ValueError(f"num_resamples must be >= 0, got {num_resamples}")
  if not epsilons:
    return []
  fit_rows = derive.check_rows(*fit, num_groups)
  apply_rows = derive.check_rows(*apply, num_groups)
  options = dict(num_groups=num_groups, constraint=constraint, min_group_size=min_group_size,
                 num_thresholds=num_thresholds, resolution=resolution)
  fit_problem, fit_sizes = derive.prepare(*fit_rows, **options)
  oracle_problem, oracle_sizes = derive.prepare(*apply_rows, **options, warn=False)
  found = _frontier(fit_problem, oracle_problem, jnp.asarray(epsilons, jnp.float32),
                    *map(jnp.asarray, fit_rows), *map(jnp.asarray, apply_rows),
                    jnp.asarray(~fit_sizes["pooled"]), jnp.asarray(~oracle_sizes["pooled"]),
                    jax.random.PRNGKey(seed), constraint=constraint, resolution=resolution,
                    num_groups=num_groups, num_resamples=num_resamples, confidence=confidence)
  found = _as_python(found)
  keys = ("accuracy", "gap", "fit_accuracy", "fit_gap", "oracle_accuracy", "oracle_gap")
  out = []
  for k, epsilon in enumerate(epsilons):
    row = {"epsilon": epsilon, **{key: found[key][k] for key in keys}}
    if num_resamples:
      row["accuracy_ci"] = [found["accuracy_lo"][k], found["accuracy_hi"][k]]
      row["gap_ci"] = [found["gap_lo"][k], found["gap_hi"][k]]
    out.append(row)
  return out


@functools.partial(jax.jit, static_argnames=("constraint", "resolution", "num_groups", "num_resamples",
                                             "confidence"))
def _frontier(fit_problem, oracle_problem, epsilons, fit_scores, fit_y, fit_groups, scores, y_true, groups,
              fit_gap_groups, oracle_gap_groups, key, *, constraint, resolution, num_groups, num_resamples,
              confidence):
  """``frontier``'s figures, every epsilon's rule fitted by one vmapped search (one compilation)."""

  def tables(problem):
    rules = functools.partial(derive.randomized_rules, constraint=constraint, resolution=resolution,
                              num_groups=num_groups)
    return jax.vmap(lambda e: rules(problem, e)[0])(epsilons)               # [E, G, 5]

  def probabilities(table, pooled_rule, s, g):
    return jax.vmap(lambda t: derive.apply_rules(t, pooled_rule, s, g))(table)  # [E, N]

  def figures(p_post, y, g, gap_groups, weights=None):
    one = functools.partial(derive.expected_figures, num_groups=num_groups, constraint=constraint,
                            weights=weights)
    found = jax.vmap(lambda p: one(p, y, g, gap_groups))(p_post)
    return {"accuracy": found["accuracy"], "gap": found["gap"]}

  fitted, oracle = tables(fit_problem), tables(oracle_problem)
  p_post = probabilities(fitted, fit_problem.pooled_rule, scores, groups)
  out = figures(p_post, y_true, groups, fit_gap_groups)
  on_fit = figures(probabilities(fitted, fit_problem.pooled_rule, fit_scores, fit_groups), fit_y, fit_groups,
                   fit_gap_groups)
  on_apply = figures(probabilities(oracle, oracle_problem.pooled_rule, scores, groups), y_true, groups,
                     oracle_gap_groups)
  out.update(fit_accuracy=on_fit["accuracy"], fit_gap=on_fit["gap"], oracle_accuracy=on_apply["accuracy"],
             oracle_gap=on_apply["gap"])
  if num_resamples:
    samples = bootstrap.resample_rows(key, lambda m: figures(p_post, y_true, groups, fit_gap_groups, m),
                                      scores.shape[0], num_resamples)
    lower, upper = bootstrap.percentile_interval(samples, confidence)
    out.update(accuracy_lo=lower["accuracy"], accuracy_hi=upper["accuracy"], gap_lo=lower["gap"],
               gap_hi=upper["gap"])
  return out
