r"""Every mitigation side by side on one task, with intervals: what a researcher compares before choosing.

  python -m experiments.mitigation_benchmark --task=default [--seeds=3] [--methods=standard,constrained]
  python -m experiments.mitigation_benchmark --task=utkface_gender --manual_dir=../shared/data --seeds=1 \
      --methods=standard,reweighing,constrained,grl,postprocess

Each method is a run of the task's config with objective terms added (``standard``, ``reweighing``,
``balanced_weights``, ``constrained``, ``gap_penalty``, ``mindiff``, ``grl``, ``jlu``, ``group_dro`` and the
combinations ``balanced+constrained``, ``grl+constrained``) or a training-split treatment (``oversampled``:
every race up-sampled towards the largest, at most four times its size, ``oversample_groups``;
``oversampled_full``: all the way, ``configs/default_fair.py``'s training), or a treatment of a finished
run after training: ``postprocess`` (group thresholds fitted on validation, ``fairjax.postprocess``),
``balanced+postprocess``, ``group_dro+postprocess``, ``oversampled+postprocess``,
``oversampled_full+postprocess``, and ``leace`` (race erased from the embedding with LEACE fitted on
validation, the task head refitted on the erased validation embeddings, ``fairjax.erasure``). Every run
lives in ``OUT/<task>/<run>/seed<k>`` (``config.seed = k``) and a finished one is reused, so rerunning the
command only trains what is missing.

What is measured, on the test split, for the primary head by the primary grouping (gender by race):
accuracy, worst-group accuracy, the equalized-odds and demographic-parity gaps (of the decisions; of
the expected decisions for a randomised post-processing rule), and race leakage from the embedding: a
linear and an MLP probe fitted on validation embeddings and scored on test ones, as accuracy above the
majority rate (``fairjax.erasure.probes``). Intervals are 95 % percentile intervals of a two-level
bootstrap: seeds drawn with replacement, then test rows within each drawn seed (so with one seed they
are the rows' bootstrap alone); leakage, which a bootstrap would have to refit, gets the seeds' spread
only (none with one seed).

Writes ``OUT/<task>/benchmark.md`` and ``.csv`` (one row per method) and ``benchmark.png``: accuracy
against the equalized-odds gap for every method, with the standard model's oracle frontier (group
thresholds solved on the test labels, ``fairjax.metrics.frontier``) and its validation-fitted
post-processing frontier (``fairjax.postprocess.thresholds.frontier``, fitted on validation and judged
on test, with intervals) drawn in.
"""

import json
import sys
import time

from absl import flags
from absl import logging

from experiments import mitigations
from fairjax import cli

_TASK = flags.DEFINE_enum("task", "default", list(mitigations.TASKS), "Which task to benchmark.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Runs per method (config.seed 0, 1, ...).")
_METHODS = flags.DEFINE_list("methods", None, "Methods to run (default: all); see the module docstring.")
_OUTPUT = flags.DEFINE_string("output_dir", "out/mitigation_benchmark", "Folder of the runs and results.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder holding UTKFace.tar.gz (utkface_gender).")
_EPSILON = flags.DEFINE_float("epsilon", 0.0, "Equalized-odds bound of the post-processing methods.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny runs (the configs' 'smoke'), for tests.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "utkface_gender's input size (the seed's 128 on an "
                                   "accelerator; 64 on a CPU).")
_EPOCHS = flags.DEFINE_integer("num_epochs", 0, "Override of the task config's epochs (0: the config's).")
_RESAMPLES = flags.DEFINE_integer("num_resamples", mitigations.NUM_RESAMPLES,
                                  "Bootstrap resamples of the intervals.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  started = time.time()
  methods = _METHODS.value or list(mitigations.METHODS)
  results, curves, folder = mitigations.benchmark(
      _TASK.value, _SEEDS.value, methods, _OUTPUT.value, manual_dir=_MANUAL_DIR.value, epsilon=_EPSILON.value,
      smoke=_SMOKE.value, image_size=_IMAGE_SIZE.value, num_epochs=_EPOCHS.value, num_resamples=_RESAMPLES.value)
  command = "python -m experiments.mitigation_benchmark " + " ".join(sys.argv[1:])
  names = mitigations.write_outputs(folder, _TASK.value, results, curves, command, time.time() - started)
  print(f"wrote {', '.join(names)} to {folder}")
  shown = mitigations.FIGURES + mitigations.LEAKAGE
  print(json.dumps({name: {k: round(row[k], 4) for k in shown} for name, row in results.items()}, indent=1))


if __name__ == "__main__":
  cli.run(main)
