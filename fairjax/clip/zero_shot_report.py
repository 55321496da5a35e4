"""Files of a CLIP zero-shot audit (``fairjax.clip.zero_shot``): JSON, tables, markdown and plots.

Layout::

  DIR/summary.json                       every set's figures and group reports, the seeds' numbers
  DIR/results.md                         the tables of all sets side by side, seed 003's format
  DIR/error_share_by_race.png            share of the errors from each race, every gender set
  DIR/<set>/by_group.csv                 the set's group reports stacked (``ZeroShotResult.by_group``)
  DIR/<set>/threshold_sweep.png          gender sets: accuracy and macro F1 over the threshold
  DIR/<set>/confusion_by_race_<at>.png   gender sets: one matrix per race, at 0.5 and at the best
  DIR/<set>/confusion_by_gender.png      race sets: one matrix for all and one per gender

``<set>`` is the set's name with every run of other characters than letters and digits made ``_``
("male/female" -> ``male_female``).
"""

import json
import os
import re
import shutil
import tempfile

import numpy as np
import pandas as pd

from fairjax import markdown as markdown_lib
from fairjax.clip import references
from fairjax.data import schema
from fairjax.report import plots
from fairjax.report import run_report

# Figures of the race report shown in results.md: (summary key, column title).
DISPARITY_COLUMNS = (("demographic_parity_ratio", "DI ratio"), ("demographic_parity_difference", "DP gap"),
                     ("equal_opportunity_difference", "TPR gap"), ("fpr", "FPR gap"),
                     ("equalized_odds_difference", "EO gap"))


def slug(name: str) -> str:
  """The directory name of a prompt set."""
  text = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
  if not text:
    raise ValueError(f"prompt set name {name!r} has no letters or digits to name its directory")
  return text


def write_zero_shot(result, directory: str) -> list[str]:
  """Writes the audit's files into ``directory`` all together (staged, then moved); returns them."""
  names = [a.name for a in result.gender.values()] + [a.name for a in result.race.values()]
  slugs = [slug(n) for n in names]
  if len(set(slugs)) != len(slugs):
    raise ValueError(f"prompt set names {names} map to clashing directory names {slugs}")
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".zero-shot-", dir=parent)
  try:
    with open(os.path.join(staging, "summary.json"), "w") as f:
      json.dump(result.summary(), f, indent=2, allow_nan=False)
      f.write("\n")
    with open(os.path.join(staging, "results.md"), "w") as f:
      f.write(markdown(result))
    if result.gender:
      plot_error_shares(result, os.path.join(staging, "error_share_by_race.png"))
    for name in names:
      folder = os.path.join(staging, slug(name))
      os.makedirs(folder)
      result.by_group(name).to_csv(os.path.join(folder, "by_group.csv"), index=False, na_rep="NaN")
      if name in result.gender:
        audit = result.gender[name]
        plots.plot_threshold_sweep(audit.sweep, os.path.join(folder, "threshold_sweep.png"))
        for label, point in (("at_0.5", audit.default), ("at_best", audit.best)):
          run_report.plot_confusion(point.confusion_by_race, schema.GENDERS, schema.RACES,
                                    os.path.join(folder, f"confusion_by_race_{label}.png"),
                                    title=f"{name}: female if P(female) > {point.threshold:g}")
      else:
        audit = result.race[name]
        counts = np.concatenate([audit.confusion[None], audit.confusion_by_gender])
        run_report.plot_confusion(counts, schema.RACES, ("all",) + schema.GENDERS,
                                  os.path.join(folder, "confusion_by_gender.png"), title=f"{name}: argmax")
    written = []
    for root, _, files in os.walk(staging):
      written += [os.path.relpath(os.path.join(root, f), staging) for f in files]
    os.makedirs(directory, exist_ok=True)
    for entry in sorted(os.listdir(staging)):
      target = os.path.join(directory, entry)
      if os.path.isdir(target):
        shutil.rmtree(target)
      os.replace(os.path.join(staging, entry), target)
    return sorted(written)
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def plot_error_shares(result, path: str) -> None:
  """Grouped bars: the share of each gender set's errors (at its best threshold) from each race."""
  table = pd.DataFrame({"race": list(schema.RACES)})
  for name, audit in result.gender.items():
    table[name] = [np.nan if v is None else v for v in audit.best.error_share_by_race.values()]
  plots.plot_group_rates(table, ["race"], path, rates=list(result.gender),
                         title="Share of the errors from each race (at each set's best threshold)")


def markdown(result) -> str:
  """results.md: the gender sets in seed 003's format, race sets in seed 000 §7.3's, and disparities."""
  lines = [f"# CLIP zero-shot audit ({result.num_examples} images)", ""]
  skipped = {k: v for k, v in result.skipped.items() if v}
  if skipped:
    lines += ["Left out: " + ", ".join(f"{v} with {k.replace('_', ' ')}" for k, v in skipped.items()), ""]
  if result.gender:
    lines += _gender_table(result) + [""] + _gender_macro_table(result) + [""]
    lines += _disparity_table(result) + [""]
  if result.race:
    lines += _race_table(result) + [""]
  if result.warnings:
    lines += [f"{len(result.warnings)} group figures are undefined (NaN); summary.json lists them.", ""]
  return "\n".join(lines)


def _gender_table(result) -> list[str]:
  races = " / ".join(r[0] for r in schema.RACES)
  lines = ["## Gender from prompt sets (seed 003)", "",
           "Female if P(female) > threshold; the best threshold maximises macro F over 0.05 ... 0.95; "
           f"error share: of all errors at the best threshold, the share from each race ({races} = "
           f"{', '.join(schema.RACES)}).", "",
           markdown_lib.row(["prompt set", "predicted male", "true male", "best threshold", "macro F at best",
                 "accuracy at best", "accuracy at 0.5", f"error share {races}"]),
           markdown_lib.row(["---"] * 8)]
  for name, audit in result.gender.items():
    shares = " / ".join(_fixed(v) for v in audit.best.error_share_by_race.values())
    lines.append(markdown_lib.row([name, _pct(audit.default.predicted_share["male"]), _pct(audit.true_share["male"]),
                       f"{audit.best.threshold:g}", _fixed(audit.sweep["best_macro_f1"]["macro_f1"]),
                       _fixed(audit.best.accuracy), _fixed(audit.default.accuracy), shares]))
    seed = references.SEED_003_ZERO_SHOT.get(name)
    if seed is not None:
      given = " / ".join(_fixed(seed["error_share_by_race"].get(r)) for r in schema.RACES)
      lines.append(markdown_lib.row([f"{name} (seed 003)", _pct(seed["predicted_male"]), _pct(seed["true_male"]),
                         f"{seed['best_threshold']:g}", _fixed(seed["best_macro_f1"]),
                         _fixed(seed["accuracy_at_best"]), _fixed(seed["accuracy_at_0.5"]), given]))
  return lines


def _gender_macro_table(result) -> list[str]:
  lines = ["## Gender macro figures (seed 000 §7.3.1)", "",
           markdown_lib.row(["prompt set", "at", "macro accuracy", "macro F1", "accuracy male", "accuracy female"]),
           markdown_lib.row(["---"] * 6)]
  for name, audit in result.gender.items():
    for point in (audit.default, audit.best):
      lines.append(markdown_lib.row([name, f"{point.threshold:g}", _fixed(point.macro_accuracy), _fixed(point.macro_f1)]
                        + [_fixed(point.accuracy_by_gender[c]) for c in schema.GENDERS]))
  seed = references.SEED_000_ZERO_SHOT["gender"]
  lines.append(markdown_lib.row(["seed 000 §7.3", "", _fixed(seed["macro_accuracy"]), _fixed(seed["macro_f1"])]
                    + [_fixed(seed["accuracy_by_group"][c]) for c in schema.GENDERS]))
  return lines


def _disparity_table(result) -> list[str]:
  # By race only: every race x gender group of a gender classifier has only positives or only
  # negatives, so its TPR and FPR gaps are the race grouping's (both are in by_group.csv).
  pairs = [f"DI {a}/{b}" for a, b in references.SEED_000_RACE_PAIRS]
  lines = ["## Gender prediction: disparities by race", "",
           "Positive class female; DI ratio = smallest selection rate / largest; gaps = largest - smallest.",
           "", markdown_lib.row(["prompt set", "at"] + [title for _, title in DISPARITY_COLUMNS] + pairs),
           markdown_lib.row(["---"] * (2 + len(DISPARITY_COLUMNS) + len(pairs)))]
  for name, audit in result.gender.items():
    for point in (audit.default, audit.best):
      summary = point.reports["race"].summary
      cells = [_fixed(summary["differences"][key] if key == "fpr" else summary[key])
               for key, _ in DISPARITY_COLUMNS]
      lines.append(markdown_lib.row([name, f"{point.threshold:g}"] + cells
                        + [_fixed(v) for v in point.disparate_impact_pairs.values()]))
  return lines


def _race_table(result) -> list[str]:
  pairs = [f"{a}/{b}" for a, b in references.SEED_000_RACE_PAIRS]
  header = ["prompt set", "accuracy", "macro accuracy", "macro F1"] + [f"correct {r}" for r in schema.RACES]
  lines = ["## Race from prompt sets (seed 000 §7.3)", "",
           "Argmax over the five races; correct <race>: share of that race's images classified as it "
           "(seed 000's per-race selection rate), and its ratios.", "",
           markdown_lib.row(header + pairs), markdown_lib.row(["---"] * (len(header) + len(pairs)))]
  for name, audit in result.race.items():
    lines.append(markdown_lib.row([name, _fixed(audit.accuracy), _fixed(audit.macro_accuracy), _fixed(audit.macro_f1)]
                      + [_fixed(audit.accuracy_by_race[r]) for r in schema.RACES]
                      + [_fixed(audit.accuracy_ratio[p]) for p in pairs]))
  seed = references.SEED_000_ZERO_SHOT["race"]
  lines.append(markdown_lib.row(["seed 000 §7.3", "", _fixed(seed["macro_accuracy"]), _fixed(seed["macro_f1"])]
                    + [_fixed(seed["accuracy_by_group"][r]) for r in schema.RACES]
                    + [_fixed(seed["accuracy_ratio"][p]) for p in pairs]))
  return lines


def _fixed(value) -> str:
  return markdown_lib.number(value, 4)


def _pct(value) -> str:
  return markdown_lib.number(value, 2, percent=True)
