r"""Audits a CLIP checkpoint zero-shot on a face data set, before and after debiasing.

  python -m fairjax.clip --checkpoint=DIR --dataset=synthetic_faces|utkface|fairface [--manual_dir=...] \
      [--split=test] [--num_examples=N] [--prompt_sets=seed003,templated,race] \
      [--debias=none,subspace,subspace_seed,prompt_projection,calibrated] [--fit_split=validation] \
      [--alpha=0.4] [--retrieval_k=10,100] --output_dir=OUT

DIR is a Hugging Face CLIP folder (config.json, model.safetensors, tokenizer and
preprocessor_config.json). Writes OUT/<method>/ (the zero-shot audit's files, retrieval.json,
debias.json), OUT/report.md and OUT/summary.json comparing the methods beside the seeds' numbers, and
caches the image embeddings in OUT/embeddings/ so that a rerun does not encode again. Bad input (missing
checkpoint files, a data set without gender labels, an empty split, a fit split with one gender) ends
with one line ``error: ...`` and exit status 1. ``fairjax.clip.checkpoint_audit`` is the same, importable.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from fairjax import cli
from fairjax import paths
from fairjax.clip import checkpoint_audit
from fairjax.clip import checkpoint_audit_report

_D = checkpoint_audit.Options
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Hugging Face CLIP folder to audit.")
_DATASET = flags.DEFINE_enum("dataset", _D.dataset, list(checkpoint_audit.DATASETS), "Face data set.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder of utkface / fairface's downloaded files.")
_SPLIT = flags.DEFINE_string("split", _D.split, "Split to audit (UTKFace: the experiments' holdout cut).")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", None, "Audit this many images of the split (default all).")
_PROMPT_SETS = flags.DEFINE_list("prompt_sets", list(_D.prompt_sets),
                                 "Prompt set groups: seed003 (bare word pairs), templated, race.")
_DEBIAS = flags.DEFINE_list("debias", list(_D.methods), "Debiasing methods: " + ", ".join(checkpoint_audit.METHODS) + ".")
_FIT_SPLIT = flags.DEFINE_string("fit_split", _D.fit_split, "Split the subspace methods are fitted on.")
_FIT_PER_GROUP = flags.DEFINE_integer("fit_per_group", _D.fit_per_group,
                                      "Images of each gender to fit on (seed 000 §8.3: 200).")
_ALPHA = flags.DEFINE_float("alpha", _D.alpha, "Fraction of the subspace removed (seed 000 §8.3: 0.4).")
_VARIANCE = flags.DEFINE_float("subspace_variance", _D.variance,
                               "k: fewest components reaching this share of the variance.")
_K = flags.DEFINE_integer("subspace_k", None, "A fixed k instead of --subspace_variance.")
_LAMBDA = flags.DEFINE_float("lam", _D.lam, "λ of the calibrated projection (Chuang et al.: 1000).")
_RETRIEVAL_K = flags.DEFINE_list("retrieval_k", [str(k) for k in _D.retrieval_k], "k of MaxSkew@k / NDKL.")
_DESIRED = flags.DEFINE_enum("retrieval_desired", _D.retrieval_desired, list(checkpoint_audit.DESIRED),
                             "Group mix a fair top k should have: the gallery's own, or uniform.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 0, "Side utkface / fairface are decoded at before the "
                                   "checkpoint's processor; 0: their own (200 / 224).")
_BATCH = flags.DEFINE_integer("batch_size", _D.batch_size, "Images per encoding batch.")
_N_BOOT = flags.DEFINE_integer("n_boot", 0, "Bootstrap resamples for the group reports' intervals.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the fit images, subsampling and image pairs.")
_HEADLINE = flags.DEFINE_string("headline_set", None, "Gender set of report.md (default: the ensemble).")
_GROUPINGS = flags.DEFINE_list("groupings", list(_D.groupings),
                               "Group reports of every set: race (always), gender, race_x_gender.")
_EMBEDDINGS = flags.DEFINE_string("embeddings_dir", None, "Embedding cache (default OUT/embeddings); another "
                                  "run's, to audit other settings without encoding again.")
_PLOTS = flags.DEFINE_bool("plots", True, "Each method's figures (threshold sweeps, confusion by race).")
_OUTPUT = flags.DEFINE_string("output_dir", None, "Folder for the report.")


def _optional_path(value):
  """A path flag made absolute where it enters (``fairjax.paths``); unset stays unset."""
  return paths.resolve_str(value) if value else value


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  try:
    if not _CHECKPOINT.value:
      raise checkpoint_audit.CLIPAuditError("--checkpoint is required")
    options = checkpoint_audit.Options(
        checkpoint=_optional_path(_CHECKPOINT.value), output_dir=_optional_path(_OUTPUT.value), dataset=_DATASET.value,
        manual_dir=_optional_path(_MANUAL_DIR.value), split=_SPLIT.value, num_examples=_NUM_EXAMPLES.value,
        prompt_sets=tuple(_PROMPT_SETS.value), methods=tuple(_DEBIAS.value), fit_split=_FIT_SPLIT.value,
        fit_per_group=_FIT_PER_GROUP.value, alpha=_ALPHA.value, variance=_VARIANCE.value,
        subspace_k=_K.value, lam=_LAMBDA.value, retrieval_k=tuple(_RETRIEVAL_K.value),
        retrieval_desired=_DESIRED.value, image_size=_IMAGE_SIZE.value, batch_size=_BATCH.value,
        num_resamples=_N_BOOT.value, seed=_SEED.value, headline=_HEADLINE.value,
        plots=_PLOTS.value, groupings=tuple(_GROUPINGS.value),
        embeddings_dir=_optional_path(_EMBEDDINGS.value))
    summary = checkpoint_audit.run(options)
  except checkpoint_audit.CLIPAuditError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"audited {summary['num_examples']} images of {summary['dataset']} {summary['split']}; "
        f"{summary['headline_set']} at 0.5:")
  for method, figures in summary["methods"].items():
    point = figures["at_0.5"]
    if point is None:
      print(f"  {method:18s} left out ({figures['left_out']})")
      continue
    gender = figures["retrieval"]["gender"]
    k = next((k for k in gender if "skipped" not in gender[k]), None)
    skew = f", MaxSkew@{k} gender {gender[k]['max_skew']:.3f}" if k else ""
    print(f"  {method:18s} accuracy {checkpoint_audit_report.fmt(point['accuracy'])}, macro F1 "
          f"{checkpoint_audit_report.fmt(point['macro_f1'])}, male {checkpoint_audit_report.fmt(point['predicted_male'], True)} "
          f"(true {checkpoint_audit_report.fmt(point['true_male'], True)}), EO gap race "
          f"{checkpoint_audit_report.fmt(point['eo_gap_race'])}{skew}")
  print(f"report: {_OUTPUT.value}/report.md")


if __name__ == "__main__":
  cli.run(main)
