"""Bias of text-to-image retrieval by group: Skew@k, MaxSkew@k and NDKL, in pure JAX.

The measures of Geyik et al. 2019 (fairness-aware ranking at LinkedIn) as Berg et al. 2022 ("A Prompt
Array Keeps the Bias Away") use them for CLIP: for each text query, rank the images by cosine similarity
and compare the groups of the top k with a desired distribution q over the groups.

  * p(top-k) is the share of each group among the top k images.
  * ``Skew_a@k = ln(p_a(top-k) / q_a)``: above 0 where group a is over-represented in the top k.
  * ``MaxSkew@k = max_a Skew_a@k`` (and ``MinSkew@k = min_a``). MaxSkew >= 0 always, since p and q
    both sum to 1; 0 means the top k has exactly the desired mix.
  * ``NDKL = (1/Z) Σ_{i=1..k} KL(p(top-i) ‖ q) / log2(i + 1)``, ``Z = Σ_{i=1..k} 1 / log2(i + 1)``:
    the divergence of every prefix of the ranking, weighted towards the top; 0 for a perfectly mixed
    ranking, whatever k.

Choices, following Berg et al.'s code (github.com/oxai/debias-vision-lang, ``measuring_bias.py``):
  * a group absent from the top k has ``p_a = 0``; Skew would be -inf, so its p_a is taken as ``1/k``
    (as if it had one image there). That keeps MinSkew finite, and can make the absent group's skew
    the maximum where its desired share is below 1/k (a small group at small k): MaxSkew then reads
    ``ln(1 / (k q_a))``, which Berg et al.'s numbers include. NDKL needs no smoothing: KL's terms
    with ``p_a = 0`` are 0 (``0 log 0 = 0``) and q > 0.
  * the desired distribution is ``"uniform"`` over the groups present in the gallery (their "equal
    opportunity"), ``"proportional"``: the gallery's own group shares (their "demographic parity"), or
    a given vector. Groups absent from the gallery are left out (their skew is NaN); a given q must be
    positive on every present group, and is renormalised over them.
  * figures are per query; the headline is their mean over queries, as Berg et al. report.
  * ties in similarity are broken towards the lower image index (``lax.top_k``); Berg et al.'s pandas
    ``nlargest(keep="all")`` keeps every tied image instead. The two differ only on exact ties.
"""

import dataclasses
import functools
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

DESIRED = ("uniform", "proportional")


@dataclasses.dataclass
class RetrievalBias:
  """Retrieval bias at k of Q queries over G groups; per-query arrays and their means."""

  k: int
  desired: np.ndarray        # [G], 0 for groups absent from the gallery
  skew: np.ndarray           # [Q, G] Skew_a@k, NaN for absent groups
  max_skew: np.ndarray       # [Q]
  min_skew: np.ndarray       # [Q]
  ndkl: np.ndarray           # [Q]
  top_k_share: np.ndarray    # [Q, G] p(top-k), unsmoothed

  def summary(self, group_names=None) -> dict:
    names = list(group_names) if group_names is not None else [str(g) for g in range(self.desired.size)]
    if len(names) != self.desired.size:
      raise ValueError(f"{len(names)} group names for {self.desired.size} groups")
    defined = ~np.isnan(self.skew)  # a group absent from the gallery is NaN for every query
    total = np.where(defined, self.skew, 0).sum(0)
    mean_skew = np.where(defined.any(0), total / np.maximum(defined.sum(0), 1), np.nan)
    return {
        "k": self.k, "num_queries": int(self.ndkl.size),
        "max_skew": float(self.max_skew.mean()), "min_skew": float(self.min_skew.mean()),
        "ndkl": float(self.ndkl.mean()),
        "desired": dict(zip(names, self.desired.tolist())),
        "mean_top_k_share": dict(zip(names, self.top_k_share.mean(0).tolist())),
        "mean_skew": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, mean_skew)},
    }


def bias_at_k(query_embeddings, image_embeddings, groups, *, k: int, num_groups: int,
              desired: Union[str, np.ndarray] = "uniform") -> RetrievalBias:
  """Skew, MaxSkew@k, MinSkew@k and NDKL of ranking ``image_embeddings`` by cosine to each query.

  Args:
    query_embeddings: ``[Q, D]`` text embeddings (e.g. of attribute-neutral prompts).
    image_embeddings: ``[N, D]`` the gallery.
    groups: ``[N]`` group of every image, 0..num_groups-1.
    k: how many top images to compare, 1..N.
    desired: ``"uniform"``, ``"proportional"`` or a ``[num_groups]`` distribution.
  """
  q = _check_matrix(query_embeddings, "query_embeddings")
  x = _check_matrix(image_embeddings, "image_embeddings")
  if q.shape[1] != x.shape[1]:
    raise ValueError(f"queries have dimension {q.shape[1]}, images {x.shape[1]}")
  groups = np.asarray(groups)
  if groups.shape != (x.shape[0],) or not np.issubdtype(groups.dtype, np.integer):
    raise ValueError(f"groups must be [N] = [{x.shape[0]}] integer codes, got shape {groups.shape}, "
                     f"dtype {groups.dtype}")
  if (groups < 0).any() or (groups >= num_groups).any():
    raise ValueError(f"group codes must be 0..{num_groups - 1}; leave unlabelled images out of the gallery")
  if not 1 <= k <= x.shape[0]:
    raise ValueError(f"k must be 1..{x.shape[0]} (the gallery size), got {k}")
  target = desired_distribution(groups, num_groups, desired)
  out = retrieval_bias(jnp.asarray(q), jnp.asarray(x), jnp.asarray(groups, jnp.int32), jnp.asarray(target),
                       k=int(k), num_groups=int(num_groups))
  out = {name: np.asarray(v) for name, v in out.items()}
  return RetrievalBias(k=int(k), desired=target, **out)


def desired_distribution(groups, num_groups: int, desired: Union[str, np.ndarray] = "uniform") -> np.ndarray:
  """q over the groups, zero on groups absent from the gallery (see the module docstring)."""
  present = np.bincount(np.asarray(groups), minlength=num_groups)[:num_groups] > 0
  if isinstance(desired, str):
    if desired == "uniform":
      q = present.astype(np.float64)
    elif desired == "proportional":
      q = np.bincount(np.asarray(groups), minlength=num_groups)[:num_groups].astype(np.float64)
    else:
      raise ValueError(f"desired must be one of {DESIRED} or a distribution, got {desired!r}")
  else:
    q = np.asarray(desired, np.float64)
    if q.shape != (num_groups,) or not np.isfinite(q).all() or (q < 0).any():
      raise ValueError(f"a desired distribution must be [{num_groups}] non-negative numbers, got {desired}")
    if (q[present] == 0).any():
      zero = np.flatnonzero(present & (q == 0)).tolist()
      raise ValueError(f"desired gives probability 0 to group(s) {zero}, which the gallery has: "
                       "their skew and KL would be infinite")
    q = np.where(present, q, 0.0)
  return (q / q.sum()).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("k", "num_groups"))
def retrieval_bias(queries, images, groups, desired, *, k: int, num_groups: int) -> dict:
  """The figures of ``bias_at_k`` as a jit-able function of arrays, without its checks."""
  queries = queries / jnp.linalg.norm(queries, axis=-1, keepdims=True)
  images = images / jnp.linalg.norm(images, axis=-1, keepdims=True)
  _, top = jax.lax.top_k(queries @ images.T, k)                      # [Q, k], most similar first
  hits = jax.nn.one_hot(groups[top], num_groups, dtype=jnp.float32)  # [Q, k, G]
  prefix = jnp.cumsum(hits, axis=1) / jnp.arange(1, k + 1, dtype=jnp.float32)[None, :, None]
  present = desired > 0
  share = prefix[:, -1]                                              # [Q, G] at k
  smoothed = jnp.where(share > 0, share, 1.0 / k)
  safe_q = jnp.where(present, desired, 1.0)
  skew = jnp.where(present, jnp.log(smoothed) - jnp.log(safe_q), jnp.nan)
  max_skew = jnp.max(jnp.where(present, skew, -jnp.inf), axis=-1)
  min_skew = jnp.min(jnp.where(present, skew, jnp.inf), axis=-1)
  # KL(p ‖ q) of every prefix, with 0 log 0 = 0; p > 0 only on gallery groups, where q > 0.
  terms = jnp.where(prefix > 0, prefix * (jnp.log(jnp.where(prefix > 0, prefix, 1.0)) - jnp.log(safe_q)), 0.0)
  kl = terms.sum(-1)                                                 # [Q, k]
  discount = 1.0 / jnp.log2(jnp.arange(2, k + 2, dtype=jnp.float32))
  ndkl = (kl * discount).sum(-1) / discount.sum()
  return {"skew": skew, "max_skew": max_skew, "min_skew": min_skew, "ndkl": ndkl, "top_k_share": share}


def _check_matrix(embeddings, name: str) -> np.ndarray:
  x = np.asarray(embeddings, np.float32)
  if x.ndim != 2 or x.shape[0] == 0:
    raise ValueError(f"{name} must be [N, D] with N > 0, got shape {x.shape}")
  bad = ~np.isfinite(x).all(axis=1)
  if bad.any():
    raise ValueError(f"{name}: {int(bad.sum())} row(s) are not finite, first row {int(np.argmax(bad))}")
  if (np.linalg.norm(x, axis=1) == 0).any():
    raise ValueError(f"{name}: zero vectors have no direction to rank by")
  return x
