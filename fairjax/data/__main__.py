r"""Describes a face data set, or what a treatment makes of it: counts, distributions, sample images.

  python -m fairjax.data --dataset=utkface|synthetic_faces|celeb_a|fairface [--manual_dir=DIR] \
      [--split=train|validation|test|OD|BD|BD_complement|EBD] [--rebalance=age_first|race_first] \
      [--output_dir=OUT]

Writes OUT/stats.json (num_examples, skipped [{file, reason}], counts by gender, race, age band and
race x gender), distribution plots (distributions.png) and a grid of sample images (samples.png).

``--split=OD|BD|BD_complement|EBD`` takes seed 004's bias split of the data set's training split, and
``--rebalance`` applies seed 000 §3.3's rebalancing (after the bias split, if both are given). Then the
statistics describe the treated plan, and the command also writes the untreated split's statistics
(stats_before.json, distributions_before.png) and seed 000 §3.2's comparison of the two
(comparison.csv, comparison.md, comparison.png); samples.png then pairs originals with the augmented
copies that training would draw (the on-device copy augmentation, run here on the CPU).
"""

import json
import os
import sys

from absl import flags
from absl import logging
import jax.numpy as jnp

from fairjax import cli
from fairjax import paths
from fairjax.data import augment
from fairjax.data import datasets
from fairjax.data import describe
from fairjax.data import plans
from fairjax.data import rebalance
from fairjax.data import treatments

BIAS_SPLITS = ("OD", "BD", "BD_complement", "EBD")

_DATASET = flags.DEFINE_string("dataset", "synthetic_faces", "Data set name.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder (or archive) of a manually downloaded set.")
_SPLIT = flags.DEFINE_string(
    "split", "train", "Split to describe: the data set's own (train, validation, test) or one of seed 004's "
    f"bias splits of its training split ({', '.join(BIAS_SPLITS)}).")
_REBALANCE = flags.DEFINE_enum(
    "rebalance", None, list(rebalance.STRATEGIES), "Seed 000 §3.3 rebalancing strategy to apply.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the treatments' random choices and of the sample grid.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", None, "Synthetic faces: examples to draw.")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 64, "UTKFace / FairFace: decode to this square size (native 200x200 needs 2.8 GB).")
_OUTPUT = flags.DEFINE_string("output_dir", None, "Folder for stats.json and the plots.")


def _write_json(stats: dict, path: str) -> None:
  with open(path, "w") as f:
    json.dump(stats, f, indent=2)


def _copy_images(images, seeds):
  """The training copies' pictures, in [0, 1]: the default copy augmentation of ``augment.py``."""
  return augment.augment_copies(jnp.asarray(images, jnp.float32) / 255.0, seeds, augment.default_config())


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  options = {}
  if _MANUAL_DIR.value:
    options["manual_dir"] = paths.resolve_str(_MANUAL_DIR.value)
  if _DATASET.value in ("utkface", "fairface"):
    options["image_size"] = (_IMAGE_SIZE.value, _IMAGE_SIZE.value)
  if _NUM_EXAMPLES.value is not None:
    options["num_examples"] = _NUM_EXAMPLES.value
  bias = _SPLIT.value in BIAS_SPLITS
  steps = [f"seed 004 {_SPLIT.value}"] if bias else []
  steps += [f"rebalance {_REBALANCE.value}"] if _REBALANCE.value else []
  try:
    split = datasets.load(_DATASET.value, "train" if bias else _SPLIT.value, **options)
    plan = plans.as_plan(split.metadata)
    if bias:
      plan = treatments.bias_splits(plan, _SEED.value)[_SPLIT.value]
    if _REBALANCE.value:
      plan = treatments.rebalance(plan, _REBALANCE.value, _SEED.value)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  name = f"{_DATASET.value} / {split.split}"
  output = paths.resolve_str(_OUTPUT.value or os.path.join("out", "data", _DATASET.value))
  os.makedirs(output, exist_ok=True)
  stats = describe.dataset_stats(plan, split.skipped)
  _write_json(stats, os.path.join(output, "stats.json"))
  written = ["stats.json", "distributions.png", "samples.png"]
  describe.plot_distributions(stats, os.path.join(output, "distributions.png"), " + ".join([name] + steps))
  if steps:
    before = describe.dataset_stats(split.metadata, split.skipped)
    _write_json(before, os.path.join(output, "stats_before.json"))
    describe.plot_distributions(before, os.path.join(output, "distributions_before.png"), name)
    table = describe.comparison_table(before, stats)
    table.to_csv(os.path.join(output, "comparison.csv"), index=False)
    with open(os.path.join(output, "comparison.md"), "w") as f:
      f.write(f"# {name}: before and after {' + '.join(steps)}\n\n" + describe.markdown_table(table))
    describe.plot_comparison(before, stats, os.path.join(output, "comparison.png"),
                             f"{name}: before (grey) and after (blue) {' + '.join(steps)}")
    describe.plan_sample_grid(split.source, plan, _copy_images, os.path.join(output, "samples.png"),
                              seed=_SEED.value)
    written += ["stats_before.json", "distributions_before.png", "comparison.csv", "comparison.md", "comparison.png"]
  else:
    describe.sample_grid(split.source, os.path.join(output, "samples.png"), seed=_SEED.value)
  print(f"{' + '.join([name] + steps)}: {stats['num_examples']} examples "
        f"({stats['augmented_copies']} augmented copies), {len(stats['skipped'])} skipped; "
        f"wrote {', '.join(written)} to {output}")
  for item in stats["skipped"]:
    print(f"  skipped {item['file']}: {item['reason']}")


if __name__ == "__main__":
  cli.run(main)
