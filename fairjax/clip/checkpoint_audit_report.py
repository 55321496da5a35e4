"""Files of the CLIP audit command (``fairjax.clip.checkpoint_audit``): every method's own, and the comparison.

  OUT/<method>/          the zero-shot audit's files (``fairjax.clip.zero_shot_report``), plus
                         retrieval.json (MaxSkew@k / NDKL by gender and race) and debias.json (the fit)
  OUT/summary.json       the headline figures of every method side by side, and the seeds' numbers
  OUT/report.md          the same as tables

Headline figures are those of one gender prompt set (by default the ensemble of all of them) at
threshold 0.5, and again at the best threshold of its sweep. By race they are the group report's
(positive class female): equalized-odds, TPR and FPR gaps, and disparate impact, the smallest
selection rate of "female" over the largest. By gender, the seeds' own reading: seed 000 §7.3.2 calls
each gender's share classified correctly its "selection rate" and compares them, so its disparate
impact between genders is the ratio of the two accuracies and its TPR / FPR gap (identical in §8.3.2,
0.076) their difference; grouped by the attribute it predicts, a gender classifier has no TPR for men
or FPR for women in the usual sense, so those are the figures that exist.
"""

import json
import math
import os

from fairjax.clip import prompts
from fairjax import markdown as markdown_lib
from fairjax.clip import references
from fairjax.clip import zero_shot_report

# (key, column title) of the classification tables.
COLUMNS = (("accuracy", "accuracy"), ("macro_accuracy", "macro acc."), ("macro_f1", "macro F1"),
           ("predicted_male", "male share (true)"), ("eo_gap_race", "EO gap race"),
           ("tpr_gap_race", "TPR gap race"), ("fpr_gap_race", "FPR gap race"), ("di_race", "DI race"),
           ("accuracy_gap_gender", "acc. gap gender"), ("accuracy_ratio_gender", "acc. ratio gender"),
           ("race_macro_accuracy", "race macro acc."), ("race_macro_f1", "race macro F1"))
_SEED_GENDER = references.SEED_000_ZERO_SHOT["gender"]["accuracy_by_group"]
# The seeds' numbers in the table's terms (OpenAI CLIP on UTKFace: references, not targets).
REFERENCE_ROWS = (
    ("seed 000 §7.3 (before)", {
        "macro_accuracy": references.SEED_000_ZERO_SHOT["gender"]["macro_accuracy"],
        "macro_f1": references.SEED_000_ZERO_SHOT["gender"]["macro_f1"],
        "accuracy_gap_gender": abs(_SEED_GENDER["male"] - _SEED_GENDER["female"]),
        "accuracy_ratio_gender": min(_SEED_GENDER.values()) / max(_SEED_GENDER.values()),
        "race_macro_accuracy": references.SEED_000_ZERO_SHOT["race"]["macro_accuracy"],
        "race_macro_f1": references.SEED_000_ZERO_SHOT["race"]["macro_f1"]}),
    (f"seed 000 §8.3 (subspace, α = {references.SEED_000_SUBSPACE['alpha']})", {
        "macro_accuracy": references.SEED_000_SUBSPACE["macro_accuracy"],
        "macro_f1": references.SEED_000_SUBSPACE["macro_f1"],
        "accuracy_gap_gender": references.SEED_000_SUBSPACE["tpr_difference"],
        "accuracy_ratio_gender": references.SEED_000_SUBSPACE["disparate_impact"]}),
) + tuple((f"seed 003 {name} (before)", {"accuracy": seed["accuracy_at_0.5"], "predicted_male": seed["predicted_male"],
                                          "true_male": seed["true_male"]})
          for name, seed in references.SEED_003_ZERO_SHOT.items())
METHOD_TITLES = {
    "none": "none (as trained)",
    "subspace": "subspace, defining sets",
    "subspace_seed": "subspace, seed's sets",
    "prompt_projection": "biased-prompt projection",
    "calibrated": "calibrated projection",
}


def _value(value):
  return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)


def operating_figures(audit, gender_set: str, point: str) -> dict:
  """The headline figures of one gender set at ``point`` ('at_0.5' or 'at_best')."""
  gender = audit.gender[gender_set]
  op = gender.default if point == "at_0.5" else gender.best
  race = op.reports["race"].summary
  male, female = op.accuracy_by_gender["male"], op.accuracy_by_gender["female"]
  both = None not in (male, female)
  return {
      "threshold": op.threshold, "accuracy": op.accuracy, "macro_accuracy": op.macro_accuracy,
      "macro_f1": op.macro_f1, "predicted_male": op.predicted_share["male"], "true_male": gender.true_share["male"],
      "accuracy_male": male, "accuracy_female": female,
      "eo_gap_race": _value(race["equalized_odds_difference"]),
      "tpr_gap_race": _value(race["equal_opportunity_difference"]),
      "fpr_gap_race": _value(race["differences"]["fpr"]),
      "di_race": _value(race["demographic_parity_ratio"]),
      "accuracy_gap_gender": abs(male - female) if both else None,
      "accuracy_ratio_gender": (min(male, female) / max(male, female) if both and max(male, female) > 0 else None),
  }


def method_summary(result, headline: str) -> dict:
  """A method's headline figures (None where the headline set was left out), every set's, retrieval."""
  audit = result.audit
  race = audit.race.get("race")
  race_figures = {"race_macro_accuracy": race.macro_accuracy if race else None,
                  "race_macro_f1": race.macro_f1 if race else None}
  out = {"left_out": result.left_out, "fit": result.fit, "retrieval": result.retrieval,
         "ensemble_members": list(audit.gender["ensemble"].members) if "ensemble" in audit.gender else None}
  for point in ("at_0.5", "at_best"):
    out[point] = ({**operating_figures(audit, headline, point), **race_figures}
                  if headline in audit.gender else None)
  out["sets"] = {name: operating_figures(audit, name, "at_0.5") for name in audit.gender}
  out["race_sets"] = {name: {"accuracy": a.accuracy, "macro_accuracy": a.macro_accuracy, "macro_f1": a.macro_f1,
                             "accuracy_by_race": a.accuracy_by_race} for name, a in audit.race.items()}
  return out


def headline_set(results: dict, requested) -> str:
  """The requested gender set, or else the ensemble (else the first set) of the first method."""
  if requested:
    return requested
  first = next(iter(results.values())).audit
  return "ensemble" if "ensemble" in first.gender else next(iter(first.gender))


def recorded_options(options) -> dict:
  """The audit's options as summary.json records them. Given an experiment config's ``data`` section,
  the images came from it, not from the command's ``dataset``/``manual_dir``/``image_size``: those
  record the section's values, so that the summary does not name a data set the audit never read."""
  recorded = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(options).items() if k != "data"}
  if options.data is not None:
    recorded.update(dataset=options.data.name, manual_dir=options.data.get("manual_dir") or None,
                    image_size=options.data.image_size)
  return recorded


def summarise(results: dict, options, key: dict, num_examples: int, fit_size, from_cache: bool) -> dict:
  headline = headline_set(results, options.headline)
  return {
      "checkpoint": os.path.abspath(options.checkpoint), "checkpoint_sha256": key["checkpoint"],
      "dataset": key["dataset"], "split": options.split, "num_examples": num_examples,
      "fit_split": options.fit_split if fit_size is not None else None, "fit_images": fit_size,
      "embeddings_from_cache": from_cache, "headline_set": headline,
      "image_transform": key["transform"],
      "options": recorded_options(options),
      "methods": {m: method_summary(r, headline) for m, r in results.items()},
      "reference": {"seed_000_7_3": references.SEED_000_ZERO_SHOT, "seed_000_8_3": references.SEED_000_SUBSPACE,
                    "seed_003": references.SEED_003_ZERO_SHOT, "rows": dict(REFERENCE_ROWS)},
  }


def write_method(result, directory: str, plots: bool = True) -> None:
  """The zero-shot audit's files, retrieval.json and debias.json, into ``directory``.

  Without ``plots``, the audit's summary.json, results.md and by_group.csv only: its two dozen figures
  per method are most of a small run's time.
  """
  if plots:
    result.audit.save(directory)
  else:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "summary.json"), "w") as f:
      json.dump(result.audit.summary(), f, indent=2, allow_nan=False)
    with open(os.path.join(directory, "results.md"), "w") as f:
      f.write(zero_shot_report.markdown(result.audit))
    for name in list(result.audit.gender) + list(result.audit.race):
      folder = os.path.join(directory, zero_shot_report.slug(name))
      os.makedirs(folder, exist_ok=True)
      result.audit.by_group(name).to_csv(os.path.join(folder, "by_group.csv"), index=False, na_rep="NaN")
  for name, value in (("retrieval.json", result.retrieval),
                      ("debias.json", {"method": result.method, "fit": result.fit, "left_out": result.left_out})):
    with open(os.path.join(directory, name), "w") as f:
      json.dump(value, f, indent=2, allow_nan=False)
      f.write("\n")


def write_summary(summary: dict, directory: str) -> None:
  os.makedirs(directory, exist_ok=True)
  for name, text in (("summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n"),
                     ("report.md", markdown(summary))):
    staging = os.path.join(directory, f".{name}.partial")
    with open(staging, "w") as f:
      f.write(text)
    os.replace(staging, os.path.join(directory, name))


# ------------------------------------------------------------------------------------------ markdown


def fmt(value, pct: bool = False) -> str:
  return markdown_lib.number(value, 1, percent=True) if pct else markdown_lib.number(value)


def figure_cells(figures: dict) -> list[str]:
  cells = []
  for key, _ in COLUMNS:
    if key == "predicted_male":
      male, true = figures.get("predicted_male"), figures.get("true_male")
      cells.append(f"{fmt(male, True)} ({fmt(true, True)})" if male is not None or true is not None else "—")
    else:
      cells.append(fmt(figures.get(key)))
  return cells


def classification_table(labelled_figures, references=True) -> list[str]:
  """``labelled_figures``: (row title, figures or None); the seeds' reference rows follow."""
  rows = [[title] + (figure_cells(figures) if figures else ["left out"] + [""] * (len(COLUMNS) - 1))
          for title, figures in labelled_figures]
  if references:
    rows += [[f"*{title}*"] + figure_cells(figures) for title, figures in REFERENCE_ROWS]
  return markdown_lib.table(["method"] + [title for _, title in COLUMNS], rows)


def retrieval_table(summary: dict) -> list[str]:
  ks = summary["options"]["retrieval_k"]
  header = ["method"] + [f"{m} {a} @{k}" for k in ks for a in ("gender", "race") for m in ("MaxSkew", "NDKL")]
  rows = []
  for method, figures in summary["methods"].items():
    cells = []
    for k in ks:
      for attribute in ("gender", "race"):
        entry = figures["retrieval"][attribute][str(k)]
        cells += ([fmt(entry["max_skew"]), fmt(entry["ndkl"])] if "skipped" not in entry
                  else [markdown_lib.MISSING] * 2)
    rows.append([METHOD_TITLES[method]] + cells)
  return markdown_lib.table(header, rows)


def sets_table(summary: dict) -> list[str]:
  methods = list(summary["methods"])
  names = list(dict.fromkeys(n for m in methods for n in summary["methods"][m]["sets"]))
  rows = []
  for name in names:
    cells = []
    for m in methods:
      entry = summary["methods"][m]["sets"].get(name)
      cells.append("left out" if entry is None else
                   f"{fmt(entry['accuracy'])} / {fmt(entry['predicted_male'], True)}")
    rows.append([name] + cells)
  return markdown_lib.table(["gender set"] + [METHOD_TITLES[m] for m in methods], rows)


def fit_notes(summary: dict) -> list[str]:
  lines = []
  for method, figures in summary["methods"].items():
    fit = figures["fit"]
    if method in ("subspace", "subspace_seed"):
      lines.append(f"- **{METHOD_TITLES[method]}**: sets {fit['sets']}; {fit['fit_images']} images of "
                   f"{summary['fit_split']} ({', '.join(f'{v} {g}' for g, v in fit['fit_images_by_gender'].items())})"
                   f" and {fit['text_pairs']} gender-swapped text pairs; k = {fit['k']} of {fit['dimension']} "
                   f"dimensions ({fmt(fit['variance_at_k'], True)} of the within-set variance), α = {fit['alpha']:g}.")
    elif method in ("prompt_projection", "calibrated"):
      extra = f", calibrated on {fit['pairs']} pairs with λ = {fit['lambda']:g}" if fit["pairs"] else ""
      lines.append(f"- **{METHOD_TITLES[method]}**: {len(fit['biased_prompts'])} gender-only prompts{extra}; "
                   f"applied to the text embeddings only.")
    for name, why in figures["left_out"].items():
      lines.append(f"  - {name!r} left out: {why}.")
  return lines


def markdown(summary: dict) -> str:
  headline, methods = summary["headline_set"], summary["methods"]
  members = next((m["ensemble_members"] for m in methods.values() if m["ensemble_members"]), None)
  what = f"`{headline}`"
  if headline == "ensemble" and members:
    what += f" (mean probability of {', '.join(f'`{m}`' for m in members)})"
  lines = [f"# CLIP zero-shot audit: {summary['dataset']} {summary['split']} ({summary['num_examples']} images)", "",
           f"Checkpoint `{summary['checkpoint']}` (sha256 {summary['checkpoint_sha256'][:12]}). Images processed "
           f"as its image processor says: `{summary['image_transform']}`.", ""]
  if summary["fit_images"]:
    lines += [f"Subspace methods are fitted on {summary['fit_images']} images of the `{summary['fit_split']}` "
              f"split, never on the audited one.", ""]
  lines += [f"## Gender zero-shot by debiasing method: {what}, female if P(female) > 0.5", "",
            "Male share: the share predicted male (the true share in brackets; seed 003's bias). By race, "
            "positive class female: EO = max(TPR gap, FPR gap), DI = smallest selection rate over the "
            "largest. By gender, the seed's reading: the gap and ratio of the two genders' accuracies "
            "(seed 000's TPR/FPR gap and disparate impact). Race: the `race` set's 5-way zero-shot. "
            "*Italic rows* are the seeds' numbers for OpenAI CLIP ViT-B/32 on UTKFace: references, not targets.", ""]
  lines += classification_table([(METHOD_TITLES[m], f["at_0.5"]) for m, f in methods.items()])
  lines += ["", "## The same at the best threshold (highest macro F1 over 0.05 ... 0.95, chosen on the audited "
            "split itself, as seed 003 chooses it)", ""]
  lines += classification_table([(f"{METHOD_TITLES[m]} (at {fmt(f['at_best']['threshold'])})" if f["at_best"]
                                  else METHOD_TITLES[m], f["at_best"]) for m, f in methods.items()],
                                references=False)
  lines += ["", "## Every gender set: accuracy at 0.5 / male share", ""] + sets_table(summary)
  desired = summary["options"]["retrieval_desired"]
  lines += ["", f"## Retrieval bias of {len(prompts.NEUTRAL_TRAITS)} attribute-neutral queries (Berg et al. 2022)", "",
            f"Images ranked by cosine to \"a photo of a {{trait}} person.\", top k compared with the gallery's "
            f"{'own group shares' if desired == 'proportional' else 'uniform mix'}; MaxSkew@k = max over "
            "groups of ln(share in top k / desired share), NDKL the rank-discounted KL divergence of every "
            "prefix; both 0 for no bias, means over the queries.", ""]
  lines += retrieval_table(summary)
  lines += ["", "## Debiasing fits", ""] + fit_notes(summary)
  if "subspace" in methods and "subspace_seed" in methods:
    lines += ["", "Why the two subspaces differ: the seed centres each set by its own mean, and with one set "
              "per gender that subtracts exactly the difference between the genders before the PCA, so its "
              "subspace is the variation *within* each gender. Defining sets hold one member of each gender, "
              "so their residuals are the between-gender contrasts, whose leading directions are gender's."]
  lines += ["", "Per method: " + ", ".join(f"[{m}]({m}/results.md)" for m in methods) +
            " (every set's tables, by_group.csv, plots, retrieval.json, debias.json).", ""]
  return "\n".join(lines)
