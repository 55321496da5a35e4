"""Data sets by name: one call gives a split's labels, its skipped files and its random-access records.

Every face source is read into the schema (``schema.py``); this registry hides where it came from, so
the data command, the training loop and the experiments ask for ``load('synthetic_faces', 'train')``
or ``load('utkface', 'train', manual_dir=...)`` alike.
"""

import dataclasses
from typing import Any, Optional, Sequence

import pandas as pd

from fairjax.data import fairface
from fairjax.data import synthetic_faces
from fairjax.data import utkface
from fairjax.registry import Registry


@dataclasses.dataclass
class Split:
  """One split of a data set.

  metadata   one row per usable example (schema.METADATA_COLUMNS and source-specific extras), in the
             order of ``source``: row i of ``metadata`` describes ``source[i]``.
  source     random-access records (``len``, ``[i]``) for the input pipeline.
  skipped    files that could not be used, as {"file": name, "reason": text}.
  """

  name: str
  split: str
  metadata: pd.DataFrame
  source: Sequence[dict]
  skipped: list[dict] = dataclasses.field(default_factory=list)


_DATA_SETS = Registry("data set")


def register(name: str):
  """Registers ``fn(split, **options) -> Split`` as data set ``name``."""
  return _DATA_SETS.register(name)


def names() -> list[str]:
  return list(_DATA_SETS.names())


def load(name: str, split: str = "train", **options: Any) -> Split:
  """The ``split`` of data set ``name``; ``options`` are the data set's own (e.g. ``manual_dir``)."""
  return _DATA_SETS.get(name)(split, **options)


@register("synthetic_faces")
def _synthetic(split: str, num_examples: Optional[int] = None, config=None, **config_overrides) -> Split:
  """The procedurally drawn faces (the embedded default). ``num_examples`` defaults per split."""
  if config is None:
    config = synthetic_faces.SyntheticFacesConfig(**config_overrides)
  elif config_overrides:
    config = dataclasses.replace(config, **config_overrides)
  if num_examples is None:
    num_examples = {"train": 8000, "validation": 1000, "test": 2000}[split] if split in synthetic_faces.SPLITS else 0
  faces = synthetic_faces.SyntheticFaces(config)
  source = faces.source(split, num_examples)
  return Split("synthetic_faces", split, source.metadata, source)


def _need(manual_dir, name: str, expected: str) -> str:
  if not manual_dir:
    raise ValueError(f"{name} cannot be downloaded: pass manual_dir=DIR holding {expected}")
  return manual_dir


@register("utkface")
def _utkface(split: str, manual_dir: Optional[str] = None, image_size=None) -> Split:
  """UTKFace from ``manual_dir`` (UTKFace.tar.gz or the extracted UTKFace/ folder), decoded into memory.

  UTKFace has one split; the seeds' treatments (``rebalance``, ``splits``) make train/test from it.
  """
  if split != "train":
    raise ValueError(f"UTKFace has one split, 'train', got {split!r}")
  path = utkface.find_source(_need(manual_dir, "UTKFace", f"{utkface.ARCHIVE_NAME} or {utkface.FOLDER_NAME}/"))
  source = utkface.load(path, image_size)
  return Split("utkface", split, source.metadata, source, source.skipped)


@register("fairface")
def _fairface(split: str, manual_dir: Optional[str] = None, image_size=None) -> Split:
  """FairFace images and label CSVs from ``manual_dir``; splits 'train' and 'validation'."""
  source = fairface.load(_need(manual_dir, "FairFace", "the images and fairface_label_*.csv"), split, image_size)
  return Split("fairface", split, source.metadata, source, source.skipped)


@register("celeb_a")
def _celeb_a(split: str, manual_dir: Optional[str] = None, data_dir: Optional[str] = None) -> Split:
  """CelebA through the stock TFDS builder, prepared from the files in ``manual_dir``."""
  from fairjax.data import celeb_a  # pylint: disable=g-import-not-at-top  (imports TFDS's builders)
  source = celeb_a.CelebASource(celeb_a.prepare(data_dir=data_dir, files_dir=manual_dir), split)
  return Split("celeb_a", split, source.metadata(), source)
