"""Between-group disparities of per-group rates, in pure JAX.

Definitions follow fairlearn, so that a figure here means what it means there:
  * difference = largest group value - smallest, ratio = smallest / largest ("between_groups");
  * demographic parity compares selection rates; its ratio is the disparate impact of the 80 % rule;
  * equal opportunity compares TPRs;
  * equalized odds difference is the larger of the TPR and FPR differences, and its ratio the smaller
    of the two ratios ("worst_case");
  * treatment equality compares the FN / FP ratio of each group (seed 000 §4).
Groups whose rate is NaN (empty, or without the rate's denominator) are left out of the comparison: a
disparity is taken over the groups where the rate exists, and is NaN where fewer than two do (a gap
between one group and nobody is not a measured zero).
For multi-class tasks the inputs are ``[G, C]`` one-vs-rest rates and each disparity is ``[C]``;
``macro`` averages a per-class disparity over the classes where it is defined.
"""

import jax
import jax.numpy as jnp

from fairjax.metrics import confusion

Array = jax.Array


def _spread(values: Array) -> tuple[Array, Array]:
  """NaN-ignoring (min, max) over the group axis 0; NaN where fewer than two groups are defined."""
  ok = ~jnp.isnan(values)
  any_ok = ok.sum(axis=0) >= 2
  lo = jnp.where(any_ok, jnp.min(jnp.where(ok, values, jnp.inf), axis=0), jnp.nan)
  hi = jnp.where(any_ok, jnp.max(jnp.where(ok, values, -jnp.inf), axis=0), jnp.nan)
  return lo, hi


def difference(values: Array) -> Array:
  """Largest minus smallest group value (axis 0 is the group axis)."""
  lo, hi = _spread(values)
  return hi - lo


def ratio(values: Array) -> Array:
  """Smallest over largest group value; 1 when every group's value is 0 (all equal), as fairlearn."""
  lo, hi = _spread(values)
  return jnp.where(hi == 0, jnp.where(lo == 0, 1.0, jnp.nan), confusion.safe_div(lo, hi))


def disparate_impact(selection_rate: Array, privileged: int | Array) -> Array:
  """Selection rate of every group over that of the privileged group, ``[G]`` (or ``[G, C]``)."""
  return confusion.safe_div(selection_rate, selection_rate[privileged])


def pairwise_disparate_impact(selection_rate: Array) -> Array:
  """``[G, G]`` matrix of selection_rate[i] / selection_rate[j] (``[G, G, C]`` for multi-class)."""
  return confusion.safe_div(selection_rate[:, None], selection_rate[None, :])


def treatment_equality(counts: Array) -> Array:
  """FN / FP of every group (and class), ``[G, C]``: equal across groups under treatment equality."""
  c = confusion.one_vs_rest(counts)
  return confusion.safe_div(c["fn"], c["fp"])


def disparities(counts: Array) -> dict[str, Array]:
  """Every disparity of the per-group counts ``[G, C, C]``; each value ``[C]`` (one-vs-rest).

  Keys: ``<rate>_difference`` and ``<rate>_ratio`` for each of confusion.CLASS_METRICS, and
  demographic_parity_*, equal_opportunity_*, equalized_odds_*, treatment_equality_difference.
  """
  rates = confusion.class_rates(counts)
  out = {}
  for name in confusion.CLASS_METRICS:
    out[f"{name}_difference"] = difference(rates[name])
    out[f"{name}_ratio"] = ratio(rates[name])
  out["demographic_parity_difference"] = out["selection_rate_difference"]
  out["demographic_parity_ratio"] = out["selection_rate_ratio"]
  out["equal_opportunity_difference"] = out["tpr_difference"]
  out["equal_opportunity_ratio"] = out["tpr_ratio"]
  out["equalized_odds_difference"] = _nan_aware(jnp.maximum, out["tpr_difference"], out["fpr_difference"])
  out["equalized_odds_ratio"] = _nan_aware(jnp.minimum, out["tpr_ratio"], out["fpr_ratio"])
  out["treatment_equality_difference"] = difference(treatment_equality(counts))
  return out


def _nan_aware(op, a: Array, b: Array) -> Array:
  """op(a, b), falling back to the other operand where one is NaN (both NaN stays NaN)."""
  return jnp.where(jnp.isnan(a), b, jnp.where(jnp.isnan(b), a, op(a, b)))


def macro(per_class: Array) -> Array:
  """Mean over classes of a per-class disparity, over the classes where it is defined."""
  ok = ~jnp.isnan(per_class)
  return confusion.safe_div(jnp.where(ok, per_class, 0.0).sum(-1), ok.sum(-1))
