"""LEACE: the same eraser as EleutherAI's concept_erasure, the guarantee it makes (equal class means, so
no linear probe beats the majority rate on held-out rows), what it does not promise (a nonlinear code
survives), and the least change among erasers that make that guarantee."""

import numpy as np
import pytest
from sklearn import linear_model

from fairjax import erasure
from tests.erasure import synthetic

TWO = synthetic.Population(0, [0.6, 0.4])
FOUR = synthetic.Population(1, [0.4, 0.3, 0.2, 0.1])


def _class_means(x, z):
  return np.stack([x[z == value].mean(0) for value in np.unique(z)])


@pytest.mark.parametrize("options", [{}, {"shrinkage": False}, {"orthogonal": True}, {"affine": False}],
                         ids=["default", "no_shrinkage", "orthogonal", "not_affine"])
@pytest.mark.parametrize("population", [TWO, FOUR], ids=["2_classes", "4_classes"])
def test_equals_concept_erasure(population, options):
  torch = pytest.importorskip("torch")
  concept_erasure = pytest.importorskip("concept_erasure")
  x, z = population.sample(10, 3000)
  z = np.where(np.arange(len(z)) % 50 == 0, -1, z)  # unknown rows: left out of the fit, still erased
  known = z >= 0
  onehot = np.eye(len(population.probabilities))[z[known]]
  theirs_options = {"method": "orth"} if options.get("orthogonal") else options
  erased = np.asarray(erasure.fit(x, z, method="leace", **options)(x))
  assert erased.dtype == np.float32
  # Theirs in float64 (the fit ours does in numpy) and in float32 (what a user with float32 embeddings gets).
  for dtype, tolerance in ((torch.float64, 1e-5), (torch.float32, 1e-4)):
    reference = concept_erasure.LeaceEraser.fit(torch.tensor(x[known], dtype=dtype),
                                                torch.tensor(onehot, dtype=dtype), **theirs_options)
    expected = reference(torch.tensor(x, dtype=dtype)).numpy()
    relative = np.abs(erased - expected).max() / np.abs(expected).max()
    print(f"{dtype}: max |ours - concept_erasure| / max |erased| = {relative:.2e}")
    assert relative < tolerance


def test_class_means_are_equal_after_erasure_on_the_fit_split_and_nearly_on_another():
  fit_x, fit_z = FOUR.sample(11, 3000)
  test_x, test_z = FOUR.sample(12, 3000)
  eraser = erasure.fit(fit_x, fit_z)
  assert eraser.rank == 3  # K - 1 directions for K classes
  scale = np.abs(fit_x).max()
  erased_means = _class_means(np.asarray(eraser(fit_x), np.float64), fit_z)
  assert np.abs(erased_means - erased_means.mean(0)).max() < 1e-5 * scale
  # On other rows the class means differ by sampling noise alone. Each class's whitened distance from the
  # overall mean, scaled to a chi-squared with 32 degrees of freedom where the means are equal, is about
  # 64 after erasure (noise of the fit split's means plus the test split's), thousands before.
  whiten = np.linalg.inv(np.linalg.cholesky(np.cov(test_x.T))).T

  def chi_squared(x):
    x, n = np.asarray(x, np.float64), len(test_z)
    counts = np.bincount(test_z)
    gaps = (_class_means(x, test_z) - x.mean(0)) @ whiten
    return counts * n / (n - counts) * np.sum(gaps * gaps, 1)

  assert chi_squared(test_x).min() > 1000
  assert chi_squared(eraser(test_x)).max() < 160


@pytest.mark.parametrize("population", [TWO, FOUR], ids=["2_classes", "4_classes"])
def test_no_linear_probe_beats_the_majority_rate_on_held_out_rows(population):
  fit_x, fit_z = population.sample(13, 3000)
  test_x, test_z = population.sample(14, 3000)
  probe = lambda a, b: linear_model.LogisticRegression(max_iter=2000).fit(a, fit_z).score(b, test_z)
  majority = synthetic.majority_rate(test_z)
  assert probe(fit_x, test_x) > majority + 0.3
  eraser = erasure.fit(fit_x, fit_z)
  assert abs(probe(eraser(fit_x), eraser(test_x)) - majority) <= 0.02


def test_a_nonlinear_code_survives_leace():
  """LEACE promises nothing about nonlinear probes: a sign of x1 * x2 is still there for an MLP."""
  population = synthetic.Population(2, [0.5, 0.5], nonlinear=True)
  fit_x, fit_z = population.sample(15, 2000)
  test_x, test_z = population.sample(16, 2000)
  before = erasure.linear_and_mlp_leakage(fit_x, fit_z, test_x, test_z)
  eraser = erasure.fit(fit_x, fit_z)
  after = erasure.linear_and_mlp_leakage(eraser(fit_x), fit_z, eraser(test_x), test_z)
  print(f"leakage before LEACE {before}, after {after}")
  assert before["linear"] > 0.2 and abs(after["linear"]) < 0.03
  assert after["mlp"] > 0.15


def test_leace_changes_the_embeddings_least():
  """The paper's claim, fairly: among erasers that all make the class means equal on the fit split, LEACE
  (with the plain covariance it is optimal for, no shrinkage) moves held-out rows least, in the Euclidean
  norm and in the Mahalanobis one. Its rivals: the orthogonal projection off the mean differences (for two
  classes, off the one mean-difference direction) and INLP, run until its probe is at chance."""
  fit_x, fit_z = TWO.sample(17, 3000)
  test_x, _ = TWO.sample(18, 3000)
  precision = np.linalg.inv(np.cov(fit_x.T))
  erasers = {"leace": erasure.fit(fit_x, fit_z, shrinkage=False),
             "orthogonal": erasure.fit(fit_x, fit_z, orthogonal=True),
             "inlp": erasure.fit(fit_x, fit_z, method="inlp")}
  for name in ("leace", "orthogonal"):
    means = _class_means(np.asarray(erasers[name](fit_x), np.float64), fit_z)
    assert np.abs(means[0] - means[1]).max() < 1e-5 * np.abs(fit_x).max(), name
  changes = {}
  for name, eraser in erasers.items():
    delta = np.asarray(eraser(test_x), np.float64) - test_x
    changes[name] = (np.mean(np.sum(delta * delta, 1)), np.mean(np.sum((delta @ precision) * delta, 1)))
  print({name: tuple(f"{c:.4g}" for c in change) for name, change in changes.items()})
  for rival in ("orthogonal", "inlp"):
    assert changes["leace"][0] < changes[rival][0], rival
    assert changes["leace"][1] < changes[rival][1], rival
