"""Synthetic embeddings for the erasure tests: a population with an anisotropic covariance (so LEACE's
whitening matters) in which an attribute is encoded linearly (class means) or not (a sign of x1 * x2),
sampled into independent splits."""

import numpy as np

DIM = 32


class Population:
  """Rows ``x = noise @ mixing + means[z] + offset``; ``noise`` standard normal, ``z`` drawn with
  ``probabilities``. ``nonlinear`` also writes z into the sign of the product of two coordinates."""

  def __init__(self, seed: int, probabilities, *, separation: float = 1.0, nonlinear: bool = False,
               dim: int = DIM):
    rng = np.random.default_rng(seed)
    self.probabilities = np.asarray(probabilities, float)
    self.nonlinear = nonlinear
    scales = np.exp(rng.normal(size=dim))  # variances over about four orders of magnitude
    self.mixing = np.linalg.qr(rng.normal(size=(dim, dim)))[0] * scales[:, None]
    self.means = separation * rng.normal(size=(len(self.probabilities), dim))
    self.offset = 3.0 * rng.normal(size=dim)

  def sample(self, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.choice(len(self.probabilities), size=n, p=self.probabilities)
    noise = rng.normal(size=(n, self.mixing.shape[0]))
    if self.nonlinear:
      # The sign of x1 * x2 says whether z is odd: equal class means, so only a nonlinear probe reads it.
      sign = np.where(z % 2 == 1, 1.0, -1.0)
      noise[:, 1] = np.abs(noise[:, 1]) * np.sign(noise[:, 0]) * sign
      noise[:, :2] *= 3.0
    x = noise @ self.mixing + self.means[z] + self.offset
    return x.astype(np.float32), z


def majority_rate(z) -> float:
  return np.unique(z, return_counts=True)[1].max() / len(z)
