r"""The CLIP default end to end: a small CLIP trained from scratch on the synthetic faces, audited
zero-shot, debiased, fine-tuned (seed 000 §8.2, and with fairness constraints) and audited again.

  python -m experiments.clip_synthetic --output_dir=out/clip_synthetic [--smoke] [--launcher=slurm [--sbatch="..."]]

  OUT/pretrain/            ``configs/clip_synthetic.py`` (contrastive, from scratch), its export in
                           ``clip_checkpoint/``
  OUT/audit/               the CLIP audit command's work on that export (``python -m fairjax.clip``):
                           every prompt set on the test split, every debiasing method fitted on the
                           validation split, retrieval bias before and after
  OUT/audit_k1/            both subspace methods again with one component (k = 1), on OUT/audit's
                           cached embeddings
  OUT/finetune/            ``configs/seed000_clip_finetune.py`` from the export: prompt cross-entropy,
                           the checkpoint of lowest validation loss whose EO gap is below 0.1
  OUT/finetune_constrained/    its ``:constrained`` variant (equalized-odds rate constraints)
  OUT/finetune_audit/, OUT/finetune_constrained_audit/    zero-shot audits of the fine-tuned exports
  OUT/results.md, results.json    one table of all of them beside the seeds' numbers

Every run resumes from its workdir and a finished one is kept, so rerunning finishes what is missing
and redraws the table. ``--launcher=slurm`` trains the pretraining as one SLURM job, the fine-tunes as a
job array after it, and the audits and the table in a job after them (``experiments/launcher.py``). ``--smoke`` runs every config's smoke variant and audits two prompt groups
without plots: a check that the pipeline holds together; its numbers mean nothing.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from experiments import clip_runs
from experiments import launcher
from fairjax import cli
from fairjax import paths
from fairjax.train import loop

PRETRAIN = "clip_synthetic.py"
FINETUNE = "seed000_clip_finetune.py"
# (workdir, config argument, row label)
FINETUNES = (("finetune", "", "fine-tuned: §8.2 prompt CE, EO selection rule"),
             ("finetune_constrained", "constrained", "fine-tuned: + equalized-odds constraints"))



def finetune_config(arg: str, checkpoint: str, smoke: bool):
  """``configs/seed000_clip_finetune.py:arg`` starting from ``checkpoint`` (the pretrained export)."""
  words = ",".join(w for w in (arg, "smoke" if smoke else "") if w)
  config = clip_runs.config_of(FINETUNE, words)
  config.model.kwargs.checkpoint = checkpoint
  return config


def pretrain_config(smoke: bool):
  return clip_runs.config_of(PRETRAIN, "smoke" if smoke else "")


def export_of(output_dir: str) -> str:
  """Where the pretraining run exports the model the fine-tunes start from."""
  return os.path.join(output_dir, "pretrain", loop.EXPORT_DIR)


def train_one(task: str, output_dir: str, smoke: bool = False, log=print) -> None:
  """Trains one run (what one SLURM array task runs): 'pretrain', or a fine-tune of ``FINETUNES``."""
  if task == "pretrain":
    clip_runs.train(pretrain_config(smoke), os.path.join(output_dir, "pretrain"), log)
    return
  arg = {name: arg for name, arg, _ in FINETUNES}.get(task)
  if arg is None:
    raise ValueError(f"unknown task {task!r}; known: pretrain, {', '.join(n for n, _, _ in FINETUNES)}")
  if not loop.finished(os.path.join(output_dir, "pretrain"), pretrain_config(smoke)):
    raise ValueError(f"{task} starts from the pretraining run's export: train 'pretrain' first")
  clip_runs.train(finetune_config(arg, export_of(output_dir), smoke), os.path.join(output_dir, task), log)


def unfinished_stages(output_dir: str, smoke: bool = False) -> list[list[str]]:
  """The runs left to train, by stage: the pretraining, then the fine-tunes that start from its export."""
  pretrain = [] if loop.finished(os.path.join(output_dir, "pretrain"), pretrain_config(smoke)) else ["pretrain"]
  tunes = [name for name, arg, _ in FINETUNES
           if not loop.finished(os.path.join(output_dir, name), finetune_config(arg, export_of(output_dir), smoke))]
  return [pretrain, tunes]


def run(output_dir: str, smoke: bool = False, log=print, train_missing: bool = True) -> str:
  """Every step; returns the path of results.md. With ``train_missing`` False (the aggregation after a
  SLURM launch) only finished runs are audited and tabulated."""
  pretrain = pretrain_config(smoke)
  export = clip_runs.train(pretrain, os.path.join(output_dir, "pretrain"), log, train_missing)
  if export is None:
    raise ValueError(f"the pretraining run in {output_dir}/pretrain has not finished: nothing to audit")
  zero_shot, rows, subspace = clip_runs.audit_zero_shot(export, pretrain, output_dir, smoke=smoke, log=log)
  for name, arg, label in FINETUNES:
    config = finetune_config(arg, export, smoke)
    tuned = clip_runs.train(config, os.path.join(output_dir, name), log, train_missing)
    if tuned is None:
      continue
    summary = clip_runs.audit_export(tuned, config, os.path.join(output_dir, f"{name}_audit"), methods=("none",),
                                     smoke=smoke, log=log)
    rows.append(clip_runs.model_row(label, summary))
  ks = clip_runs.SMOKE_RETRIEVAL_K if smoke else clip_runs.RETRIEVAL_K
  intro = [
      f"A small CLIP trained contrastively from scratch on the synthetic faces' training split "
      f"(`configs/clip_synthetic.py`{', smoke: the numbers mean nothing' if smoke else ''}), audited zero-shot "
      f"on their balanced test split ({zero_shot['num_examples']} images); debiasing fitted on "
      f"{zero_shot['fit_images']} validation images and gendered text pairs; fine-tuned with "
      "`configs/seed000_clip_finetune.py` from the same export. It is not OpenAI CLIP: 64x64 drawings "
      "with template captions that name gender, race and age.",
      "", "Details: [audit/report.md](audit/report.md) (every method at 0.5 and at the best threshold, "
      "retrieval at every k, the fits), [finetune_audit/report.md](finetune_audit/report.md), "
      "[finetune_constrained_audit/report.md](finetune_constrained_audit/report.md), and each run's "
      "`report/report.md`."]
  notes = [subspace]
  return clip_runs.write_results(rows, output_dir, "Synthetic faces: CLIP from scratch, zero-shot, debiased, "
                                 "fine-tuned", intro, ks, notes)


FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.output_dir:
    raise app.UsageError("--output_dir is required")
  if not FLAGS["verbosity"].present:  # orbax and CLU log every save at INFO
    logging.set_verbosity(logging.WARNING)
  output_dir = paths.resolve_str(FLAGS.output_dir)
  if FLAGS.task is not None:  # one task of a SLURM array: its run only
    train_one(FLAGS.task, output_dir, FLAGS.smoke)
    return
  if FLAGS.launcher == "slurm" and not FLAGS.aggregate_only:
    stages = unfinished_stages(output_dir, FLAGS.smoke)
    if any(stages):
      launcher.submit_slurm(output_dir, "clip_synthetic", stages,
                            launcher.rerun_command(sys.argv, "experiments.clip_synthetic"), FLAGS.sbatch)
      return
  print(f"results: {run(output_dir, FLAGS.smoke, train_missing=not FLAGS.aggregate_only)}")


def define_flags():
  """The command line, defined only when run as a script (modules that define the same flag cannot be
  imported together, e.g. by pytest)."""
  flags.DEFINE_string("output_dir", None, "Folder for the runs, audits and table.")
  flags.DEFINE_bool("smoke", False, "Smoke variants of every config (seconds); numbers mean nothing.")
  launcher.define_flags()


if __name__ == "__main__":
  define_flags()
  cli.run(main)
