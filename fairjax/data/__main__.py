r"""Describes a face data set: counts, distributions, skipped files and sample images.

  python -m fairjax.data --dataset=utkface|synthetic_faces|celeb_a|fairface [--manual_dir=DIR] \
      [--split=train] [--output_dir=OUT]

Writes OUT/stats.json (num_examples, skipped [{file, reason}], counts by gender, race, age band and
race x gender), distribution plots (PNG) and a grid of sample images (samples.png).
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from fairjax.data import datasets
from fairjax.data import describe

_DATASET = flags.DEFINE_string("dataset", "synthetic_faces", "Data set name.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder (or archive) of a manually downloaded set.")
_SPLIT = flags.DEFINE_string("split", "train", "Split to describe.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", None, "Synthetic faces: examples to draw.")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", 64, "UTKFace / FairFace: decode to this square size (native 200x200 needs 2.8 GB).")
_OUTPUT = flags.DEFINE_string("output_dir", None, "Folder for stats.json and the plots.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  options = {}
  if _MANUAL_DIR.value:
    options["manual_dir"] = _MANUAL_DIR.value
  if _DATASET.value in ("utkface", "fairface"):
    options["image_size"] = (_IMAGE_SIZE.value, _IMAGE_SIZE.value)
  if _NUM_EXAMPLES.value is not None:
    options["num_examples"] = _NUM_EXAMPLES.value
  try:
    split = datasets.load(_DATASET.value, _SPLIT.value, **options)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  stats = describe.dataset_stats(split.metadata, split.skipped)
  output = _OUTPUT.value or os.path.join("out", "data", _DATASET.value)
  os.makedirs(output, exist_ok=True)
  with open(os.path.join(output, "stats.json"), "w") as f:
    json.dump(stats, f, indent=2)
  describe.plot_distributions(stats, os.path.join(output, "distributions.png"), f"{_DATASET.value} / {_SPLIT.value}")
  describe.sample_grid(split.source, os.path.join(output, "samples.png"))
  print(f"{_DATASET.value}/{_SPLIT.value}: {stats['num_examples']} examples, {len(stats['skipped'])} skipped; "
        f"wrote stats.json, distributions.png, samples.png to {output}")
  for item in stats["skipped"]:
    print(f"  skipped {item['file']}: {item['reason']}")


if __name__ == "__main__":
  app.run(main)
