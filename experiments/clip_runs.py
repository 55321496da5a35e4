"""What the CLIP experiments share: train a config (resuming), audit its export, tabulate the audits.

``train`` runs ``fairjax.train.loop.train_and_evaluate`` in a workdir, or finds the finished run there
(its ``config.json`` the same config, its ``report/final_metrics.json`` written), and returns the
Hugging Face folder the run exported (``WORKDIR/clip_checkpoint``). ``audit_export`` runs the CLIP
audit command's work (``fairjax.clip.checkpoint_audit``) on it, with the run's own ``data`` section so that the
audited test split and the fitting split are the ones the run was evaluated on, never trained on.
``table_rows`` / ``write_results`` make the one table of ``OUT/results.md``:

  zero-shot, each prompt set   (the model as trained, every gender set at 0.5, and the race set)
  zero-shot, ensemble          (mean probability of the gender sets), with retrieval bias
  debiased, each method        (the ensemble after each debiasing method), with retrieval bias
  fine-tuned rows              (the fine-tuned models' ensemble), with retrieval bias
  the seeds' numbers           (OpenAI CLIP ViT-B/32 on UTKFace: references, not targets)
"""

import json
import os

from fairjax import markdown
from fairjax.clip import checkpoint_audit
from fairjax.clip import checkpoint_audit_report
from fairjax.clip import references
from fairjax.clip import zero_shot
from fairjax.train import config as config_lib
from fairjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
RETRIEVAL_K = (10, 100)
SMOKE_RETRIEVAL_K = (5, 20)
_SEED_GENDER = references.SEED_000_ZERO_SHOT["gender"]["accuracy_by_group"]
REFERENCE_ROWS = (
    ("seed 000 §7.3: OpenAI CLIP zero-shot", {
        "macro_accuracy": references.SEED_000_ZERO_SHOT["gender"]["macro_accuracy"],
        "macro_f1": references.SEED_000_ZERO_SHOT["gender"]["macro_f1"],
        "di_gender": min(_SEED_GENDER.values()) / max(_SEED_GENDER.values())}),
    ("seed 000 §7.3: OpenAI CLIP race (5-way)", {
        "macro_accuracy": references.SEED_000_ZERO_SHOT["race"]["macro_accuracy"],
        "macro_f1": references.SEED_000_ZERO_SHOT["race"]["macro_f1"]}),
    ("seed 000 §8.3: subspace, α = 0.4", {
        "macro_accuracy": references.SEED_000_SUBSPACE["macro_accuracy"],
        "macro_f1": references.SEED_000_SUBSPACE["macro_f1"],
        "di_gender": references.SEED_000_SUBSPACE["disparate_impact"]}),
    ("seed 000 §8.2: fine-tuned, EO rule", {
        "macro_accuracy": references.SEED_000_FINETUNE["macro_accuracy"],
        "macro_f1": references.SEED_000_FINETUNE["macro_f1"],
        "di_gender": references.SEED_000_FINETUNE["selection_rate_ratio"]}),
) + tuple((f"seed 003: OpenAI CLIP {name}", {"accuracy": seed["accuracy_at_0.5"], "predicted_male": seed["predicted_male"],
                                             "true_male": seed["true_male"]})
          for name, seed in references.SEED_003_ZERO_SHOT.items())
COLUMNS = (("accuracy", "accuracy"), ("macro_accuracy", "macro acc."), ("macro_f1", "macro F1"),
           ("predicted_male", "male share (true)"), ("eo_gap_race", "EO gap race"), ("di_gender", "DI gender"))


def config_of(file: str, arg: str = ""):
  """``configs/<file>``'s ``get_config(arg)``."""
  return config_lib.load_config_module(os.path.join(CONFIGS, file)).get_config(arg)


def train(config, workdir: str, log=print, train_missing: bool = True):
  """Trains ``config`` in ``workdir`` (resuming; a finished run is kept) and returns its export; with
  ``train_missing`` False (an aggregation step), an unfinished run is not trained and None returned."""
  if loop.finished(workdir, config):
    log(f"{workdir}: finished run, not trained again")
  elif not train_missing:
    log(f"{workdir}: not finished, left out")
    return None
  else:
    log(f"training in {workdir}")
    loop.train_and_evaluate(config, workdir)
  export = os.path.join(workdir, loop.EXPORT_DIR)
  if not os.path.isdir(export):
    raise ValueError(f"{workdir} finished without exporting {loop.EXPORT_DIR}/; is its model a CLIP?")
  return export


def audit_export(checkpoint: str, config, output_dir: str, *, methods=checkpoint_audit.METHODS, smoke: bool = False,
                 log=print, **overrides) -> dict:
  """The audit of ``checkpoint`` on ``config``'s test split, debiasing fitted on its validation split;
  ``overrides`` are further ``checkpoint_audit.Options`` (``subspace_k``, ``embeddings_dir``, ...)."""
  options = checkpoint_audit.Options(
      checkpoint=checkpoint, output_dir=output_dir, data=config.data, split="test", fit_split="validation",
      methods=tuple(methods), prompt_sets=("seed003", "race") if smoke else checkpoint_audit.PROMPT_GROUPS,
      fit_per_group=16 if smoke else checkpoint_audit.Options.fit_per_group,
      retrieval_k=SMOKE_RETRIEVAL_K if smoke else RETRIEVAL_K, plots=not smoke,
      groupings=("race",) if smoke else zero_shot.GROUPINGS, **overrides)
  return checkpoint_audit.run(options, log=log)


def audit_zero_shot(checkpoint: str, config, output_dir: str, *, smoke: bool = False,
                    log=print) -> tuple[dict, list[dict], str]:
  """``OUT/audit`` (every prompt set and method) and ``OUT/audit_k1`` (both subspace methods with k = 1
  instead of the seed's ≈100 % of the variance, on ``OUT/audit``'s cached embeddings); returns the first
  summary, the table rows of both, and the note that says why there are two k's."""
  summary = audit_export(checkpoint, config, os.path.join(output_dir, "audit"), smoke=smoke, log=log)
  one = audit_export(checkpoint, config, os.path.join(output_dir, "audit_k1"), methods=checkpoint_audit.SUBSPACE_METHODS,
                     smoke=smoke, log=log, subspace_k=1,
                     embeddings_dir=os.path.join(output_dir, "audit", checkpoint_audit.CACHE_DIR))
  rows = zero_shot_rows(summary) + method_rows(summary) + method_rows(one, ", k = 1")
  return summary, rows, subspace_note(summary)


def subspace_note(summary: dict) -> str:
  """What the seed's variance rule kept, and what one component does instead."""
  fits = {m: summary["methods"][m]["fit"] for m in checkpoint_audit.SUBSPACE_METHODS if m in summary["methods"]}
  kept = ", ".join(f"{m}: k = {f['k']} of {f['dimension']}" for m, f in fits.items())
  return (f"Subspace rows: seed 000 §8.3 takes the fewest components explaining ≈100 % of the within-set "
          f"variance (99 % here; {kept}), and removing 40 % of each of dozens of components barely moves "
          "cosines. The `k = 1` rows remove 40 % of the first component only: with defining sets (one man "
          "and one woman per set) that is the gender direction; with the seed's sets (one per gender, each "
          "centred on its own mean) the gender difference is centred away before the PCA, and the first "
          "component is variation within the genders, not the direction between them.")


# -------------------------------------------------------------------------------------------- table


def _row(label: str, figures: dict, retrieval=None) -> dict:
  row = {"row": label}
  row.update({key: figures.get(key) for key, _ in COLUMNS if key != "di_gender"})
  row["true_male"] = figures.get("true_male")
  row["di_gender"] = figures.get("accuracy_ratio_gender", figures.get("di_gender"))
  row["retrieval"] = retrieval
  return row


def zero_shot_rows(summary: dict, prefix: str = "zero-shot") -> list[dict]:
  """The model as trained: every gender set at 0.5 (the ensemble with retrieval bias), and the race set."""
  none = summary["methods"]["none"]
  rows = [_row(f"{prefix}: {name}", figures, none["retrieval"] if name == "ensemble" else None)
          for name, figures in none["sets"].items() if name != "ensemble"]
  if "ensemble" in none["sets"]:
    rows.append(_row(f"{prefix}: ensemble", none["sets"]["ensemble"], none["retrieval"]))
  for name, race in none["race_sets"].items():
    rows.append(_row(f"{prefix}: {name} (5-way race)", race))
  return rows


def method_rows(summary: dict, suffix: str = "") -> list[dict]:
  """The headline set after each debiasing method (``suffix`` added to each label)."""
  rows = []
  for method, figures in summary["methods"].items():
    if method != "none":
      label = f"debiased: {checkpoint_audit_report.METHOD_TITLES[method]}{suffix}"
      rows.append(_row(label, figures["at_0.5"] or {}, figures["retrieval"]))
  return rows


def model_row(label: str, summary: dict) -> dict:
  """Another model's headline set as trained (a fine-tuned model)."""
  none = summary["methods"]["none"]
  return _row(label, none["at_0.5"], none["retrieval"])


def _fmt(value, pct=False) -> str:
  return markdown.number(value, 1, percent=True) if pct else markdown.number(value)


def _cells(row: dict, ks) -> list[str]:
  cells = []
  for key, _ in COLUMNS:
    if key == "predicted_male":
      male, true = row.get("predicted_male"), row.get("true_male")
      cells.append("—" if male is None and true is None else f"{_fmt(male, True)} ({_fmt(true, True)})")
    else:
      cells.append(_fmt(row.get(key)))
  for k in ks:
    for measure in ("max_skew", "ndkl"):
      values = []
      for attribute in ("gender", "race"):
        entry = (row.get("retrieval") or {}).get(attribute, {}).get(str(k))
        values.append(_fmt(entry[measure]) if entry and "skipped" not in entry else "—")
      cells.append(" / ".join(values) if any(v != "—" for v in values) else "—")
  return cells


def markdown_table(rows: list[dict], ks, references: bool = True) -> list[str]:
  header = ["model"] + [t for _, t in COLUMNS] + [f"{m}@{k} gender / race" for k in ks
                                                   for m in ("MaxSkew", "NDKL")]
  body = [[row["row"]] + _cells(row, ks) for row in rows]
  if references:
    body += [[f"*{label}*"] + _cells(_row(label, figures), ks) for label, figures in REFERENCE_ROWS]
  return markdown.table(header, body)


def write_results(rows: list[dict], output_dir: str, title: str, intro: list[str], ks, notes=()) -> str:
  """``results.md`` (the table and notes) and ``results.json`` (the rows); returns results.md's path."""
  lines = [f"# {title}", ""] + intro + [""] + markdown_table(rows, ks) + [""]
  lines += [
      "Columns: gender from zero-shot prompts, female if P(female) > 0.5. Male share: the share predicted "
      "male, the true share in brackets (seed 003's bias). EO gap race: max(TPR gap, FPR gap) between races, "
      "positive class female. DI gender: the seeds' reading, the smaller gender's accuracy over the larger's "
      "(seed 000 §7.3.2 calls each gender's share classified correctly its selection rate; §8.2 reports a "
      "selection-rate ratio). MaxSkew@k / NDKL: bias of text-to-image retrieval of 16 attribute-neutral "
      "queries (\"a photo of a kind person.\", ...) by gender / race against the gallery's own mix "
      "(Berg et al. 2022); 0 is no bias; the same for every prompt set of a model, so shown once.",
      "", "*Italic rows* are the seeds' numbers for OpenAI CLIP ViT-B/32 on UTKFace, which the models here "
      "are not: references, not targets.", ""] + list(notes)
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, "results.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(output_dir, "results.json"), "w") as f:
    json.dump({"rows": rows, "reference_rows": dict(REFERENCE_ROWS)}, f, indent=2, allow_nan=False)
    f.write("\n")
  return path
