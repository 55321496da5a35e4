r"""Seed 004's representations with gender erased after training: does a probe still read gender, does age survive?

  python -m experiments.seed004_unlearning --dataset=utkface --manual_dir=../shared/data --cpu \
      --models=m1 --erasure=leace,inlp --output_dir=out/seed004_utkface

Unlearning in training (JLU, gradient reversal; ``experiments.seed004_unlearning``) leaves gender readable
from the embedding. Concept erasure (``fairjax.erasure``) removes it after training instead: for each
model's finished run (``OUT/<model>``, trained first if missing, exactly as ``seed004_unlearning`` trains
it), at the reported checkpoint,

  1. embeddings of BD's training rows, of EBD and of BD's complement;
  2. an eraser of gender, fitted four ways:
       on BD's training embeddings, where the model learnt; in BD age and gender go together (young
       women, old men), so what separates the genders there is partly age;
       on BD's training rows and BD's complement (young men, old women) together, where both genders
       occur at every age, judged on EBD, which neither holds;
       on seed 004's separate gender data set (``data.bias.gender_set_size`` -1: every face outside
       OD aged 16-71, as many women as men in every 4-year bin), judged on EBD and BD's complement:
       data where age says nothing of gender, disjoint from every judged split, and larger than EBD
       (skipped, with the reason in the table, where the data leave no face outside OD); and on the
       same set within the principal components that hold ``SUPPORT`` of its variance (``erasure.fit``'s
       ``support``: in the whole representation the eraser writes gender into units dead on the judged
       rows, where a standardising probe reads it back);
       on EBD, cross-fitted: the eraser is fitted on one half of EBD (stratified by gender) and judged
       on the other, and the two halves' figures averaged; EBD is where age and gender are independent,
       so its gender direction is gender's alone, but each half is small;
       on all of EBD and judged there: in-sample for the eraser (LEACE's guarantee is about the rows it
       was fitted on), the probes still cross-fitted;
  3. the age head refitted (multinomial logistic regression over the model's age bins) on BD's training
     embeddings after erasure, and, to separate the refit from the erasure, on the same embeddings as
     they are;
  4. on each judged split: age accuracy of the model's own head, of the refitted head without and with
     erasure, and gender leakage before and after, by a linear and an MLP probe cross-fitted on the split
     (``fairjax.train.leakage``: the run's own ``leakage_gender`` is the MLP one), as accuracy above the
     majority rate.

Writes ``OUT/erasure.md`` and ``OUT/erasure.csv`` (the wall time there counts the erasure alone). LEACE guarantees that no linear classifier separates the
classes' means *on the rows it was fitted on*; on other rows it holds up to their sampling noise, and an
MLP may still read what is not linear. The acceptance is checked on every LEACE row judged on EBD: linear
leakage at most 0.02, age accuracy no more than 1 point below the model's own head.
"""

import csv
import os
import time
from typing import Optional, Sequence

import numpy as np

from fairjax import erasure
from fairjax import markdown
from fairjax.data import experiment as data_experiment
from fairjax.erasure import probes
from fairjax.models import heads as heads_lib
from fairjax.train import leakage
from fairjax.train import loop

SPLITS = ("EBD", "BD_complement")
METHODS = ("leace", "inlp")
# The share of the gender set's variance the principal-subspace eraser keeps (``erasure.fit``'s support):
# M1's 128 ReLU units are mostly dead, and 33 components hold 99.9 % of the variance.
SUPPORT = 0.999
SUPPORT_FIT = "gender set outside OD, 99.9 % subspace"
LEAKAGE_BOUND = 0.02  # the acceptance: linear leakage on EBD after LEACE
ACCURACY_DROP = 0.01  # ... and age accuracy no more than this below the model's own head

def representation_rows(config, workdir: str) -> tuple:
  """``({split: {embedding, gender, age_bin, own_age_bin}}, number of age bins, why 'gender_set' is
  missing or None)`` of the training split, ``SPLITS`` and the gender data set ('gender_set', where the
  data hold one) at the reported checkpoint; rows of unknown gender are dropped."""
  context = loop.reported_context(config, workdir, with_train=True)
  spec = next(s for s in context.model.heads if s.name == "age")

  def fn(state, batch):
    outputs = context.outputs(state, batch)
    return {"embedding": outputs["embedding"], "gender": batch["gender"], "mask": batch["mask"],
            "age_bin": heads_lib.bin_index(spec, batch["age"]),
            "own_age_bin": outputs["age"].argmax(-1)}

  gender_set, skipped = gender_set_split(context.config)
  if gender_set is not None:
    context.splits = {**context.splits, "gender_set": gender_set}
  rows = {}
  for split in ("train",) + SPLITS + (("gender_set",) if gender_set is not None else ()):
    found = context.rows(fn, split)
    known = found["gender"] >= 0
    rows[split] = {key: value[known] for key, value in found.items()}
  return rows, spec.num_outputs, skipped


def gender_set_split(config):
  """``(split, None)``: the run's data with every face of seed 004's gender data set outside OD as the
  split 'gender_set' (``data.bias.gender_set_size`` -1); ``(None, reason)`` where the data hold none (a
  run whose OD is every image: ``data.subset_size`` 0)."""
  data = config.data.copy_and_resolve_references()
  data.bias.gender_set_size = -1
  try:
    return data_experiment.build(data)["gender_set"], None
  except ValueError as error:
    return None, f"no eraser fitted on a separate gender data set: {error}"


def refit_head(train_x, train_bins, num_bins: int):
  """The age head refitted on ``train_x``: a function of embeddings to predicted bins."""
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  kernel, bias = probes.logistic_regression((train_x - mean) / std, train_bins, probes.LINEAR_L2,
                                            num_classes=num_bins)
  kernel, bias = np.asarray(kernel), np.asarray(bias)
  return lambda x: np.argmax(((x - mean) / std) @ kernel + bias, -1)


def gender_leakage(x, gender, seed: int, probe: Optional[dict] = None) -> dict:
  """Linear and MLP probes' gender leakage, each cross-fitted on two halves of the rows. ``probe``: the
  run's ``leakage`` evaluator options (its probe's steps, width, penalty), so that the MLP figure before
  erasure is the one the run reported."""
  probe = dict(probe or {})
  return {"linear": leakage.probe_leakage(x, gender, 2, seed=seed, **{**probe, "hidden": ()})["leakage"],
          "mlp": leakage.probe_leakage(x, gender, 2, seed=seed, **probe)["leakage"]}


def halves(gender, seed: int):
  """Two halves of the rows, stratified by gender (``leakage.stratified_halves``)."""
  fold = leakage.stratified_halves(gender, seed)
  return [np.flatnonzero(fold == f) for f in (0, 1)]


def measure(rows: dict, num_bins: int, method: str, seed: int = 0, probe: Optional[dict] = None) -> list[dict]:
  """The figures of one erasure method on one model's rows (see the module docstring), one dict per
  (fit, judged split); ``probe``: the run's leakage probe options (``gender_leakage``)."""
  train = rows["train"]
  plain_head = refit_head(train["embedding"], train["age_bin"], num_bins)
  out = []
  # Fitted on BD's training rows, judged on every split.
  eraser = erasure.fit(train["embedding"], train["gender"], method=method)
  erased_head = refit_head(np.asarray(eraser(train["embedding"])), train["age_bin"], num_bins)
  for split in SPLITS:
    out.append(_figures("BD train", split, rows[split], eraser, plain_head, erased_head, seed, probe))
  # Fitted on BD's training rows and BD's complement together, where young and old of both genders occur,
  # judged on EBD, which neither holds.
  both = {key: np.concatenate([train[key], rows["BD_complement"][key]]) for key in ("embedding", "gender")}
  eraser = erasure.fit(both["embedding"], both["gender"], method=method)
  erased_head = refit_head(np.asarray(eraser(train["embedding"])), train["age_bin"], num_bins)
  out.append(_figures("BD train + BD complement", "EBD", rows["EBD"], eraser, plain_head, erased_head, seed, probe))
  # Fitted on the separate gender data set, where age says nothing of gender, judged on every split: in
  # the whole representation, and within its principal components (``SUPPORT``).
  if "gender_set" in rows:
    for fit, support in (("gender set outside OD", 1.0), (SUPPORT_FIT, SUPPORT)):
      eraser = erasure.fit(rows["gender_set"]["embedding"], rows["gender_set"]["gender"], method=method,
                           support=support)
      erased_head = refit_head(np.asarray(eraser(train["embedding"])), train["age_bin"], num_bins)
      for split in SPLITS:
        out.append(_figures(fit, split, rows[split], eraser, plain_head, erased_head, seed, probe))
  # Fitted on all of EBD and judged there: the eraser has seen the judged rows (LEACE's own guarantee, on
  # the rows it was fitted on); the probes are still cross-fitted.
  eraser = erasure.fit(rows["EBD"]["embedding"], rows["EBD"]["gender"], method=method)
  erased_head = refit_head(np.asarray(eraser(train["embedding"])), train["age_bin"], num_bins)
  out.append(_figures("EBD (in-sample)", "EBD", rows["EBD"], eraser, plain_head, erased_head, seed, probe))
  # Fitted on one half of EBD, judged on the other (both ways, averaged).
  ebd = rows["EBD"]
  parts = []
  first, second = halves(ebd["gender"], seed)
  for fit_rows, judged_rows in ((first, second), (second, first)):
    eraser = erasure.fit(ebd["embedding"][fit_rows], ebd["gender"][fit_rows], method=method)
    erased_head = refit_head(np.asarray(eraser(train["embedding"])), train["age_bin"], num_bins)
    judged = {key: value[judged_rows] for key, value in ebd.items()}
    parts.append(_figures("EBD half", "EBD other half", judged, eraser, plain_head, erased_head, seed, probe))
  out.append({key: (parts[0][key] if isinstance(parts[0][key], str) else float(np.mean([p[key] for p in parts])))
              for key in parts[0]})
  for row in out:
    row["method"] = method
  return out


def _figures(fit: str, split: str, rows: dict, eraser, plain_head, erased_head, seed: int, probe) -> dict:
  erased = np.asarray(eraser(rows["embedding"]))
  before = gender_leakage(rows["embedding"], rows["gender"], seed, probe)
  after = gender_leakage(erased, rows["gender"], seed, probe)
  return {"fit": fit, "split": split, "rows": float(len(rows["gender"])),
          "age_accuracy_own_head": float(np.mean(rows["own_age_bin"] == rows["age_bin"])),
          "age_accuracy_refit": float(np.mean(plain_head(rows["embedding"]) == rows["age_bin"])),
          "age_accuracy_refit_erased": float(np.mean(erased_head(erased) == rows["age_bin"])),
          "leakage_linear_before": before["linear"], "leakage_linear_after": after["linear"],
          "leakage_mlp_before": before["mlp"], "leakage_mlp_after": after["mlp"]}


COLUMNS = ("model", "method", "fit", "split", "rows", "age_accuracy_own_head", "age_accuracy_refit",
           "age_accuracy_refit_erased", "leakage_linear_before", "leakage_linear_after", "leakage_mlp_before",
           "leakage_mlp_after")


def acceptance(table: list[dict]) -> list[str]:
  """The issue's check on every LEACE row judged on EBD: linear gender leakage at most ``LEAKAGE_BOUND`` and
  age accuracy (the head refitted after erasure) no more than ``ACCURACY_DROP`` below the model's own."""
  lines = []
  for row in table:
    if row["method"] == "leace" and row["split"].startswith("EBD"):
      drop = row["age_accuracy_own_head"] - row["age_accuracy_refit_erased"]
      ok = row["leakage_linear_after"] <= LEAKAGE_BOUND and drop <= ACCURACY_DROP
      lines.append(f"{row['model']}: LEACE fitted on {row['fit']}, judged on {row['split']}: linear gender leakage "
                   f"{row['leakage_linear_after']:+.3f} (bound {LEAKAGE_BOUND}), age accuracy "
                   f"{row['age_accuracy_refit_erased']:.3f} against its own head's {row['age_accuracy_own_head']:.3f} "
                   f"(drop {drop:+.3f}, bound {ACCURACY_DROP}) -> {'met' if ok else 'NOT met'}")
  return lines


def write(table: list[dict], output_dir: str, command: str, wall: float, notes: Sequence[str] = ()) -> None:
  with open(os.path.join(output_dir, "erasure.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(table)
  header = ["model", "method", "eraser fitted on", "judged on", "age acc. own head", "refit", "refit, erased",
            "linear leak before", "after", "MLP leak before", "after"]
  lines = ["# Seed 004: gender erased from the representation after training", "",
           f"Command: `{command}` (wall time {wall / 60:.1f} min, runs reused where finished).", ""]
  lines += markdown.table(header, [[r["model"], r["method"], r["fit"], r["split"],
                                    *(markdown.number(r[k]) for k in COLUMNS[5:])] for r in table])
  lines += [""] + [f"Note: {note}" for note in notes] + ([""] if notes else [])
  lines += ["Acceptance:", ""] + [f"- {line}" for line in acceptance(table)]
  with open(os.path.join(output_dir, "erasure.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def run(models, methods, output_dir: str, config_of, command: str) -> list[str]:
  """Erases gender from each model's finished run in ``output_dir/<model>`` (``config_of(model)`` its
  config) with each method; writes ``erasure.md`` / ``.csv`` there and returns the acceptance lines."""
  unknown = [m for m in methods if m not in METHODS]
  if unknown:
    raise ValueError(f"unknown erasure method(s) {unknown}; known: {', '.join(METHODS)}")
  started = time.time()
  table, notes = [], []
  for model in models:
    config = config_of(model)
    rows, num_bins, skipped = representation_rows(config, os.path.join(output_dir, model))
    if skipped:
      notes.append(f"{model}: {skipped}")
    probe = dict(config.evaluator_options.get("leakage", {}))
    for method in methods:
      table += [{"model": model, **row} for row in measure(rows, num_bins, method, probe=probe)]
  write(table, output_dir, command, time.time() - started, notes)
  return acceptance(table)
