"""INLP: iterative nullspace projection (Ravfogel et al. 2020, "Null It Out").

Repeatedly: fit a linear classifier of the attribute on the embeddings as projected so far, and add the
directions of its weights to the erased subspace, so that the next classifier must look elsewhere. The
eraser is the orthogonal projection onto the intersection of the classifiers' nullspaces, P = I - B B^T
with B an orthonormal basis of every direction found (each new one projected by the current P, then
orthonormalised, so B stays orthonormal). It stops after ``n_iterations`` or as soon as a classifier,
scored on held-out rows, is within ``min_accuracy_gain`` of the majority-class rate there: its weights
are then noise and are not added. The default gain is 0 (stop once the classifier does no better than
the majority rate): a held-out accuracy on ~1,000 rows is uncertain by about 0.015, so a margin of 0.01
stopped with signal left (tests/erasure's 4-class data: a fresh probe still 0.036 above the majority
rate, against 0.003 with 0).

Against LEACE (``leace.py``): INLP erases whole directions, orthogonally, until a classifier fails, so
it removes more than the attribute's mean differences need and guarantees nothing about the classifiers
it did not try; LEACE is the least change that makes every class mean equal. INLP is here as the
common baseline of the erasure literature.

The classifier is ``probes.logistic_regression``: multinomial logistic regression, L2-penalised
(``l2``), fitted full-batch by L-BFGS in JAX. It is convex, so the fit is deterministic and the seed
only chooses the held-out rows; JAX keeps the package free of scikit-learn (a test extra only). Its
inputs are centred and divided by one overall scale, not standardised per feature: a per-feature scale
would divide the already erased directions (near zero variance) by near zero, and the weights found
would not be directions of the embedding space. The projection is applied around the fit split's mean,
x - (x - mu) B B^T, which leaves the mean where it was (as LEACE's affine eraser does); the classifier's
bias makes the directions the same as on uncentred data. The classifiers run in float32 (JAX's
default); the basis is orthonormalised in numpy float64 and stored in float32.
"""

import numpy as np

from fairjax.erasure import probes


def held_out_rows(codes: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """Whether each row is held out: ``fraction`` of each class's rows (at least one where it has two),
  chosen by ``seed``."""
  held = np.zeros(len(codes), bool)
  rng = np.random.default_rng(seed)
  for value in np.unique(codes):
    rows = rng.permutation(np.flatnonzero(codes == value))
    count = int(round(fraction * len(rows)))
    held[rows[:min(max(count, 1), len(rows) - 1)]] = True
  return held


def _directions(kernel: np.ndarray, projection: np.ndarray) -> np.ndarray:
  """An orthonormal basis ``[D, r]`` of the span of ``kernel``'s columns inside the current range."""
  kept = projection @ kernel.astype(np.float64)
  u, s, _ = np.linalg.svd(kept, full_matrices=False)
  return u[:, s > s.max(initial=0.0) * 1e-4]


def fit(x: np.ndarray, z: np.ndarray, *, n_iterations: int = 20, l2: float = 1e-3, seed: int = 0,
        held_out: float = 0.3, min_accuracy_gain: float = 0.0) -> dict:
  """INLP's eraser of the one-hot concept ``z`` ``[N, K]`` from ``x`` ``[N, D]``.

  Returns float64 ``left`` = B ``[D, r]``, ``right`` = B^T and ``bias`` (the mean of ``x``), and
  ``info``: the iterations' held-out accuracies and majority rates, the rank added by each, and why it
  stopped.
  """
  if not (isinstance(n_iterations, (int, np.integer)) and n_iterations >= 1):
    raise ValueError(f"n_iterations must be a positive integer, got {n_iterations!r}")
  if not 0.0 < held_out < 1.0:
    raise ValueError(f"held_out must lie in (0, 1), got {held_out}")
  if l2 < 0:
    raise ValueError(f"l2 must be non-negative, got {l2}")
  x = np.asarray(x, np.float64)
  num_classes = np.shape(z)[1]
  codes = np.argmax(z, axis=1).astype(np.int32)
  mean = x.mean(0)
  centred = x - mean
  scale = np.sqrt(np.mean(np.square(centred))) or 1.0
  held = held_out_rows(codes, held_out, seed)
  if held.all() or not held.any():
    raise ValueError(f"INLP needs rows both to fit its classifiers on and to hold out; {len(codes)} rows are "
                     f"too few at held_out={held_out}")
  train_codes, test_codes = codes[~held], codes[held]
  majority = np.bincount(test_codes, minlength=num_classes).max() / len(test_codes)
  dim = x.shape[1]
  basis = np.zeros((dim, 0))
  accuracies, ranks, stopped = [], [], "n_iterations"
  for _ in range(n_iterations):
    projection = np.eye(dim) - basis @ basis.T
    projected = (centred @ projection / scale).astype(np.float32)
    kernel, bias = probes.logistic_regression(projected[~held], train_codes, l2, num_classes=num_classes)
    predicted = np.argmax(projected[held] @ np.asarray(kernel) + np.asarray(bias), -1)
    accuracies.append(float(np.mean(predicted == test_codes)))
    if accuracies[-1] - majority <= min_accuracy_gain:
      stopped = "chance"
      break
    found = _directions(np.asarray(kernel), projection)
    if found.shape[1] == 0:
      stopped = "no direction"
      break
    basis = np.concatenate([basis, found], axis=1)
    ranks.append(int(found.shape[1]))
    if basis.shape[1] >= dim:
      stopped = "all directions"
      break
  info = {"held_out_accuracy": accuracies, "majority_rate": float(majority), "rank_added": ranks,
          "rank": int(basis.shape[1]), "stopped": stopped}
  return {"left": basis, "right": basis.T, "bias": mean, "info": info}
