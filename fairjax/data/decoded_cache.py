"""An on-disk cache of decoded face sources, so a data set of JPEGs is decoded once, not on every run.

Decoding UTKFace's 23,705 JPEGs takes about 20 s on two cores, and seed configs, smoke runs and tests
read the same archive at the same image size again and again. ``load`` keeps each decoded source in a
folder of its own under the cache root, named by a hash of what could change the result:

  * the source's identity: for an archive its absolute path, size, mtime and inode; for a folder the
    relative names, sizes and mtimes of every file in it (a file added, removed or rewritten changes it);
  * the image size the images were resized to;
  * ``FORMAT`` (bump it when decoding or the stored layout changes) and PIL's and libjpeg's versions,
    since another JPEG decoder may give other pixels.

An entry holds ``images.npy`` (uint8 [N, H, W, 3], loadable with ``np.load(..., mmap_mode='r')`` too),
``metadata.npz`` (one array per metadata column, no pickles), ``skipped.json`` and ``manifest.json``
(the key's parts, for a person looking at the folder). It is written into a scratch folder and renamed
into place, so a killed run leaves no half entry, only scratch that the next write of that entry sweeps.
An entry that cannot be read, or disagrees with itself, is logged, removed and rebuilt.

The root is ``$FAIRJAX_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fairjax``, else ``~/.cache/fairjax``.
``FAIRJAX_CACHE_DIR=off`` turns the cache off; an empty value counts as unset (as an empty
``XDG_CACHE_HOME`` does), so that a blank line in an env file does not silently slow every run down.
"""

import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Callable, Optional, Sequence

from absl import logging
import numpy as np
import pandas as pd
import PIL
from PIL import features

from fairjax import paths

ENVIRONMENT = paths.CACHE_ENVIRONMENT
OFF = paths.CACHE_OFF
FORMAT = 1
_SCRATCH_PREFIX = ".scratch-"


def cache_root() -> Optional[str]:
  """The decoded sources' root folder: fairjax's cache folder (``paths.cache_root``), or None when off."""
  return paths.cache_root()


def source_identity(path: str) -> dict:
  """What identifies the files at ``path`` without reading them: stat data of the archive or listing."""
  path = os.path.realpath(path)
  if os.path.isfile(path):
    stat = os.stat(path)
    return {"archive": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}
  listing = []
  for root, dirs, names in os.walk(path):
    dirs.sort()
    for name in sorted(names):
      stat = os.stat(os.path.join(root, name))
      listing.append((os.path.relpath(os.path.join(root, name), path), stat.st_size, stat.st_mtime_ns))
  # The listing goes into the key as a hash: UTKFace's would make a 1.5 MB manifest.
  digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
  return {"folder": path, "files": len(listing), "listing_sha256": digest}


def entry_key(kind: str, identity: dict, options: dict) -> tuple[str, dict]:
  """(folder name, manifest) of the entry for ``kind`` (e.g. 'utkface') read with ``options``."""
  manifest = {"format": FORMAT, "kind": kind, "source": identity, "options": options,
              "pil": PIL.__version__, "libjpeg": features.version("jpg")}
  digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:24]
  return f"{kind}-{digest}", manifest


def load(kind: str, path: str, options: dict, build: Callable[[], tuple[np.ndarray, pd.DataFrame, list]],
         root: Optional[str] = None) -> tuple[np.ndarray, pd.DataFrame, list]:
  """``build()``'s (images, metadata, skipped) for the source at ``path``, from the cache when it has it.

  ``options`` are whatever else changes the result (JSON-serialisable, e.g. the image size). Without a
  cache (``root`` None and ``$FAIRJAX_CACHE_DIR=off``) this is ``build()``. Failing to write an entry
  (a read-only or full disk) is logged and costs only the next run's time.
  """
  root = root or cache_root()
  if root is None:
    return build()
  name, manifest = entry_key(kind, source_identity(path), options)
  folder = os.path.join(root, name)
  if os.path.isdir(folder):
    try:
      cached = _read(folder, manifest)
      logging.info("%s %s: decoded images from the cache %s", kind, path, folder)
      return cached
    except Exception as error:  # pylint: disable=broad-except
      # Truncated .npy (EOFError, ValueError), bad JSON, missing files, a different manifest: all mean
      # the same, so rebuild it.
      logging.warning("%s: ignoring the unreadable cache entry %s (%s: %s); decoding again", kind, folder,
                      type(error).__name__, error)
      _remove(folder, root)
  images, metadata, skipped = build()
  if not len(images):  # nothing to save, and an empty frame's column dtypes would not come back the same
    return images, metadata, skipped
  try:
    _write(root, folder, manifest, images, metadata, skipped)
  except OSError as error:
    logging.warning("%s: could not write the cache entry %s: %s", kind, folder, error)
  return images, metadata, skipped


def _write(root: str, folder: str, manifest: dict, images: np.ndarray, metadata: pd.DataFrame,
           skipped: Sequence[dict]):
  os.makedirs(root, exist_ok=True)
  _sweep_scratch(root, os.path.basename(folder))
  scratch = tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.path.basename(folder)}-", dir=root)
  try:
    np.save(os.path.join(scratch, "images.npy"), np.ascontiguousarray(images), allow_pickle=False)
    # Column arrays as pandas holds them (file_name as a fixed-width unicode array): rebuilding the
    # frame from them goes the way DecodedSource.from_records built it, so the dtypes come back equal.
    columns = {c: _column_array(metadata[c]) for c in metadata.columns}
    np.savez(os.path.join(scratch, "metadata.npz"), **columns)
    _write_json(os.path.join(scratch, "skipped.json"), list(skipped))
    _write_json(os.path.join(scratch, "manifest.json"),
                {**manifest, "columns": list(metadata.columns), "num_images": len(images),
                 "image_shape": list(images.shape[1:])})
    os.replace(scratch, folder)  # atomic; fails if another run put a (whole) entry there first
  except OSError:
    shutil.rmtree(scratch, ignore_errors=True)
    if not os.path.isdir(folder):
      raise


def _column_array(column: pd.Series) -> np.ndarray:
  values = column.to_numpy()
  return values.astype(str) if values.dtype == object else values


def _write_json(file: str, value):
  with open(file, "w", encoding="utf-8") as f:
    json.dump(value, f)
    f.flush()
    os.fsync(f.fileno())


def _read(folder: str, manifest: dict) -> tuple[np.ndarray, pd.DataFrame, list]:
  with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
    stored = json.load(f)
  if {k: stored.get(k) for k in manifest} != json.loads(json.dumps(manifest)):
    raise ValueError("its manifest is not the key's")
  images = np.load(os.path.join(folder, "images.npy"), allow_pickle=False)
  with np.load(os.path.join(folder, "metadata.npz"), allow_pickle=False) as arrays:
    metadata = pd.DataFrame({c: arrays[c] for c in stored["columns"]})
  with open(os.path.join(folder, "skipped.json"), encoding="utf-8") as f:
    skipped = json.load(f)
  if (images.dtype != np.uint8 or not len(images) == stored["num_images"] == len(metadata)
      or list(images.shape[1:]) != stored["image_shape"] or not isinstance(skipped, list)):
    raise ValueError(f"it holds {images.dtype} images of shape {images.shape} and {len(metadata)} rows, "
                     f"its manifest says {stored['num_images']} of {stored['image_shape']}")
  return images, metadata, skipped


def _remove(folder: str, root: str):
  """Moves ``folder`` aside (one rename, so no reader sees it half deleted), then deletes it."""
  aside = tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}removed-", dir=root)
  try:
    os.replace(folder, os.path.join(aside, "entry"))
  except OSError:
    pass  # another run removed or replaced it already
  shutil.rmtree(aside, ignore_errors=True)


def _sweep_scratch(root: str, name: str, older_than_s: float = 3600.0):
  """Deletes scratch folders of killed writes of entry ``name`` (an hour old: not a live concurrent write)."""
  for entry in os.listdir(root):
    if entry.startswith(f"{_SCRATCH_PREFIX}{name}-") or entry.startswith(f"{_SCRATCH_PREFIX}removed-"):
      path = os.path.join(root, entry)
      try:
        if time.time() - os.path.getmtime(path) > older_than_s:
          shutil.rmtree(path, ignore_errors=True)
      except OSError:
        pass
