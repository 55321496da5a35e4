"""Data sets by name: one call gives a split's labels, its skipped files and its random-access records.

Every face source is read into the schema (``schema.py``); this registry hides where it came from, so
the data command, the training loop and the experiments ask for ``load('synthetic_faces', 'train')``
or ``load('utkface', 'train', manual_dir=...)`` alike.
"""

import dataclasses
from typing import Any, Callable, Optional, Sequence

import pandas as pd

from fairjax.data import synthetic_faces


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


_LOADERS: dict[str, Callable[..., Split]] = {}


def register(name: str):
  """Registers ``fn(split, **options) -> Split`` as data set ``name``."""

  def wrap(fn):
    if name in _LOADERS:
      raise ValueError(f"data set {name!r} is registered twice")
    _LOADERS[name] = fn
    return fn

  return wrap


def names() -> list[str]:
  return sorted(_LOADERS)


def load(name: str, split: str = "train", **options: Any) -> Split:
  """The ``split`` of data set ``name``; ``options`` are the data set's own (e.g. ``manual_dir``)."""
  if name not in _LOADERS:
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(names())}")
  return _LOADERS[name](split, **options)


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
