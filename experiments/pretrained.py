r"""Seed 001's audit of pretrained models, on the pretrained models at hand: the work, importable without the
command-line flags of ``experiments/pretrained_audit.py`` (which says what is measured and how to run it).

One pass over UTKFace (streamed from the archive or folder in its own order, every labelled image; the
files without a race are skipped and listed as ``fairjax.data.utkface`` skips them) feeds every batch to
every model variant: a registered pretrained model (``fairjax.models.pretrained_tfjs``) and a framing
(``margin``). Each variant's batches go through ``fairjax.train.evaluate``'s evaluator (the sums a
training run's evaluation adds up), whose ``summarise`` gives the group reports that
``fairjax.report.run_report`` writes as for any run; the per-image predictions also go through
``fairjax.audit`` for what the evaluator does not group by (gender accuracy by age band).
"""

import csv
import dataclasses
import itertools
import os
import time
import types
import warnings
from typing import Callable, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from fairjax import markdown
from fairjax.audit import core as audit_core
from fairjax.data import groups
from fairjax.data import schema
from fairjax.data import utkface
from fairjax.metrics import group_report as report_lib
from fairjax.models import forward
from fairjax.models import heads as heads_lib
from fairjax.models import human_models
from fairjax.models import pretrained_tfjs
from fairjax.models import registry
from fairjax.report import run_report
from fairjax.train import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "experiments", "results", "pretrained_audit")
MODELS = ("gear", "ssrnet_age", "ssrnet_gender_imdb", "face_classification_gender")
GENDER_MODELS = ("gear", "ssrnet_gender_imdb", "face_classification_gender")
AGE_MODELS = ("gear", "ssrnet_age")
# Trained on UTKFace's chips themselves: run on them as given, never with a margin.
CHIP_TRAINED = ("gear",)
# UTKFace's chips are 200x200; the models resize them to their own input size.
IMAGE_SIZE = 200
SPLIT = "utkface"
GROUPING = "race_x_gender"
AGE_BANDS = ((0, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, None))
# Seed 001's pretrained gender model (serengil's VGG-Face gender CNN, trained on IMDB-WIKI) on UTKFace,
# as its text gives them (its tables are images): accuracy overall, for men, for each race's men and
# women where the text names them, and the best race's women.
SEED_GENDER = {"overall": 0.78, "men": 0.96, "White men": 0.98, "Indian men": 0.98, "Black women": 0.46,
               "women: best race": 0.63, "women: worst race": 0.46}
SEED_GENDER_NOTE = ("serengil's VGG-Face gender CNN (IMDB-WIKI) on UTKFace; its text gives these figures, its "
                    "tables are images")
SEED_AGE_NOTE = ("VGG-Face age (IMDB-WIKI, 101-way softmax decoded by its expectation): MAE about 10 "
                 "years on uncropped UTKFace faces aged 16 and over before retraining, 8.4 after retraining "
                 "its dense layers on UTKFace, 7.9 with over-60s duplicated; on cropped UTKFace faces it was "
                 "worse (no figure given); older faces underestimated, young women overestimated more than "
                 "men (figures only)")
SEED_WOMEN_AGE_NOTE = ("its figure is an image only; its text says the oldest women were misread most, and "
                       "Black women at every age")


@dataclasses.dataclass(frozen=True)
class Variant:
  """A registered pretrained model and the margin added around UTKFace's chips before it sees them."""
  model: str
  margin: float = 0.0

  @property
  def name(self) -> str:
    return self.model if not self.margin else f"{self.model}_margin{self.margin:g}"

  @property
  def label(self) -> str:
    return self.model if not self.margin else f"{self.model} (margin {self.margin:g})"


def variants(models: Sequence[str], margins: Sequence[float]) -> list[Variant]:
  """Each model with each margin; GEAR (trained on the chips) with none."""
  unknown = [m for m in models if m not in MODELS]
  if unknown or not models:
    raise ValueError(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}" if unknown else
                     "--models is empty")
  margins = [float(m) for m in margins] or [0.0]
  if any(m < 0 for m in margins):
    raise ValueError(f"--margins must be >= 0, got {margins}")
  out = []
  for model in dict.fromkeys(models):
    for margin in ((0.0,) if model in CHIP_TRAINED else dict.fromkeys(margins)):
      out.append(Variant(model, margin))
  return out


def check_inputs(manual_dir: Optional[str], chosen: Sequence[Variant], models_dir: str = "") -> str:
  """UTKFace's archive or folder under ``manual_dir``; raises (one line) when it or a model is missing."""
  if not manual_dir:
    raise ValueError("--manual_dir is required: the folder holding UTKFace.tar.gz")
  source = utkface.find_source(manual_dir)
  for model in dict.fromkeys(v.model for v in chosen):
    human_models.model_file(pretrained_tfjs.FILES[model], models_dir or None)
  return source


def age_band(age: int) -> str:
  for low, high in AGE_BANDS:
    if age >= low and (high is None or age <= high):
      return f"{low}-{high}" if high is not None else f"{low}+"
  return "unknown"


def batches(source: str, batch_size: int, limit: int = 0) -> tuple[Iterator[dict], utkface.UTKFaceReader]:
  """Batches of the labelled images in the source's order (the first ``limit`` with limit > 0): uint8
  ``image`` [B, 200, 200, 3], ``age``, ``gender``, ``race``, ``mask`` (False on the last batch's padding)
  and ``file_name``; and the reader, whose ``skipped`` lists the files left out once the batches are
  read."""
  reader = utkface.UTKFaceReader(source, image_size=(IMAGE_SIZE, IMAGE_SIZE))
  records = iter(reader)
  if limit:
    records = itertools.islice(records, limit)

  def generate():
    while True:
      chunk = list(itertools.islice(records, batch_size))
      if not chunk:
        return
      pad = batch_size - len(chunk)
      images = np.stack([r["image"] for r in chunk] + [np.zeros_like(chunk[0]["image"])] * pad)
      batch = {"image": images, "mask": np.arange(batch_size) < len(chunk),
               "file_name": [r["file_name"] for r in chunk]}
      for field in ("age", "gender", "race"):
        batch[field] = np.asarray([r[field] for r in chunk] + [-1] * pad, np.int32)
      yield batch

  return generate(), reader


@dataclasses.dataclass
class Evaluated:
  """One variant's evaluation: the summarised group reports, each image's predictions, forward time."""
  variant: Variant
  model: object
  result: report_lib.EvalResult
  predictions: pd.DataFrame
  seconds: float


def build(variant: Variant, models_dir: str = ""):
  """The variant's model (on 200x200 chips) and its variables (the graph's weights)."""
  model = registry.get_model(variant.model, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), margin=variant.margin,
                             models_dir=models_dir)
  return model, registry.init_variables(model, jax.random.key(0))


def make_step(model) -> Callable:
  """``(params, batch) -> (evaluator sums, per-image predictions)``, jitted: the model runs once per batch,
  its outputs shared by the evaluator (``evaluate.make_evaluator``) and the predictions."""
  evaluator = evaluate.make_evaluator(model, images_fn=forward.model_images, groupings=groups.DEFAULT_GROUPINGS)

  def step(params, batch):
    seen = []

    def apply_fn(variables, images, **kwargs):
      outputs = model.apply(variables, images, **kwargs)
      seen.append(outputs)
      return outputs

    state = types.SimpleNamespace(params={"model": params}, model_state={})
    sums = evaluator(state, batch, apply_fn)
    decoded = heads_lib.predict_all(model.heads, seen[0])
    out = {}
    for spec in model.heads:
      if spec.name == "gender":
        probs = decoded["gender"]["probs"]
        out["pred_gender"] = decoded["gender"]["label"]
        out["p_female"] = probs if probs.ndim == 1 else probs[:, 1]
      elif spec.name == "race":
        out["pred_race"] = decoded["race"]["label"]
      elif spec.name == "age":
        out["pred_age"] = decoded["age"]["value"]
    return sums, out

  return jax.jit(step)


def evaluate_all(source: str, chosen: Sequence[Variant], *, batch_size: int = 64, limit: int = 0,
                 models_dir: str = "", log: Callable = print) -> tuple[list[Evaluated], list, int]:
  """Every variant on every (or the first ``limit``) labelled image, in one pass over the data: the
  evaluations, the skipped files and the number of images."""
  built = [(v, *build(v, models_dir)) for v in chosen]
  steps = [make_step(model) for _, model, _ in built]
  totals, rows, seconds = [None] * len(built), [[] for _ in built], [0.0] * len(built)
  labels, count, started = [], 0, time.time()
  stream, reader = batches(source, batch_size, limit)
  for batch in stream:
    n = int(batch["mask"].sum())
    device_batch = {k: jnp.asarray(v) for k, v in batch.items() if k != "file_name"}
    for i, ((_, _, variables), step) in enumerate(zip(built, steps)):
      tic = time.time()
      sums, predicted = jax.block_until_ready(step(variables["params"], device_batch))
      seconds[i] += time.time() - tic
      totals[i] = sums if totals[i] is None else jax.tree.map(jnp.add, totals[i], sums)
      rows[i].append({k: np.asarray(v)[:n] for k, v in predicted.items()})
    labels.append(pd.DataFrame({"file_name": batch["file_name"], **{f: batch[f][:n] for f in
                                                                    ("age", "gender", "race")}}))
    count += n
    if count // 2000 != (count - n) // 2000:
      log(f"{count} images, {time.time() - started:.0f} s")
  if not count:
    raise ValueError(f"{source}: no labelled image read")
  frame = pd.concat(labels, ignore_index=True)
  evaluated = []
  for i, (variant, model, _) in enumerate(built):
    with warnings.catch_warnings():  # undefined figures are listed in the result's warnings
      warnings.simplefilter("ignore", report_lib.FairnessWarning)
      result = evaluate.summarise(model, jax.tree.map(np.asarray, totals[i]))
    predicted = {k: np.concatenate([r[k] for r in rows[i]]) for k in rows[i][0]}
    evaluated.append(Evaluated(variant, model, result, frame.assign(**predicted), seconds[i]))
  return evaluated, list(reader.skipped), count


def named(frame: pd.DataFrame) -> pd.DataFrame:
  """The predictions with readable columns added: gender and race names, the age band."""
  out = frame.copy()
  out["gender_name"] = [schema.GENDERS[g] for g in out["gender"]]
  out["race_name"] = [schema.RACES[r] for r in out["race"]]
  out["age_band"] = [age_band(a) for a in out["age"]]
  return out


def gender_audits(frame: pd.DataFrame) -> dict[str, report_lib.GroupReport]:
  """``fairjax.audit``'s reports of the gender predictions by gender x age band and by race x gender x age
  band (accuracy among women by age is the women's rows of the first)."""
  frame = named(frame)
  columns = {"gender_by_age_band": ["gender_name", "age_band"],
             "gender_by_race_age_band": ["race_name", "gender_name", "age_band"]}
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    return {name: audit_core.audit(frame, label_column="gender", prediction_column="pred_gender",
                                   sensitive_columns=keys) for name, keys in columns.items()}


def primary(variant: Variant) -> tuple[str, str]:
  return ("gender" if variant.model in GENDER_MODELS else "age", GROUPING)


def write_reports(evaluated: Sequence[Evaluated], output_dir: str, skipped: Sequence[dict]) -> None:
  """Each variant's report folder, ``OUT/<variant>/``: ``report/`` as a training run's (``report.md``,
  ``utkface/by_group.csv``, ``summary.json``, figures), ``predictions.csv`` and, for gender models, the
  audits by age band (``gender_by_age_band/``, ``gender_by_race_age_band/``)."""
  for item in evaluated:
    folder = os.path.join(output_dir, item.variant.name)
    run_report.write_split(folder, SPLIT, item.result, primary=primary(item.variant))
    model = item.model
    trained_on = pretrained_tfjs.TRAINED_ON[item.variant.model]
    notes = [f"A pretrained model evaluated as it is (no training here), trained on {trained_on}.",
             f"Forward passes took {item.seconds:.0f} s for {len(item.predictions)} images."]
    if skipped:
      notes.append(f"{len(skipped)} files of the data set were skipped: " +
                   "; ".join(f"{s['file']} ({s['reason']})" for s in skipped))
    run_report.write_markdown(
        folder, config_summary={"model": item.variant.model, "package model": pretrained_tfjs.FILES[item.variant.model],
                                "margin": item.variant.margin, "box": list(model.box), "fill": model.fill,
                                "antialias": model.antialias, "data": "UTKFace, every labelled image, 200x200"},
        history=[], split_results={SPLIT: item.result}, primary=primary(item.variant), selected_step=None,
        notes=notes)
    item.predictions.to_csv(os.path.join(folder, "predictions.csv"), index=False)
    if "pred_gender" in item.predictions:
      for name, report in gender_audits(item.predictions).items():
        audit_core.write_report(report, os.path.join(folder, name))


# ------------------------------------------------------------------------------------------ the table


def _pct(value) -> str:
  return "" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def _num(value, digits: int = 2) -> str:
  return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def gender_rows(item: Evaluated) -> dict[str, tuple[float, int]]:
  """Gender accuracy and count: overall, men, women, each race x gender, the women's best and worst race."""
  frame = item.predictions
  correct = (frame["pred_gender"] == frame["gender"]).to_numpy()
  rows = {"overall": (correct.mean(), len(frame))}
  for code, name in ((0, "men"), (1, "women")):
    mask = (frame["gender"] == code).to_numpy()
    rows[name] = (correct[mask].mean() if mask.any() else np.nan, int(mask.sum()))
  for race_code, race in enumerate(schema.RACES):
    for code, name in ((0, "men"), (1, "women")):
      mask = ((frame["race"] == race_code) & (frame["gender"] == code)).to_numpy()
      rows[f"{race} {name}"] = (correct[mask].mean() if mask.any() else np.nan, int(mask.sum()))
  women = {race: rows[f"{race} women"][0] for race in schema.RACES if rows[f"{race} women"][1]}
  if women:
    best, worst = max(women, key=women.get), min(women, key=women.get)
    rows[f"women: best race ({best})"] = rows[f"{best} women"]
    rows[f"women: worst race ({worst})"] = rows[f"{worst} women"]
  return rows


def women_by_age(item: Evaluated) -> dict[str, tuple[float, int]]:
  """Gender accuracy among women by age band, from ``fairjax.audit``'s gender x age band report."""
  table = gender_audits(item.predictions)["gender_by_age_band"].by_group
  women = table[table["gender_name"] == "female"]
  by_band = {row["age_band"]: (float(row["accuracy"]), int(row["count"])) for _, row in women.iterrows()}
  return {age_band(low): by_band[age_band(low)] for low, _ in AGE_BANDS if age_band(low) in by_band}


def age_rows(item: Evaluated) -> dict[str, tuple[float, float, int]]:
  """(MAE, mean signed error, count) overall, at 16 and over (seed 001's set), and by race x gender, from
  the evaluator's regression reports (the age 16+ row from the predictions)."""
  metrics, report = item.result.metrics, item.result.reports[("age", GROUPING)].by_group
  frame = item.predictions
  rows = {"overall": (metrics["age/mae"], metrics["age/mean_signed_error"], len(frame))}
  adult = frame[frame["age"] >= 16]
  error = (adult["pred_age"] - adult["age"]).to_numpy()
  rows["aged 16 and over"] = (float(np.abs(error).mean()) if len(error) else np.nan,
                              float(error.mean()) if len(error) else np.nan, len(adult))
  for _, row in report.iterrows():
    rows[f"{row['race']} {'men' if row['gender'] == 'male' else 'women'}"] = (
        float(row["mae"]), float(row["mean_signed_error"]), int(row["count"]))
  return rows


def table(evaluated: Sequence[Evaluated], *, command: str, seconds: float, count: int, skipped: Sequence[dict],
          limit: int = 0) -> tuple[list[str], list[dict]]:
  """The results page (markdown lines) and its CSV rows (long format)."""
  lines = ["# Seed 001's audit of pretrained models, on UTKFace", ""]
  lines += [f"Command: `{command}`", "",
            f"Images: {count:,} labelled UTKFace faces" + (f" (the first {limit} of the archive: a test run)"
                                                           if limit else " (all)") +
            (f"; {len(skipped)} files skipped: " + ", ".join(f"`{s['file']}` ({s['reason']})" for s in skipped)
             if skipped else "") + ".", "",
            f"Wall time: {seconds / 60:.1f} min for the whole command; forward passes: " +
            ", ".join(f"{e.variant.label} {e.seconds:.0f} s" for e in evaluated) + ".", ""]
  lines += ["Trained on UTKFace (in-distribution here): " +
            (", ".join(m for m in dict.fromkeys(e.variant.model for e in evaluated)
                       if m in CHIP_TRAINED) or "none of these") +
            " (GEAR-Predictor was trained on a random, unseeded 63 % of UTKFace with 27 % for validation, so "
            "most of these faces are its training data and none can be told apart). Trained elsewhere (IMDB, "
            "out of distribution): " +
            (", ".join(m for m in dict.fromkeys(e.variant.model for e in evaluated) if m not in CHIP_TRAINED)
             or "none") + ".", ""]
  lines += ["Framing: each model gets the 200x200 chip as given; the IMDB-trained models also with a margin "
            "(m: the chip padded by m of its size on each side, edge pixels repeated), since they were trained "
            "on IMDB-WIKI crops with a 40 % margin around the face while UTKFace's chips are cropped close "
            "(seed 001 noticed the same of its IMDB-WIKI model). Preprocessing per model and its sources: "
            "`fairjax/models/pretrained_tfjs.py`. Seed 001 audited another model (serengil's VGG-Face, "
            "IMDB-WIKI), which cannot be fetched here: its figures stand beside ours as the seed's finding, "
            "not as the same model.", ""]
  csv_rows = []

  gender_items = [e for e in evaluated if e.variant.model in GENDER_MODELS]
  if gender_items:
    lines += ["## Gender accuracy by race x gender (%)", ""]
    per = [gender_rows(e) for e in gender_items]
    header = ["group", "n", "seed 001"] + [e.variant.label for e in gender_items]
    body = []
    for prefix in dict.fromkeys(n.split(" (")[0] for p in per for n in p):  # best / worst race differ by model
      cells, count = [], None
      for e, p in zip(gender_items, per):
        match = next((k for k in p if k.split(" (")[0] == prefix), None)
        if match is None:
          cells.append("")
          continue
        race = match[len(prefix) + 2:-1] if match != prefix else ""
        cells.append(_pct(p[match][0]) + (f" ({race})" if race else ""))
        count = p[match][1] if count is None else count
        csv_rows.append({"table": "gender_accuracy", "model": e.variant.label, "group": match, "metric": "accuracy",
                         "value": p[match][0], "n": p[match][1], "seed_001": SEED_GENDER.get(prefix, "")})
      shown = "" if prefix.startswith("women: ") or count is None else f"{count:,}"
      body.append([prefix, shown, _pct(SEED_GENDER.get(prefix))] + cells)
    lines += markdown.table(header, body) + ["", f"Seed column: {SEED_GENDER_NOTE}.", ""]

    lines += ["## Gender accuracy among women, by age band (%)", ""]
    per = [women_by_age(e) for e in gender_items]
    bands = [age_band(low) for low, _ in AGE_BANDS if any(age_band(low) in p for p in per)]
    body = [[band, f"{next(p[band][1] for p in per if band in p):,}"] +
            [_pct(p[band][0]) if band in p else "" for p in per] for band in bands]
    lines += markdown.table(["age", "n"] + [e.variant.label for e in gender_items], body)
    lines += ["", f"Seed 001: {SEED_WOMEN_AGE_NOTE}. By race and age band: each model's "
              "`gender_by_race_age_band/by_group.csv`.", ""]
    for e, p in zip(gender_items, per):
      for band, (value, n) in p.items():
        csv_rows.append({"table": "women_gender_accuracy_by_age", "model": e.variant.label, "group": band,
                         "metric": "accuracy", "value": value, "n": n, "seed_001": ""})

  age_items = [e for e in evaluated if e.variant.model in AGE_MODELS]
  if age_items:
    lines += ["## Age error by race x gender (years; signed error = predicted - true)", ""]
    per = [age_rows(e) for e in age_items]
    header = ["group", "n"] + [f"{e.variant.label} {what}" for e in age_items for what in ("MAE", "signed")]
    body = [[name, f"{per[0][name][2]:,}"] + [cell for p in per for cell in (_num(p[name][0]), _num(p[name][1]))]
            for name in per[0]]
    lines += markdown.table(header, body)
    lines += ["", "GEAR's age is the expectation of its 7 bins at Human's bin ages (15, 23, 28, 35.5, 45.5, "
              "55.5, 65), so it cannot go below 15 or above 65.", "", f"Seed 001: {SEED_AGE_NOTE}.", ""]
    for e, p in zip(age_items, per):
      for name, (mae, signed, n) in p.items():
        for metric, value in (("mae", mae), ("mean_signed_error", signed)):
          csv_rows.append({"table": "age_error", "model": e.variant.label, "group": name, "metric": metric,
                           "value": value, "n": n, "seed_001": ""})

  for e in evaluated:
    if ("race", "gender") not in e.result.confusion:
      continue
    counts = np.asarray(e.result.confusion[("race", "gender")])
    lines += [f"## {e.variant.label}: race confusion by gender (rows true, columns predicted; counts)", ""]
    for g, gender in enumerate(schema.GENDERS):
      matrix = counts[g]
      recall = matrix.diagonal() / np.maximum(matrix.sum(1), 1)
      body = [[race] + [f"{int(v):,}" for v in matrix[r]] + [_pct(recall[r])] for r, race in enumerate(schema.RACES)]
      total = matrix.trace() / max(matrix.sum(), 1)
      lines += [f"{'Men' if gender == 'male' else 'Women'} (race accuracy {_pct(total)} %):", ""]
      lines += markdown.table(["true \\ predicted", *schema.RACES, "recall %"], body) + [""]
      for r, race in enumerate(schema.RACES):
        for p, predicted in enumerate(schema.RACES):
          csv_rows.append({"table": "race_confusion", "model": e.variant.label, "group": f"{gender}, true {race}",
                           "metric": f"predicted {predicted}", "value": int(matrix[r, p]), "n": int(matrix[r].sum()),
                           "seed_001": ""})
  lines += ["Each model's full group report (every head by race, gender and race x gender, as a training "
            "run's): `OUT/<model>/report/report.md`.", ""]
  return lines, csv_rows


CSV_COLUMNS = ("table", "model", "group", "metric", "value", "n", "seed_001")


def write_table(lines: Sequence[str], rows: Sequence[dict], stem: str) -> list[str]:
  """``stem.md`` and ``stem.csv``; returns their paths."""
  os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
  with open(stem + ".md", "w") as f:
    f.write("\n".join(lines).rstrip() + "\n")
  with open(stem + ".csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  return [stem + ".md", stem + ".csv"]
