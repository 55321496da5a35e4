r"""Images/second of the input pipeline on this machine: decoding, batching with resizing, augmentation.

  python benchmarks/input_pipeline.py [--manual_dir=../shared/data] [--batches=60]

Times the metadata scan of UTKFace's archive (file names only; a unit test once asserted it under 10 s),
decodes the archive into memory (timed without ``decoded_cache``, so the figure is decoding, whatever a
user's cache holds), times writing that source into an empty ``decoded_cache`` and reading it back (what
every later run pays instead of the decode), then times ``pipeline.train_batches`` over the
decoded source at the seeds' image sizes (64x64 RGB, 100x100 grayscale for seed 000 §6.3, ...), and
then the same batches followed by the training step's JAX augmentation (``augment.train_images``), run
one after the other as a train step would see them, at two strengths:

  seed 000 §6.1.2  the configs' training augmentation: flips and shifts of up to a tenth of the side
  every transform  flip, shift, rotation, blur and noise on every image, and half of the rows treated
                   as rebalancing copies (which take rotation, blur and noise once more): the most a
                   config can ask for

Without the archive it runs on the synthetic faces, drawing included.
"""

import os
import functools
import tempfile
import time

from absl import flags
from absl import logging
import jax
import numpy as np

from fairjax import cli
from fairjax.data import augment
from fairjax.data import datasets
from fairjax.data import decoded_cache
from fairjax.data import experiment
from fairjax.data import pipeline
from fairjax.data import utkface

_MANUAL_DIR = flags.DEFINE_string("manual_dir", "../shared/data", "Folder holding UTKFace.tar.gz.")
_BATCHES = flags.DEFINE_integer("batches", 60, "Batches of 128 timed per setting.")
_THREADS = flags.DEFINE_integer("threads", 2, "grain reader threads.")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  archive = os.path.join(_MANUAL_DIR.value, utkface.ARCHIVE_NAME)
  if os.path.exists(archive):
    start = time.perf_counter()
    frame, skipped = utkface.scan_metadata(archive)
    print(f"utkface: metadata scan of {len(frame) + len(skipped)} names in {time.perf_counter() - start:.1f} s")
  os.environ[decoded_cache.ENVIRONMENT] = decoded_cache.OFF
  start = time.perf_counter()
  if os.path.exists(archive):
    split = datasets.load("utkface", "train", manual_dir=_MANUAL_DIR.value)
  else:
    split = datasets.load("synthetic_faces", "train", num_examples=128 * (_BATCHES.value + 1))
    for i in range(len(split.source)):  # draw everything now, so that the timing below is the pipeline's
      split.source[i]
  seconds = time.perf_counter() - start
  print(f"{split.name}: decoded {len(split.source)} images in {seconds:.1f} s "
        f"({len(split.source) / seconds:.0f} images/s)")
  if split.name == "utkface":
    _time_the_cache(archive, split.source)
  seed_config, full_config = experiment.default_config(), experiment.default_config()
  full_config.augment.update(flip=True, shift=0.1, rotation=10.0, blur_sigma=1.0, noise_std=0.02)
  settings = (("", None, False),
              (" + seed 000 §6.1.2 augmentation", seed_config, False),
              (" + every transform, half copies", full_config, True))
  for size, gray in (((64, 64), False), ((64, 64), True), ((100, 100), False), ((100, 100), True)):
    for label, data_config, copies in settings:
      augment_fn = data_config and jax.jit(functools.partial(augment.train_images, data_config=data_config))
      rate = _images_per_second(split.source, pipeline.Preprocess(size, grayscale=gray), augment_fn, copies)
      print(f"  batches at {size[0]}x{size[1]} {'gray' if gray else 'RGB '}{label}: {rate:7.0f} images/s")


def _time_the_cache(archive: str, source: utkface.DecodedSource):
  """Seconds to write ``source`` into an empty decoded_cache and to read it back, as utkface.load does."""
  decoded = source.images, source.metadata, source.skipped
  with tempfile.TemporaryDirectory() as root:
    for what in ("written to", "read from"):
      start = time.perf_counter()
      images = decoded_cache.load("utkface", archive, {"image_size": None}, lambda: decoded, root=root)[0]
      print(f"  {len(images)} images ({images.nbytes / 2**20:.0f} MiB) {what} the decoded cache in "
            f"{time.perf_counter() - start:.1f} s")
      del images


def _images_per_second(source, preprocess, augment_fn, copies: bool) -> float:
  batches = pipeline.train_batches(source, global_batch_size=128, seed=0, num_epochs=1,
                                   preprocess=preprocess, num_threads=_THREADS.value)
  key = jax.random.PRNGKey(0)
  def consume(batch):
    if augment_fn is not None:
      if copies:
        batch["augment_seed"] = np.where(np.arange(len(batch["index"])) % 2, batch["index"], -1).astype(np.int32)
      augment_fn(batch, key).block_until_ready()
  consume(next(batches))  # start-up and compilation
  start, count = time.perf_counter(), 0
  for batch in batches:
    consume(batch)
    count += len(batch["image"])
    if count >= 128 * _BATCHES.value:
      break
  return count / (time.perf_counter() - start)


if __name__ == "__main__":
  cli.run(main)
