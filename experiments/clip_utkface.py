r"""A small CLIP trained contrastively from scratch on UTKFace's training split, audited zero-shot on its
test split, and debiased.

  python -m experiments.clip_utkface --manual_dir=../shared/data --output_dir=out/clip_utkface [--smoke]

UTKFace comes from ``--manual_dir`` or else ``$FAIRJAX_UTKFACE`` (the folder holding UTKFace.tar.gz, the
archive itself, or the extracted UTKFace/ folder); without it the script says so and exits 0.

  OUT/pretrain/   ``configs/clip_utkface.py``: UTKFace cut as the experiments cut it (72 / 8 / 20,
                  stratified), each image captioned from its labels, CLIP trained from scratch on the
                  training part; its export in ``clip_checkpoint/``
  OUT/audit/      the CLIP audit command's work on the export: every prompt set on the test part,
                  every debiasing method fitted on the validation part, retrieval bias before and after.
                  Images are decoded as the run decoded them (its ``data.image_size``), so the audit
                  sees the distribution the model was trained on
  OUT/audit_k1/   both subspace methods again with one component (k = 1), on OUT/audit's embeddings
  OUT/results.md, results.json    the table beside the seeds' numbers

Runs resume and a finished one is kept. ``--smoke`` is the config's smoke variant: its numbers mean
nothing.
"""

import os

from absl import app
from absl import flags
from absl import logging

from experiments import clip_runs
from fairjax import cli
from fairjax import paths
from fairjax.data import utkface

CONFIG = "clip_utkface.py"
ENVIRONMENT = "FAIRJAX_UTKFACE"



def find_utkface(manual_dir=None):
  """``(path, None)`` of UTKFace, or ``(None, why not)``."""
  manual_dir = manual_dir or os.environ.get(ENVIRONMENT)
  if not manual_dir:
    return None, f"no UTKFace: pass --manual_dir or set ${ENVIRONMENT}"
  try:
    utkface.find_source(manual_dir)
  except FileNotFoundError as e:
    return None, str(e)
  return paths.resolve_str(manual_dir), None


def run(manual_dir: str, output_dir: str, smoke: bool = False, log=print) -> str:
  config = clip_runs.config_of(CONFIG, "smoke" if smoke else "")
  config.data.manual_dir = manual_dir
  export = clip_runs.train(config, os.path.join(output_dir, "pretrain"), log)
  summary, rows, subspace = clip_runs.audit_zero_shot(export, config, output_dir, smoke=smoke, log=log)
  intro = [
      f"A small CLIP trained contrastively from scratch on UTKFace's training part (`configs/clip_utkface.py`"
      f"{', smoke: the numbers mean nothing' if smoke else ''}; captions from each image's labels), audited "
      f"zero-shot on the test part ({summary['num_examples']} images, never trained on); debiasing fitted on "
      f"{summary['fit_images']} validation images and gendered text pairs. It is not OpenAI CLIP: it has "
      "seen only UTKFace's training faces, with captions that name gender, race and age.", "",
      "Details: [audit/report.md](audit/report.md) and `pretrain/report/report.md`."]
  ks = clip_runs.SMOKE_RETRIEVAL_K if smoke else clip_runs.RETRIEVAL_K
  return clip_runs.write_results(rows, output_dir, "UTKFace: CLIP from scratch, zero-shot and debiased", intro, ks,
                                 [subspace])


FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  manual_dir, why = find_utkface(FLAGS.manual_dir)
  if manual_dir is None:
    raise FileNotFoundError(why)
  print(f"results: {run(manual_dir, paths.resolve_str(FLAGS.output_dir), FLAGS.smoke)}")


def define_flags():
  """The command line, defined only when run as a script (modules that define the same flag cannot be
  imported together, e.g. by pytest)."""
  flags.DEFINE_string("manual_dir", None, f"UTKFace's folder or archive (default ${ENVIRONMENT}).")
  flags.DEFINE_string("output_dir", None, "Folder for the run, audit and table.")
  flags.DEFINE_bool("smoke", False, "The config's smoke variant (seconds); numbers mean nothing.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
