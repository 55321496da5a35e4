"""Seed 004's erasure figures on embeddings whose geometry is known: where each eraser is fitted matters."""

import numpy as np

from experiments import seed004_erasure

NUM_BINS = 4


def _rows(n: int, rng, *, biased: bool, young_women: bool = True) -> dict:
  """Embeddings of 8 dimensions: age bin on the first, gender on the second, noise elsewhere. ``biased``:
  gender follows age (BD: young women and old men; ``young_women`` False: BD's complement)."""
  age_bin = rng.integers(0, NUM_BINS, n)
  if biased:
    old = age_bin >= NUM_BINS // 2
    gender = np.where(old, 0, 1) if young_women else np.where(old, 1, 0)
  else:
    gender = rng.integers(0, 2, n)
  x = rng.normal(size=(n, 8)).astype(np.float32)
  x[:, 0] += 2.0 * age_bin
  x[:, 1] += 1.5 * (2 * gender - 1)
  return {"embedding": x, "gender": gender, "age_bin": age_bin, "own_age_bin": age_bin}


def test_an_eraser_fitted_where_age_says_nothing_of_gender_erases_gender_elsewhere():
  rng = np.random.default_rng(0)
  rows = {"train": _rows(600, rng, biased=True), "BD_complement": _rows(300, rng, biased=True, young_women=False),
          "EBD": _rows(400, rng, biased=False), "gender_set": _rows(1500, rng, biased=False)}
  figures = seed004_erasure.measure(rows, NUM_BINS, "leace", seed=0, probe={"steps": 200})
  by_fit = {(row["fit"], row["split"]): row for row in figures}
  assert list(by_fit) == [("BD train", "EBD"), ("BD train", "BD_complement"), ("BD train + BD complement", "EBD"),
                          ("gender set outside OD", "EBD"), ("gender set outside OD", "BD_complement"),
                          (seed004_erasure.SUPPORT_FIT, "EBD"), (seed004_erasure.SUPPORT_FIT, "BD_complement"),
                          ("EBD (in-sample)", "EBD"), ("EBD half", "EBD other half")]
  gender_set = by_fit[("gender set outside OD", "EBD")]
  assert gender_set["leakage_linear_before"] > 0.3  # gender reads plainly off the second dimension
  assert gender_set["leakage_linear_after"] < 0.05  # ... and not after, on rows the eraser never saw
  # In BD the genders' mean difference is mostly age: erasing it leaves EBD's gender readable and costs age.
  bd = by_fit[("BD train", "EBD")]
  assert bd["leakage_linear_after"] > gender_set["leakage_linear_after"] + 0.1
  assert gender_set["age_accuracy_refit_erased"] > bd["age_accuracy_refit_erased"]
  # Without a gender set the fit is left out, and nothing else changes.
  del rows["gender_set"]
  fits = [(row["fit"], row["split"]) for row in seed004_erasure.measure(rows, NUM_BINS, "leace", seed=0,
                                                                         probe={"steps": 200})]
  assert fits == [key for key in by_fit if not key[0].startswith("gender set outside OD")]
