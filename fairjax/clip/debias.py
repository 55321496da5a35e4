"""Debiasing CLIP embeddings at inference: seed 000 §8.3's subspace removal, and Chuang et al. 2023.

Both fit a linear map on one split's embeddings and apply it to any other's; nothing is retrained.

**Subspace removal (seed 000 §8.3, after Chen & Dou 2021, who take the formula from Liang et al. 2020).**
Given sets R_j of embeddings, centre each by its own mean μ_j, run PCA on the union of the residuals
``w - μ_j``, keep the first k components V (k: the fewest whose cumulative explained variance reaches a
threshold, the seed's "≈100 %", or a fixed k), and map every image or text embedding
``h ↦ h - α V Vᵀ h``. With α = 1 that is the orthogonal projection out of V; the seed found that α = 1
flipped gender outright and settled on α = 0.4.

What the sets are decides what V is, because centring removes whatever differs *between* sets:

  * ``defining_sets`` (Liang et al.'s defining sets, Bolukbasi et al.'s pairs): each set holds one
    member of every group (a male and a female embedding, matched at random when the data has no
    natural pairs), so the residuals are the within-set contrasts between groups and V spans the
    directions that tell the groups apart. This is what removes a group direction.
  * ``group_sets`` (seed 000's wording, "a set of image and text representations for each class"):
    one set per group. Centring each group by its own mean takes the group mean difference *out* before
    PCA, so V spans the within-group variation, not the direction between the groups; with k at ≈100 %
    of the variance V is nearly the whole space and ``h - α V Vᵀ h`` is mostly ``(1 - α) h``, a
    rescaling that cosine similarity does not see. It is here to reproduce the seed as written.

Normalisation: CLIP compares cosines, and image and text embeddings have different lengths, so by default
(``normalize=True``) every embedding is scaled to unit length before the fit and before the projection;
the projected vectors are returned as they are (no longer unit length), and whoever compares them
(``zero_shot.class_probabilities``, ``metrics.retrieval``) takes cosines.

**Biased-prompt projection (Chuang et al. 2023, "Debiasing Vision-Language Models via Biased Prompts").**
With A the ``[D, M]`` matrix of unit embeddings of prompts that describe only the bias ("a photo of a
man.", "a photo of a woman."), ``P0 = I - A (AᵀA)⁻¹ Aᵀ`` projects out their span. The calibrated
projection keeps P close to P0 while making the embeddings of positive pairs (prompts that differ only
in the biased attribute, "a photo of a male doctor." / "a photo of a female doctor.") coincide:

    P* = argmin_P ||P - P0||²_F + λ/|S| Σ_{(i,j)∈S} ||P z_i - P z_j||²  =  P0 (I + λ M)⁻¹,
    M = 1/|S| Σ_{(i,j)∈S} (z_i - z_j)(z_i - z_j)ᵀ,

(setting the gradient ``2(P - P0) + 2λ P M`` to zero), as in the authors' code (github.com/chingyaoc/
debias_vl, ``P = P0 @ inv(lam * M + I)``, λ = 1000 for zero-shot classifiers, 500 for text-to-image).
It is applied to the text (query / class) embeddings only, ``z ↦ P z / |P z|``; images are left alone.
P0 is computed from an orthonormal basis of A's span (SVD), which equals the formula whenever AᵀA is
invertible and stays defined when two prompts embed alike.
"""

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_ALPHA = 0.4           # seed 000 §8.3
DEFAULT_VARIANCE = 0.99       # seed 000 §8.3 took "approximately 100 %" of the variance
DEFAULT_LAMBDA = 1000.0       # Chuang et al.'s code, zero-shot classification
# Relative tolerance below which a singular value counts as zero.
_RANK_TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class Subspace:
  """A fitted bias subspace: ``apply`` maps ``h ↦ h - α V Vᵀ h`` (h unit length if ``normalize``)."""

  basis: np.ndarray                     # V, [D, k], orthonormal columns
  alpha: float
  explained_variance_ratio: np.ndarray  # every component's share of the residual variance, descending
  normalize: bool = True

  @property
  def k(self) -> int:
    return int(self.basis.shape[1])

  @property
  def cumulative_variance(self) -> np.ndarray:
    """The curve seed 000 chose k from: share of the variance in the first 1, 2, ... components."""
    return np.cumsum(self.explained_variance_ratio)

  @property
  def projector(self) -> np.ndarray:
    """V Vᵀ, [D, D] (seed 000 computes it once and multiplies every embedding by it)."""
    return self.basis @ self.basis.T

  def with_alpha(self, alpha: float) -> "Subspace":
    """The same subspace removed by another fraction (seed 000 compared α = 1 with α = 0.4)."""
    return dataclasses.replace(self, alpha=_check_alpha(alpha))

  def apply(self, embeddings) -> jax.Array:
    embeddings = _check_embeddings(embeddings, "embeddings", dim=self.basis.shape[0])
    return remove_subspace(embeddings, jnp.asarray(self.basis), self.alpha, self.normalize)


@functools.partial(jax.jit, static_argnames=("normalize",))
def remove_subspace(embeddings, basis, alpha, normalize: bool = True) -> jax.Array:
  """``h - α V Vᵀ h`` for every row h of ``embeddings`` [N, D]; ``basis`` V is [D, k]."""
  h = jnp.asarray(embeddings, jnp.float32)
  if normalize:
    h = h / jnp.linalg.norm(h, axis=-1, keepdims=True)
  return h - alpha * (h @ basis) @ basis.T


def group_sets(groups, modality=None) -> np.ndarray:
  """Set id of every row when each group (within each modality, if given) is one set: seed 000's
  wording, under which centring removes the group means (see the module docstring). -1 rows (unknown
  group) belong to no set."""
  groups = _check_codes(groups, "groups")
  modality = np.zeros_like(groups) if modality is None else _check_codes(modality, "modality", like=groups)
  present = np.unique(groups[groups >= 0])
  if present.size < 2:
    raise ValueError(f"group_sets needs at least two groups to tell apart, got {present.tolist()}")
  num_modalities = int(modality.max()) + 1 if modality.size else 1
  return np.where((groups >= 0) & (modality >= 0), groups * num_modalities + modality, -1)


def defining_sets(groups, *, seed: int = 0, modality=None) -> np.ndarray:
  """Set id of every row when each set holds one member of every group, matched at random within each
  modality (Liang et al. 2020's defining sets for data without natural pairs). Each modality gives as
  many sets as its smallest group has members; the rows left over, and -1 rows, get -1."""
  groups = _check_codes(groups, "groups")
  modality = np.zeros_like(groups) if modality is None else _check_codes(modality, "modality", like=groups)
  present = np.unique(groups[groups >= 0])
  if present.size < 2:
    raise ValueError(f"defining_sets needs at least two groups to pair, got {present.tolist()}")
  rng = np.random.default_rng(seed)
  set_ids = np.full(groups.shape, -1, np.int64)
  next_id = 0
  for m in np.unique(modality[modality >= 0]):
    members = [rng.permutation(np.flatnonzero((groups == g) & (modality == m))) for g in present]
    size = min(len(rows) for rows in members)
    if size == 0:
      missing = [int(g) for g, rows in zip(present, members) if not len(rows)]
      raise ValueError(f"modality {int(m)} has no rows of group(s) {missing}; every set needs all groups")
    for rows in members:
      set_ids[rows[:size]] = next_id + np.arange(size)
    next_id += size
  return set_ids


def fit_subspace(embeddings, set_ids, *, variance: Optional[float] = DEFAULT_VARIANCE,
                 k: Optional[int] = None, alpha: float = DEFAULT_ALPHA, normalize: bool = True) -> Subspace:
  """Seed 000 §8.3's subspace: PCA of the rows centred by their set's mean.

  Args:
    embeddings: ``[N, D]`` image and / or text embeddings.
    set_ids: ``[N]`` the set R_j of every row (``group_sets`` / ``defining_sets``); -1 rows are unused.
    variance: k is the fewest components whose cumulative explained variance reaches this (0, 1].
    k: a fixed number of components instead (then ``variance`` is ignored).
    alpha: the fraction of the subspace component removed.
    normalize: scale embeddings to unit length first (see the module docstring).
  """
  alpha = _check_alpha(alpha)
  x = _check_embeddings(embeddings, "embeddings")
  set_ids = _check_codes(set_ids, "set_ids", like=np.zeros(x.shape[0], np.int64))
  used = set_ids >= 0
  ids, dense = np.unique(set_ids[used], return_inverse=True)
  if ids.size == 0:
    raise ValueError("no row belongs to a set (every set id is -1)")
  sizes = np.bincount(dense)
  if (sizes < 2).any():
    single = int(ids[np.argmax(sizes < 2)])
    raise ValueError(f"{int((sizes < 2).sum())} set(s) have a single member (e.g. set {single}), whose "
                     "residual from its own mean is zero")
  ratio, components = _centred_pca(jnp.asarray(x[used]), jnp.asarray(dense), ids.size, normalize)
  ratio, components = np.asarray(ratio), np.asarray(components)
  rank = int((ratio > _RANK_TOLERANCE * ratio[0]).sum()) if ratio.size and ratio[0] > 0 else 0
  if rank == 0:
    raise ValueError("the embeddings do not vary within their sets: there is no subspace to find")
  ratio = ratio[:rank]
  if k is not None:
    if not 1 <= int(k) <= rank:
      raise ValueError(f"k = {k}, but the {int(used.sum())} rows in {ids.size} sets leave a residual of "
                       f"rank {rank} (at most rows - sets, and at most D = {x.shape[1]}): "
                       f"k must be 1..{rank}")
    k = int(k)
  else:
    k = choose_k(ratio, variance)
  return Subspace(basis=components[:k].T, alpha=alpha, explained_variance_ratio=ratio, normalize=normalize)


def choose_k(explained_variance_ratio, variance: float) -> int:
  """The fewest leading components whose cumulative share of the variance reaches ``variance``."""
  if variance is None or not 0 < variance <= 1:
    raise ValueError(f"variance must be in (0, 1], got {variance}")
  cumulative = np.cumsum(np.asarray(explained_variance_ratio, np.float64))
  # float32 sums of the shares can stop a hair below 1; within that hair the threshold is reached.
  return int(min(np.searchsorted(cumulative, variance - 1e-6) + 1, cumulative.size))


@functools.partial(jax.jit, static_argnames=("num_sets", "normalize"))
def _centred_pca(x, set_index, num_sets: int, normalize: bool):
  """Explained-variance ratios and components (rows) of the rows centred by their set's mean."""
  x = jnp.asarray(x, jnp.float32)
  if normalize:
    x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  sums = jax.ops.segment_sum(x, set_index, num_segments=num_sets)
  counts = jax.ops.segment_sum(jnp.ones(x.shape[0]), set_index, num_segments=num_sets)
  residual = x - (sums / counts[:, None])[set_index]
  _, singular, components = jnp.linalg.svd(residual, full_matrices=False)
  power = singular ** 2
  return power / jnp.maximum(power.sum(), jnp.finfo(jnp.float32).tiny), components


@dataclasses.dataclass(frozen=True)
class PromptProjection:
  """Chuang et al.'s projection of text embeddings: ``apply`` maps ``z ↦ P z / |P z|``."""

  matrix: np.ndarray  # P, [D, D]
  lam: float          # 0 for the plain orthogonal projection P0
  num_biased: int
  num_pairs: int

  def apply(self, text_embeddings) -> jax.Array:
    z = _check_embeddings(text_embeddings, "text_embeddings", dim=self.matrix.shape[0])
    return _project_prompts(z, jnp.asarray(self.matrix))


@jax.jit
def _project_prompts(z, matrix):
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
  projected = z @ matrix.T
  return projected / jnp.linalg.norm(projected, axis=-1, keepdims=True)


@jax.jit
def orthogonal_projection(biased_embeddings) -> jax.Array:
  """``P0 = I - A (AᵀA)⁻¹ Aᵀ`` for A with the unit biased-prompt embeddings as columns, [D, D]."""
  a = jnp.asarray(biased_embeddings, jnp.float32)
  a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
  u, singular, _ = jnp.linalg.svd(a.T, full_matrices=False)      # u: [D, M], an orthonormal basis
  keep = singular > _RANK_TOLERANCE * singular[0]
  u = jnp.where(keep[None, :], u, 0.0)
  return jnp.eye(a.shape[1], dtype=jnp.float32) - u @ u.T


@jax.jit
def calibrated_projection(p0, pair_embeddings, lam) -> jax.Array:
  """``P0 (I + λ M)⁻¹``, M the mean outer product of the unit pair differences; pairs [S, 2, D]."""
  z = jnp.asarray(pair_embeddings, jnp.float32)
  z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
  diff = z[:, 0] - z[:, 1]
  m = diff.T @ diff / z.shape[0]
  g = jnp.eye(m.shape[0], dtype=jnp.float32) + lam * m
  # P0 G⁻¹ = (G⁻¹ P0ᵀ)ᵀ with G symmetric: a solve instead of an inverse.
  return jnp.linalg.solve(g, jnp.asarray(p0, jnp.float32).T).T


def fit_biased_prompts(biased_embeddings, pair_embeddings=None, *,
                       lam: float = DEFAULT_LAMBDA) -> PromptProjection:
  """Chuang et al.'s projection from embeddings of biased prompts ``[M, D]`` and, for the calibrated
  form, of positive pairs ``[S, 2, D]`` (None: the plain orthogonal projection P0)."""
  a = _check_embeddings(biased_embeddings, "biased_embeddings")
  dim = a.shape[1]
  if a.shape[0] >= dim:
    raise ValueError(f"{a.shape[0]} biased prompts in {dim} dimensions: their span would be the whole "
                     "space and P0 zero")
  p0 = orthogonal_projection(a)
  if pair_embeddings is None:
    return PromptProjection(np.asarray(p0), 0.0, int(a.shape[0]), 0)
  pairs = np.asarray(pair_embeddings, np.float32)
  if pairs.ndim != 3 or pairs.shape[1] != 2 or pairs.shape[2] != dim or pairs.shape[0] == 0:
    raise ValueError(f"pair_embeddings must be [S, 2, {dim}] with S > 0, got shape {pairs.shape}")
  _check_embeddings(pairs.reshape(-1, dim), "pair_embeddings")
  if not np.isfinite(lam) or lam < 0:
    raise ValueError(f"lam must be a finite number >= 0, got {lam}")
  matrix = calibrated_projection(p0, jnp.asarray(pairs), jnp.float32(lam))
  return PromptProjection(np.asarray(matrix), float(lam), int(a.shape[0]), int(pairs.shape[0]))


def _check_embeddings(embeddings, name: str, dim: Optional[int] = None) -> np.ndarray:
  x = np.asarray(embeddings, np.float32)
  if x.ndim != 2 or x.shape[0] == 0:
    raise ValueError(f"{name} must be [N, D] with N > 0, got shape {x.shape}")
  if dim is not None and x.shape[1] != dim:
    raise ValueError(f"{name} have dimension {x.shape[1]}; the fitted projection is {dim}-dimensional")
  bad = ~np.isfinite(x).all(axis=1)
  if bad.any():
    raise ValueError(f"{name}: {int(bad.sum())} row(s) are not finite (NaN or inf), "
                     f"first row {int(np.argmax(bad))}")
  zero = np.linalg.norm(x, axis=1) == 0
  if zero.any():
    raise ValueError(f"{name}: {int(zero.sum())} row(s) are zero vectors, first row {int(np.argmax(zero))}")
  return x


def _check_codes(codes, name: str, like=None) -> np.ndarray:
  codes = np.asarray(codes)
  if codes.ndim != 1:
    raise ValueError(f"{name} must be one code per row, got shape {codes.shape}")
  if like is not None and codes.shape != np.shape(like):
    raise ValueError(f"{name} has {codes.shape[0]} rows, expected {np.shape(like)[0]}")
  if codes.size and not np.issubdtype(codes.dtype, np.integer):
    raise ValueError(f"{name} must be integer codes (-1 for none), got dtype {codes.dtype}")
  if (codes < -1).any():
    raise ValueError(f"{name} codes must be >= 0, or -1 for none; got {int(codes.min())}")
  return codes.astype(np.int64)


def _check_alpha(alpha: float) -> float:
  alpha = float(alpha)
  if not np.isfinite(alpha) or alpha < 0:
    raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
  return alpha
