r"""Seed 004 reproduced: train M1, M2, M3 (and gradient reversal, constraints) on BD, test on EBD.

  python -m experiments.seed004_unlearning --dataset=synthetic_faces --output_dir=out/seed004_synthetic
  python -m experiments.seed004_unlearning --dataset=utkface --manual_dir=../shared/data \
      --output_dir=out/seed004_utkface [--models=m1,m2] [--smoke] [--launcher=slurm [--sbatch="..."]]

Each model is one run of ``configs/seed004_unlearning.py`` (``m1`` JLU alpha 0, ``m2`` alpha 1,
``m3`` alpha 0.4, ``grl`` gradient reversal, ``constrained`` equalized-odds constraints by gender), in
its own workdir ``OUT/<model>/``, trained on BD and evaluated on BD's validation slice, EBD and BD's
complement. A finished run (its ``report/final_metrics.json`` written for the same config) is not
trained again, and an interrupted one resumes from its last checkpoint, so rerunning the command
finishes what is missing and redraws the outputs. ``--launcher=slurm`` trains the unfinished runs as the
tasks of one SLURM job array and writes the outputs in a job after it (``experiments/launcher.py``):

  OUT/results.csv   one row per model: age accuracy on EBD, BD's complement and BD (validation),
                    age MAE on EBD, gender leakage on EBD and BD's complement (and BD), the gender
                    head's accuracy on EBD, and the seed's figure where it has one.
  OUT/results.md    the same table beside the seed's numbers, and the acceptance checks.
  OUT/embeddings_gender.png
                    the t-SNE maps of theta_repr coloured by gender laid out as the seed's Figures
                    8-9: BD (Fig. 8, M1 against M2) in the first row, EBD (Fig. 9, alpha 0 / 0.4 / 1)
                    in the second, gradient reversal and constraints beside them.

Leakage (``fairjax.train.leakage``) is a fresh probe's accuracy at reading gender from the embedding,
minus the majority rate. The acceptance reads it on EBD: there age and gender are independent, so the
probe can only score by reading gender itself, while in BD age alone gives gender away.
"""

import csv
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np

from experiments import launcher
from experiments import seed004_erasure
from fairjax import cli
from fairjax import paths
from fairjax.report import embeddings as embeddings_lib
from fairjax.report import run_report
from fairjax.train import config as config_lib
from fairjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILE = os.path.join(ROOT, "configs", "seed004_unlearning.py")
DATASETS = {"synthetic_faces": "synthetic", "utkface": "utkface"}  # flag value -> config word
# Model word, label, what it is, and the seed's figures (Table 1's EBD age accuracy, gender accuracy).
MODELS = (
    ("m1", "M1", "JLU alpha = 0 (age only)", {"EBD age accuracy": 0.46}),
    ("m3", "M3", "JLU alpha = 0.4", {}),
    ("m2", "M2", "JLU alpha = 1", {"EBD age accuracy": 0.49, "gender accuracy": 0.53}),
    ("grl", "GRL", "gradient reversal (DANN ramp)", {}),
    ("constrained", "Constrained", "equalized-odds constraints by gender", {}),
)
UNLEARNING = ("m2", "m3", "grl")  # what the acceptance asks to bring leakage to chance
BASELINE = "m1"
LEAKAGE_TOLERANCE = 0.05
# Result columns: (column, metric key in final_metrics.json).
COLUMNS = (
    ("age_accuracy_EBD", "EBD/age/accuracy"),
    ("age_accuracy_BD_complement", "BD_complement/age/accuracy"),
    ("age_accuracy_BD_validation", "validation/age/accuracy"),
    ("age_mae_EBD", "EBD/age/mae"),
    ("leakage_gender_EBD", "EBD/leakage_gender"),
    ("leakage_gender_BD_complement", "BD_complement/leakage_gender"),
    ("leakage_gender_BD_validation", "validation/leakage_gender"),
    ("gender_head_accuracy_EBD", "EBD/gender/accuracy"),
    ("age_gender_eo_gap_EBD", "EBD/age/gender/equalized_odds_difference"),
)
# The figure: (split, row title) per row, as seed 004's Figures 8 (BD) and 9 (EBD).
FIGURE_ROWS = (("validation", "BD (Fig. 8)"), ("EBD", "EBD (Fig. 9)"))

_DATASET = flags.DEFINE_enum("dataset", "synthetic_faces", list(DATASETS), "Data set OD is drawn from.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder holding UTKFace.tar.gz (utkface only).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for the runs, table and figure.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny runs of seconds (for tests); the numbers mean nothing.")
_CPU = flags.DEFINE_bool("cpu", False, "The configs' 'cpu' variant: 64x64 input, trunk widths halved.")
_SIDE = flags.DEFINE_bool("side", False, "The configs' 'side' variant: the gender head learns from a separate "
                          "gender data set (seed 004 §3.2's X_gen), BD trains age only.")
_MODELS = flags.DEFINE_list("models", [m[0] for m in MODELS], "Models to run, of " +
                            ", ".join(m[0] for m in MODELS) + ".")
_ERASURE = flags.DEFINE_list("erasure", [], "After training: erase gender from the models' representations "
                             "with these methods (leace, inlp) and write OUT/erasure.md (experiments/seed004_erasure.py).")
launcher.define_flags()
FLAGS = flags.FLAGS


def _config_module():
  return config_lib.load_config_module(CONFIG_FILE)


def model_config(model: str, dataset: str, smoke: bool = False, manual_dir=None, cpu: bool = False,
                 side: bool = False):
  """``configs/seed004_unlearning.py``'s config of ``model`` on ``dataset`` (a flag value)."""
  if dataset not in DATASETS:
    raise ValueError(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
  words = [model, DATASETS[dataset]] + [w for w, on in (("cpu", cpu), ("side", side), ("smoke", smoke)) if on]
  config = _config_module().get_config(",".join(words))
  if manual_dir:
    if dataset != "utkface":
      raise ValueError("--manual_dir is for --dataset=utkface; the synthetic faces need nothing downloaded")
    config.data.manual_dir = manual_dir
  return config


def _check_models(models, side: bool) -> None:
  known = [m[0] for m in MODELS]
  unknown = [m for m in models if m not in known]
  if unknown or not models:
    raise ValueError(f"--models must name some of {', '.join(known)}, got {models}")
  if side and "constrained" in models:
    raise ValueError("--side is for the models with a gender head; leave 'constrained' out of --models")


def _final_metrics(workdir: str) -> dict:
  with open(os.path.join(workdir, "report", "final_metrics.json")) as f:
    return json.load(f)


def run_models(models, dataset: str, output_dir: str, smoke: bool = False, manual_dir=None,
               cpu: bool = False, side: bool = False) -> dict:
  """Trains (or finds finished) each model's run; returns ``{model: final metrics}``."""
  _check_models(models, side)
  results = {}
  for model in models:
    config = model_config(model, dataset, smoke, manual_dir, cpu, side)
    workdir = os.path.join(output_dir, model)
    loop.ensure_trained(config, workdir, model)
    results[model] = _final_metrics(workdir)
  return results


def finished_models(models, dataset: str, output_dir: str, smoke: bool = False, manual_dir=None,
                    cpu: bool = False, side: bool = False) -> dict:
  """``{model: final metrics}`` of the models whose runs have finished in ``output_dir``, training none."""
  _check_models(models, side)
  return {model: _final_metrics(os.path.join(output_dir, model)) for model in models
          if loop.finished(os.path.join(output_dir, model), model_config(model, dataset, smoke, manual_dir, cpu, side))}


def _value(metrics: dict, key: str) -> float:
  value = metrics.get(key)
  return float("nan") if value is None else float(value)


def table_rows(results: dict) -> list[dict]:
  """One row per model in ``results``, in the seed's order, with ``COLUMNS`` and the seed's figures."""
  rows = []
  for model, label, what, seed in MODELS:
    if model not in results:
      continue
    row = {"model": model, "label": label, "objective": what}
    row.update({column: _value(results[model], key) for column, key in COLUMNS})
    row["seed_age_accuracy_EBD"] = seed.get("EBD age accuracy", float("nan"))
    row["seed_gender_accuracy"] = seed.get("gender accuracy", float("nan"))
    rows.append(row)
  return rows


def acceptance(rows: list[dict]) -> list[str]:
  """The issue's checks: each unlearning model's gender leakage on EBD within 5 points of chance, and
  its EBD age accuracy not below M1's (the age task alone)."""
  by_model = {row["model"]: row for row in rows}
  if BASELINE not in by_model:
    return ["M1 was not run: the accuracy check needs it."]
  base = by_model[BASELINE]["age_accuracy_EBD"]
  lines = []
  for row in rows:
    if row["model"] not in UNLEARNING:
      continue
    leak, accuracy = row["leakage_gender_EBD"], row["age_accuracy_EBD"]
    leak_ok, accuracy_ok = abs(leak) <= LEAKAGE_TOLERANCE, accuracy >= base
    lines.append(f"{row['label']}: gender leakage on EBD {leak:+.3f} ({'within' if leak_ok else 'NOT within'} "
                 f"{LEAKAGE_TOLERANCE:.2f} of chance); EBD age accuracy {accuracy:.3f} vs M1's {base:.3f} "
                 f"({'not below' if accuracy_ok else 'BELOW'}) -> {'met' if leak_ok and accuracy_ok else 'NOT met'}")
  return lines


def _format(value: float, percent: bool = False) -> str:
  if not np.isfinite(value):
    return "–"
  return f"{100 * value:.1f} %" if percent else f"{value:+.3f}" if value < 0 else f"{value:.3f}"


def write_table(rows: list[dict], output_dir: str, dataset: str, smoke: bool, side: bool = False,
                missing=()) -> None:
  """``results.csv`` and ``results.md`` (``missing``: the models asked for whose runs have not finished)."""
  fields = list(rows[0])
  with open(os.path.join(output_dir, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
  lines = [f"# Seed 004 on {dataset}{' (smoke: the numbers mean nothing)' if smoke else ''}", "",
           "Trained on BD (young women, old men), tested on EBD (equal men and women per 4-year bin) and",
           "on BD's complement (young men, old women)."]
  if side:
    lines += ["With 'side': the gender head learns from a separate gender data set (as many women as men",
              "at every age; seed 004 §3.2's X_gen), and BD's rows train age only."]
  lines += ["Age accuracy is the 14-bin accuracy; leakage is a",
            "fresh probe's accuracy at reading gender from the 128-d representation minus the majority",
            "rate (0 = chance); the gender head is the model's own (for M1 a linear probe of the frozen",
            "features, for M2/M3 the head the trunk confuses, for GRL the adversary).", "",
            "| model | objective | age acc. EBD | seed | age acc. BD compl. | age acc. BD val. | age MAE EBD "
            "| gender leakage EBD | BD compl. | BD val. | gender head acc. EBD | seed |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    lines.append(
        f"| {row['label']} | {row['objective']} | {_format(row['age_accuracy_EBD'], True)} "
        f"| {_format(row['seed_age_accuracy_EBD'], True)} | {_format(row['age_accuracy_BD_complement'], True)} "
        f"| {_format(row['age_accuracy_BD_validation'], True)} | {_format(row['age_mae_EBD'])} "
        f"| {_format(row['leakage_gender_EBD'])} | {_format(row['leakage_gender_BD_complement'])} "
        f"| {_format(row['leakage_gender_BD_validation'])} | {_format(row['gender_head_accuracy_EBD'])} "
        f"| {_format(row['seed_gender_accuracy'])} |")
  if missing:
    lines += ["", f"Not finished yet (no row): {', '.join(missing)}; run the command again to finish them."]
  lines += ["", "Leakage is read on EBD for the checks below: in BD (and its validation slice) age gives",
            "gender away, so a representation that only knows age leaks gender there; in EBD it cannot.",
            "", "## Acceptance", ""] + [f"- {line}" for line in acceptance(rows)]
  lines += ["", "![t-SNE of the representation by gender](embeddings_gender.png)", ""]
  with open(os.path.join(output_dir, "results.md"), "w") as f:
    f.write("\n".join(lines))


def write_figure(models, output_dir: str, dataset: str) -> str:
  """``embeddings_gender.png``: each run's t-SNE map by gender, rows BD (validation) and EBD."""
  labels = {m[0]: m[1] for m in MODELS}
  panels = []
  for split, row_title in FIGURE_ROWS:
    row = []
    for model in models:
      directory = run_report.split_dir(os.path.join(output_dir, model), split)
      if not os.path.exists(os.path.join(directory, embeddings_lib.POINTS_FILE)):
        row.append(None)
        continue
      saved = embeddings_lib.load_points(directory)
      row.append({"points": saved["points"], "labels": saved["labels/gender"],
                  "class_names": [str(c) for c in saved["classes/gender"]],
                  "title": f"{labels[model]} on {row_title}"})
    panels.append(row)
  path = os.path.join(output_dir, "embeddings_gender.png")
  embeddings_lib.plot_embedding_grid(panels, path, title=f"Seed 004 on {dataset}: t-SNE of theta_repr by gender")
  return path


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _OUTPUT_DIR.value:
    raise app.UsageError("--output_dir is required")
  if not flags.FLAGS["verbosity"].present:  # orbax and CLU log every save at INFO
    logging.set_verbosity(logging.WARNING)
  known = [m[0] for m in MODELS]
  unknown = sorted(set(_MODELS.value) - set(known))
  if unknown or not _MODELS.value:
    raise app.UsageError(f"--models must name some of {', '.join(known)}, got {_MODELS.value}")
  ordered = [m for m in known if m in _MODELS.value]
  if FLAGS.task is not None and FLAGS.task not in ordered:
    raise app.UsageError(f"--task must be one of --models ({', '.join(ordered)}), got {FLAGS.task!r}")
  output_dir = paths.resolve_str(_OUTPUT_DIR.value)
  manual_dir = paths.resolve_str(_MANUAL_DIR.value) if _MANUAL_DIR.value else None
  options = (_DATASET.value, output_dir, _SMOKE.value, manual_dir, _CPU.value, _SIDE.value)
  unknown = [m for m in _ERASURE.value if m not in seed004_erasure.METHODS]
  if unknown:
    raise ValueError(f"--erasure: unknown method(s) {unknown}; known: {', '.join(seed004_erasure.METHODS)}")
  # Each run checks its config and data before it writes its workdir, so bad input leaves no OUT behind.
  if FLAGS.task is not None:  # one task of a SLURM array: its run only
    run_models([FLAGS.task], *options)
    return
  if FLAGS.aggregate_only:
    results = finished_models(ordered, *options)
  elif FLAGS.launcher == "slurm":
    results = finished_models(ordered, *options)
    unfinished = [m for m in ordered if m not in results]
    if unfinished:
      launcher.submit_slurm(output_dir, "seed004", [unfinished],
                            launcher.rerun_command(sys.argv, "experiments.seed004_unlearning"), FLAGS.sbatch)
      return
  else:
    results = run_models(ordered, *options)
  if not results:
    print(f"no run has finished yet in {_OUTPUT_DIR.value}: nothing to tabulate")
    return
  rows = table_rows(results)
  write_table(rows, output_dir, _DATASET.value, _SMOKE.value, _SIDE.value,
              missing=[m for m in ordered if m not in results])
  write_figure(ordered, output_dir, _DATASET.value)
  print(f"results: {os.path.join(_OUTPUT_DIR.value, 'results.md')}")
  if _ERASURE.value:
    config_of = lambda model: model_config(model, options[0], *options[2:])
    for line in seed004_erasure.run([m for m in ordered if m in results], _ERASURE.value, output_dir, config_of,
                                    "python -m experiments.seed004_unlearning " + " ".join(sys.argv[1:])):
      print(line)
    print(f"erasure: {os.path.join(_OUTPUT_DIR.value, 'erasure.md')}")


if __name__ == "__main__":
  cli.run(main)
