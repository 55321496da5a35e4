"""LEACE: least-squares concept erasure in closed form (Belrose et al. 2023).

An eraser r(x) guards a concept z linearly when no linear classifier reads z from r(x) better than a
constant one, which holds exactly when every class of z has the same mean of r(x): the cross-covariance
of r(x) with the one-hot z is zero. Of all affine erasers that do this, LEACE changes x the least, in
every norm of the form E||r(x) - x||^2_M (M positive semi-definite) at once:

  r(x) = x - W^+ P W (x - mu),  W = Sigma_xx^{-1/2} (pseudo-inverse square root on the covariance's
  support), P the orthogonal projection onto the column space of W Sigma_xz, mu the mean of x.

This is a port of EleutherAI's reference (``concept_erasure.LeaceFitter`` 0.2.4), option for option
and with its defaults, so that the same data give the same eraser (tests/erasure/test_leace.py checks
it against the torch original): the covariance is shrunk towards a multiple of the identity by the
optimal linear shrinkage of random-matrix theory (``shrinkage=True``); singular values of W Sigma_xz
below ``svd_tol`` (an absolute 0.01, on the scale of correlations with a 0/1 indicator) are dropped;
``affine=False`` leaves out the mean (erasing x - W^+ P W x). ``orthogonal=True`` is their
``method="orth"``: the plain orthogonal projection off the span of Sigma_xz, with no whitening. Their
``constrain_cov_trace`` is left out: it mixes in the orthogonal projection when the erasure would raise
the covariance's trace, which LEACE cannot do when one covariance serves both (the erased covariance
is Sigma^{1/2} (I - u u^T) Sigma^{1/2}, of trace tr Sigma - u^T Sigma u), so theirs never takes that
branch either. The one-hot z has one column per class present.

Precision: JAX computes in float32 unless x64 is turned on for the whole process, which this package
should not do behind its caller's back. The fit is a handful of D x D matrices, so it runs in numpy
float64 (the eigendecomposition of a covariance whose eigenvalues span orders of magnitude loses the
small ones in float32) and only the result is stored in float32 for the JAX apply.

The eraser is kept as two thin factors, ``x - ((x - bias) @ right.T) @ left.T``, with ``left`` D x k
and ``right`` k x D (k at most the number of classes), the form ``eraser.Eraser`` applies.
"""

import numpy as np

def optimal_linear_shrinkage(biased_covariance: np.ndarray, n: int) -> np.ndarray:
  """``alpha * S + beta * (tr S / p) I``: the covariance estimate of Bai et al.'s optimal linear shrinkage
  (arXiv:1308.2608), as concept_erasure computes it, from the biased sample covariance ``S`` of ``n``
  rows."""
  p = biased_covariance.shape[-1]
  trace = np.trace(biased_covariance)
  target = np.eye(p) * trace / p
  target_norm_sq = np.sum(np.square(target))
  covariance_norm_sq = np.sum(np.square(biased_covariance))
  product_trace = np.trace(biased_covariance @ target)
  eps = np.finfo(np.float64).eps  # keeps the zero matrix from dividing by zero, as theirs does
  top = trace * trace * target_norm_sq / n
  bottom = covariance_norm_sq * target_norm_sq - product_trace * product_trace
  alpha = 1.0 - (top + eps) / (bottom + eps)
  beta = (1.0 - alpha) * (product_trace + eps) / (target_norm_sq + eps)
  return alpha * biased_covariance + beta * target


def fit(x: np.ndarray, z: np.ndarray, *, shrinkage: bool = True, svd_tol: float = 0.01, affine: bool = True,
        orthogonal: bool = False) -> dict:
  """The LEACE eraser of the one-hot concept ``z`` ``[N, K]`` from ``x`` ``[N, D]``, with
  concept_erasure's defaults.

  Returns float64 ``left`` ``[D, k]``, ``right`` ``[k, D]`` and ``bias`` ``[D]`` (zeros unless
  ``affine``), and ``info``: the rank erased.
  """
  if not svd_tol > 0.0:
    raise ValueError(f"svd_tol must be positive, got {svd_tol}")
  x = np.asarray(x, np.float64)
  z = np.asarray(z, np.float64)
  n, dim = x.shape
  mean_x = x.mean(0)
  centred = x - mean_x
  cross_covariance = centred.T @ (z - z.mean(0)) / (n - 1)
  if orthogonal:
    whiten = unwhiten = np.eye(dim)
  else:
    scatter = centred.T @ centred
    scatter = (scatter + scatter.T) / 2
    covariance = optimal_linear_shrinkage(scatter / n, n) if shrinkage else scatter / (n - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    support = eigenvalues > eigenvalues[-1] * dim * np.finfo(np.float64).eps  # torch.linalg.pinv's cut
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    safe = np.where(support, eigenvalues, 1.0)
    whiten = (eigenvectors * np.where(support, 1.0 / np.sqrt(safe), 0.0)) @ eigenvectors.T
    unwhiten = (eigenvectors * np.where(support, np.sqrt(safe), 0.0)) @ eigenvectors.T

  u, s, _ = np.linalg.svd(whiten @ cross_covariance, full_matrices=False)
  u = u[:, s > svd_tol]
  left, right = unwhiten @ u, u.T @ whiten

  bias = mean_x if affine else np.zeros(dim)
  info = {"rank": int(u.shape[1])}
  return {"left": left, "right": right, "bias": bias, "info": info}
