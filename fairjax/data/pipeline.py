"""The input pipeline: host-sharded, device-batched, deterministic and resumable, on grain.

A source is any random-access sequence of schema records (``len(source)``, ``source[i]``): the direct
UTKFace reader's decoded cache, a TFDS array_record data source, or the synthetic faces, which draw
example i on demand. Optionally a *plan* (a treatment's output: rows naming a ``source_index``, an
``augment_seed`` and optionally an example ``weight``) says which records to use, how often, which
copies to augment and how much each counts in the loss. A plan row whose label column (age, gender,
race) is -1 hides that label of its record: the batch carries -1 (unknown) there, so every loss skips
it, and so do the fields derived from it (``labels.DERIVED``, targets that combine labels, such as
seed 002's multi-hot Man / Woman / Boy / Girl; every example carries them). That is how a split trains
one head on some rows and another on others (seed 004's separate age and gender data sets,
``experiment``'s 'bias' scheme with ``side_size``).

Order. The global order is a grain shuffle of the plan's rows, reshuffled each epoch, from one seed.
Global batch b is positions [b*B, (b+1)*B) of that order; process p of P takes its contiguous slice
[b*B + p*B/P, b*B + (p+1)*B/P). So the union of the hosts' batches at step b is the single-host batch
b, whatever P is, and a run's data depend only on (seed, batch index): resuming at batch b is slicing
the batch sequence at b, and the checkpoint needs to store nothing but b.

Work. Decoding, resizing and grayscale conversion run in grain's reader threads, off the training
thread; random augmentation (and the augmented copies that rebalancing asks for) runs on the
accelerator inside the jitted step, keyed by the step and the copy's seed (``augment.py``), so it is
as deterministic as the order.

Text. Given ``text`` (``(record, source_index) -> fields``, e.g. ``captions.CaptionTokens``), the reader
threads also turn each example's caption into CLIP token ids: batches then carry ``input_ids`` and
``attention_mask`` (``TEXT_FIELDS``), which contrastive objectives read. Without it batches hold no text.
"""

import dataclasses
from typing import Any, Callable, Iterator, Optional, Sequence

import grain
import numpy as np
from PIL import Image

from fairjax.data import captions
from fairjax.data import labels as labels_lib

# Fields of a batch, besides `image`. The labels' derived fields follow them (`labels.DERIVED`). `mask`
# is False on the padding rows of a last eval batch; `weight` is the plan row's example weight (1.0
# unless a treatment such as `reweigh` set one; 0.0 on padding).
LABEL_FIELDS = ("age", "gender", "race")
BATCH_FIELDS = (("image",) + LABEL_FIELDS + tuple(labels_lib.DERIVED)
                + ("augment_seed", "index", "mask", "weight"))
TEXT_FIELDS = captions.TEXT_FIELDS  # input_ids, attention_mask: with a ``text`` stage only


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Host-side, deterministic preprocessing: what must happen before images can be batched."""

  image_size: tuple[int, int] = (64, 64)
  grayscale: bool = False  # seed 000 §6.3 trains on 100x100 grayscale

  def __call__(self, image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
      image = image[..., None]
    if image.shape[-1] == 1 and not self.grayscale:
      image = np.repeat(image, 3, axis=-1)
    pil = Image.fromarray(image if image.shape[-1] == 3 else image[..., 0])
    if self.grayscale:
      pil = pil.convert("L")
    if pil.size != (self.image_size[1], self.image_size[0]):
      pil = pil.resize((self.image_size[1], self.image_size[0]), Image.BILINEAR)
    out = np.asarray(pil, np.uint8)
    return out[..., None] if out.ndim == 2 else out


def _plan_arrays(num_records: int, plan) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Source index, augment seed, example weight and hidden labels (``[rows, len(LABEL_FIELDS)]``, True
  where the plan's label is -1) of every plan row (every record, none hidden, without a plan)."""
  if plan is None:
    return (np.arange(num_records, dtype=np.int64), np.full(num_records, -1, np.int32),
            np.ones(num_records, np.float32), np.zeros((num_records, len(LABEL_FIELDS)), bool))
  source_index = np.asarray(plan["source_index"], np.int64)
  if len(source_index) and (source_index.min() < 0 or source_index.max() >= num_records):
    raise ValueError(f"plan refers to records outside the source's {num_records}")
  num_rows = len(source_index)
  seeds = (np.asarray(plan["augment_seed"], np.int32) if "augment_seed" in plan
           else np.full(num_rows, -1, np.int32))
  weights = np.asarray(plan["weight"], np.float32) if "weight" in plan else np.ones(num_rows, np.float32)
  hidden = np.stack([np.asarray(plan[f]) < 0 if f in plan else np.zeros(num_rows, bool) for f in LABEL_FIELDS], -1)
  return source_index, seeds, weights, hidden


class _Loader:
  """Plan row → example dict with a preprocessed image (run in grain's reader threads)."""

  def __init__(self, source, plan_arrays, preprocess, text=None):
    self.source = source
    self.source_index, self.augment_seeds, self.weights, self.hidden = plan_arrays
    self.preprocess, self.text = preprocess, text

  def __call__(self, row: int) -> dict:
    if row < 0:  # padding of a last eval batch
      return self.pad
    index = int(self.source_index[row])
    record = self.source[index]
    example = {"image": self.preprocess(np.asarray(record["image"]))}
    for field, hidden in zip(LABEL_FIELDS, self.hidden[row]):
      example[field] = np.int32(-1 if hidden else record.get(field, -1))
    for field, derive in labels_lib.DERIVED.items():
      example[field] = derive(example)
    example["augment_seed"] = self.augment_seeds[row]
    example["index"] = np.int32(index)
    example["mask"] = np.bool_(True)
    example["weight"] = self.weights[row]
    if self.text is not None:
      fields = self.text(record, index)
      example.update({name: fields[name] for name in TEXT_FIELDS})
    return example

  @property
  def pad(self) -> dict:
    if not hasattr(self, "_pad"):
      first = self(0)
      self._pad = {k: np.zeros_like(v) for k, v in first.items()}
      self._pad["augment_seed"] = np.int32(-1)
    return self._pad


def _read_options(num_threads: int) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(2 * num_threads, 4))


def num_train_batches(num_rows: int, global_batch_size: int, num_epochs: int) -> int:
  """Whole global batches in ``num_epochs`` passes (the last partial batch of the run is dropped)."""
  return (num_rows * num_epochs) // global_batch_size


def _host_batches(num_batches: int, global_batch_size: int, process_index: int, process_count: int,
                  position_to_row, loader) -> grain.MapDataset:
  """This host's slice of global batches 0..num_batches-1, where batch b covers global positions
  [b*B, (b+1)*B) and ``position_to_row`` maps a position to a plan row (-1 for padding)."""
  if global_batch_size % process_count:
    raise ValueError(f"global batch {global_batch_size} does not split over {process_count} processes")
  local = global_batch_size // process_count

  def row_of(k):  # the k-th row this host reads, counted over the whole run
    batch, offset = divmod(k, local)
    return position_to_row(batch * global_batch_size + process_index * local + offset)

  return grain.MapDataset.range(num_batches * local).map(row_of).map(loader).batch(local)


def train_batches(
    source: Sequence[dict],
    *,
    global_batch_size: int,
    seed: int,
    num_epochs: int,
    preprocess: Preprocess = Preprocess(),
    plan=None,
    start_batch: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
    text: Optional[Callable[[dict, int], dict]] = None,
) -> Iterator[dict]:
  """This process's slice of each training batch, from ``start_batch`` on, as numpy dicts.

  Batches are ``global_batch_size / process_count`` rows; the caller splits them over local devices.
  ``text`` adds ``TEXT_FIELDS`` from each record (see the module docstring).
  """
  arrays = _plan_arrays(len(source), plan)
  num_rows = len(arrays[0])
  if num_rows == 0:
    raise ValueError("the training data is empty")
  num_batches = num_train_batches(num_rows, global_batch_size, num_epochs)
  if not 0 <= start_batch <= num_batches:
    raise ValueError(f"start_batch {start_batch} outside [0, {num_batches}]")
  order = grain.MapDataset.range(num_rows).shuffle(seed=seed).repeat(num_epochs)
  batches = _host_batches(num_batches, global_batch_size, process_index, process_count,
                          order.__getitem__, _Loader(source, arrays, preprocess, text))
  yield from batches[start_batch:].to_iter_dataset(_read_options(num_threads))


def eval_batches(
    source: Sequence[dict],
    *,
    global_batch_size: int,
    preprocess: Preprocess = Preprocess(),
    plan=None,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
    text: Optional[Callable[[dict, int], dict]] = None,
) -> Iterator[dict]:
  """Every row once, in order, in fixed-size batches; the last is padded with ``mask == False``."""
  arrays = _plan_arrays(len(source), plan)
  num_rows = len(arrays[0])
  num_batches = -(-num_rows // global_batch_size)
  batches = _host_batches(num_batches, global_batch_size, process_index, process_count,
                          lambda position: position if position < num_rows else -1,
                          _Loader(source, arrays, preprocess, text))
  yield from batches.to_iter_dataset(_read_options(num_threads))


class ArraySource:
  """An in-memory source over decoded arrays (images [N,H,W,C] uint8 and label columns)."""

  def __init__(self, images: np.ndarray, labels: Optional[dict[str, Any]] = None):
    self.images = images
    self.labels = {k: np.asarray(v) for k, v in (labels or {}).items()}
    for name, values in self.labels.items():
      if len(values) != len(images):
        raise ValueError(f"label {name!r} has {len(values)} values for {len(images)} images")

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, i: int) -> dict:
    return {"image": self.images[i], **{k: v[i] for k, v in self.labels.items()}}
