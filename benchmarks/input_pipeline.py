r"""Images/second of the input pipeline on this machine: decoding, then batching with resizing.

  python benchmarks/input_pipeline.py [--manual_dir=../shared/data] [--batches=60]

Decodes UTKFace from its archive into memory (timed), then times ``pipeline.train_batches`` over the
decoded source at the seeds' image sizes (64x64 RGB, 100x100 grayscale for seed 000 §6.3, ...). Without
the archive it runs on the synthetic faces, drawing included.
"""

import os
import time

from absl import app
from absl import flags
from absl import logging

from fairjax.data import datasets
from fairjax.data import pipeline

_MANUAL_DIR = flags.DEFINE_string("manual_dir", "../shared/data", "Folder holding UTKFace.tar.gz.")
_BATCHES = flags.DEFINE_integer("batches", 60, "Batches of 128 timed per setting.")
_THREADS = flags.DEFINE_integer("threads", 2, "grain reader threads.")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  start = time.perf_counter()
  if os.path.exists(os.path.join(_MANUAL_DIR.value, "UTKFace.tar.gz")):
    split = datasets.load("utkface", "train", manual_dir=_MANUAL_DIR.value)
  else:
    split = datasets.load("synthetic_faces", "train", num_examples=128 * (_BATCHES.value + 1))
    for i in range(len(split.source)):  # draw everything now, so that the timing below is the pipeline's
      split.source[i]
  seconds = time.perf_counter() - start
  print(f"{split.name}: decoded {len(split.source)} images in {seconds:.1f} s "
        f"({len(split.source) / seconds:.0f} images/s)")
  for size, gray in (((64, 64), False), ((64, 64), True), ((100, 100), False), ((100, 100), True)):
    batches = pipeline.train_batches(split.source, global_batch_size=128, seed=0, num_epochs=1,
                                     preprocess=pipeline.Preprocess(size, grayscale=gray),
                                     num_threads=_THREADS.value)
    next(batches)  # start-up
    start, count = time.perf_counter(), 0
    for batch in batches:
      count += len(batch["image"])
      if count >= 128 * _BATCHES.value:
        break
    print(f"  batches at {size[0]}x{size[1]} {'gray' if gray else 'RGB'}: "
          f"{count / (time.perf_counter() - start):7.0f} images/s")


if __name__ == "__main__":
  app.run(main)
