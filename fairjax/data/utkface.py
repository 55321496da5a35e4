"""UTKFace read directly, without TensorFlow: labels from file names, images from the archive or folder.

UTKFace ("Aligned & Cropped Faces") is one folder of JPEGs whose names carry the labels,
``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`` (age 0..116; gender 0 male, 1 female; race 0 White, 1 Black,
2 Asian, 3 Indian, 4 Others: the schema's codes). Users download it by hand as ``UTKFace.tar.gz``; this
module reads that archive as a stream (one decompression pass, nothing extracted to disk) or the
extracted ``UTKFace/`` folder, and both give the same records.

Nothing is guessed: a name that does not parse (the published set has three without the race field), a
repeated name, or an image that does not decode is skipped and reported as {"file": name, "reason":
text}. The datetime field is not checked, because real names carry stray characters there
(``..._20170116232725357jpg.chip.jpg``, ``..._20170116220224657 .jpg.chip.jpg``) and it is no label.

The same parser and reader feed the TFDS builder (``tfds_builders/utkface.py``), so a TFDS-prepared set
holds exactly the examples read here.
"""

import io
import os
import re
import tarfile
from typing import Callable, Iterator, Optional, Union

from absl import logging
import numpy as np
import pandas as pd
from PIL import Image

from fairjax.data import decoded_cache
from fairjax.data import schema

ARCHIVE_NAME = "UTKFace.tar.gz"
FOLDER_NAME = "UTKFace"
MAX_AGE = 116
FIELDS = ("age", "gender", "race", "datetime")
_DIGITS = re.compile(r"[0-9]+")

PathLike = Union[str, os.PathLike]
ImageSize = Optional[tuple[int, int]]


def parse_file_name(name: str) -> tuple[Optional[dict], Optional[str]]:
  """Labels of a UTKFace file name, as ``(labels, None)``, or ``(None, reason)`` when it is malformed.

  ``labels`` holds ``age``, ``gender`` and ``race`` as ints. Fields are the '_'-separated parts of the
  name before its first '.', so a missing field is reported as such instead of shifting the datetime
  into the race.
  """
  base = os.path.basename(name)
  fields = base.split(".", 1)[0].split("_")
  if len(fields) != len(FIELDS) or not all(fields):
    return None, (f"expected {len(FIELDS)} non-empty '_'-separated fields AGE_GENDER_RACE_DATETIME before "
                  f"the first '.', found {len(fields)}: {fields}")
  labels = {}
  for field, text in zip(FIELDS[:3], fields):
    if not _DIGITS.fullmatch(text):
      return None, f"{field} {text!r} is not a non-negative integer"
    labels[field] = int(text)
  if labels["age"] > MAX_AGE:
    return None, f"age {labels['age']} is outside 0..{MAX_AGE}"
  if labels["gender"] >= len(schema.GENDERS):
    return None, f"gender {labels['gender']} is not in 0..{len(schema.GENDERS) - 1}"
  if labels["race"] >= len(schema.RACES):
    return None, f"race {labels['race']} is not in 0..{len(schema.RACES) - 1}"
  return labels, None


def decode_image(data: bytes, image_size: ImageSize = None) -> tuple[Optional[np.ndarray], Optional[str]]:
  """``(uint8 [H, W, 3] RGB array, None)``, or ``(None, reason)`` when ``data`` is no readable image.

  The format comes from the bytes, not the name, so a PNG saved as ``.jpg`` reads. Grayscale, palette,
  CMYK and RGBA (alpha dropped) images are converted to RGB. ``image_size`` is (height, width); resizing
  is bilinear, as the pipeline's ``Preprocess``, so resizing here or there gives the same pixels.
  """
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()  # PIL decodes lazily: a truncated file fails here, not at open
      rgb = image if image.mode == "RGB" else image.convert("RGB")
      if image_size is not None and rgb.size != (image_size[1], image_size[0]):
        rgb = rgb.resize((image_size[1], image_size[0]), Image.BILINEAR)
      return np.asarray(rgb, np.uint8), None
  except Exception as error:  # pylint: disable=broad-except
    # PIL signals broken files with many types (OSError, SyntaxError, ValueError, struct.error,
    # DecompressionBombError...); all mean the same here: skip this file and say why.
    return None, f"unreadable image: {type(error).__name__}: {error}"


def find_source(directory: PathLike) -> str:
  """The UTKFace data at ``directory``: the archive or extracted folder itself, or a folder (a TFDS
  ``manual_dir``) holding ``UTKFace.tar.gz`` or else ``UTKFace/``."""
  if os.path.isfile(directory) or (os.path.isdir(directory) and any(
      name.endswith(".jpg") for name in os.listdir(directory))):
    return os.fspath(directory)
  archive, folder = os.path.join(directory, ARCHIVE_NAME), os.path.join(directory, FOLDER_NAME)
  if os.path.isfile(archive):
    return archive
  if os.path.isdir(folder):
    return folder
  raise FileNotFoundError(f"UTKFace not found: expected the archive {archive} or the extracted folder "
                          f"{folder}/ of AGE_GENDER_RACE_DATETIME.jpg.chip.jpg files; UTKFace must be downloaded "
                          "by hand (https://susanqq.github.io/UTKFace/, non-commercial research use only) and "
                          "cannot be fetched automatically")


def _entries(path: PathLike) -> Iterator[tuple[str, Callable[[], bytes]]]:
  """(base name, read bytes) of every regular file of an archive (streamed) or a folder (walked, sorted).

  Reading is deferred so that a metadata scan never touches file contents; an archive entry can only be
  read before the next one is drawn.
  """
  if os.path.isfile(path):
    try:
      tar = tarfile.open(path, "r|*")  # stream mode: one sequential pass, any compression
    except tarfile.TarError as error:
      raise ValueError(f"{path} is not a (compressed) tar archive such as {ARCHIVE_NAME}: {error}") from error
    with tar:
      for member in tar:
        if member.isfile():
          yield os.path.basename(member.name), lambda member=member: tar.extractfile(member).read()
  elif os.path.isdir(path):
    files = []
    for root, dirs, names in os.walk(path):
      dirs.sort()
      files.extend(os.path.join(root, name) for name in sorted(names))
    for file in files:
      yield os.path.basename(file), lambda file=file: _read_bytes(file)
  else:
    raise FileNotFoundError(f"{path} does not exist; expected the archive {ARCHIVE_NAME} or the extracted "
                            f"{FOLDER_NAME}/ folder")


def _read_bytes(file: str) -> bytes:
  with open(file, "rb") as f:
    return f.read()


def _labelled_entries(path: PathLike, skipped: list) -> Iterator[tuple[str, dict, Callable[[], bytes]]]:
  """Entries whose names parse, once per name; the others are appended to ``skipped`` with a reason."""
  seen = set()
  for name, read in _entries(path):
    if name in seen:
      skipped.append({"file": name, "reason": "duplicate file name (an earlier file with it was used)"})
      continue
    seen.add(name)
    labels, reason = parse_file_name(name)
    if reason:
      skipped.append({"file": name, "reason": reason})
    else:
      yield name, labels, read


def log_skipped(source: str, skipped: list[dict], total: int):
  """One warning naming every skipped file and why (the list is also returned to the caller)."""
  if skipped:
    logging.warning("%s: skipped %d of %d files: %s", source, len(skipped), total,
                    "; ".join(f"{s['file']} ({s['reason']})" for s in skipped))


def scan_metadata(path: PathLike) -> tuple[pd.DataFrame, list[dict]]:
  """Labels of every well-named file, from names alone (no image is read), and the skipped names.

  The frame has schema.METADATA_COLUMNS (labels int32), sorted by file_name. It is what statistics and
  rebalancing use; images that turn out unreadable are only found by the reader.
  """
  skipped, rows = [], []
  for name, labels, _ in _labelled_entries(path, skipped):
    rows.append((name, labels["age"], labels["gender"], labels["race"]))
  log_skipped(f"UTKFace {path}", skipped, len(rows) + len(skipped))
  return _metadata_frame(rows), skipped


def _metadata_frame(rows) -> pd.DataFrame:
  frame = pd.DataFrame(rows, columns=list(schema.METADATA_COLUMNS))
  frame = frame.astype({"age": np.int32, "gender": np.int32, "race": np.int32})
  return frame.sort_values("file_name", kind="stable", ignore_index=True)


class UTKFaceReader:
  """Iterates schema records of a UTKFace archive or folder; ``skipped`` lists what was left out.

  Records come in archive order (an archive cannot be sorted without reading it twice) or, for a folder,
  sorted by path. ``skipped`` is rebuilt by each pass and complete once the pass is. Decoding runs in
  the calling thread: PIL holds the GIL for most of a small JPEG, so threads were measured slower.
  """

  def __init__(self, path: PathLike, image_size: ImageSize = None):
    self.path, self.image_size = os.fspath(path), image_size
    self.skipped: list[dict] = []

  def __iter__(self) -> Iterator[dict]:
    self.skipped = skipped = []
    count = 0
    for name, labels, read in _labelled_entries(self.path, skipped):
      image, reason = decode_image(read(), self.image_size)
      if reason:
        skipped.append({"file": name, "reason": reason})
        continue
      count += 1
      yield _record(image, labels, name)
    log_skipped(f"UTKFace {self.path}", skipped, count + len(skipped))


def _record(image: np.ndarray, labels: dict, file_name: str) -> dict:
  """A schema record (labels as int32 scalars, as every source gives them)."""
  record = {"image": image, "file_name": file_name}
  record.update({field: np.int32(labels[field]) for field in ("age", "gender", "race")})
  return record


class DecodedSource:
  """A whole data set decoded into memory: random access (``len``, ``[i]``) for the input pipeline.

  ``images[i]`` and ``metadata.iloc[i]`` describe the same example; record i has the image and every
  metadata column as a field (numpy scalars of the column's dtype, file_name a str).
  """

  def __init__(self, images: np.ndarray, metadata: pd.DataFrame, skipped: list[dict]):
    if len(images) != len(metadata):
      raise ValueError(f"{len(images)} images but {len(metadata)} metadata rows")
    self.images, self.metadata, self.skipped = images, metadata, skipped
    self._columns = {column: metadata[column].to_numpy() for column in metadata.columns}

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict:
    record = {"image": self.images[index]}
    record.update({column: values[index] for column, values in self._columns.items()})
    return record

  @classmethod
  def from_records(cls, records: list[dict], skipped: list[dict], columns) -> "DecodedSource":
    """Stacks records (all of one image size) in their order; ``columns`` are the fields kept.

    Consumes ``records``: each image is dropped from its record once copied, so memory peaks near one
    copy of the set, not two.
    """
    shapes = {r["image"].shape for r in records}
    if len(shapes) > 1:
      raise ValueError(f"images have {len(shapes)} different shapes (e.g. {sorted(shapes)[:3]}); pass "
                       f"image_size to decode them to one size")
    metadata = pd.DataFrame({c: np.asarray([r[c] for r in records]) if records else [] for c in columns})
    images = np.empty((len(records),) + (shapes.pop() if shapes else (0, 0, 3)), np.uint8)
    for i, record in enumerate(records):
      images[i], record["image"] = record["image"], None
    return cls(images, metadata, skipped)


def load(path: PathLike, image_size: ImageSize = None, cache_dir: Optional[str] = None) -> DecodedSource:
  """Every readable UTKFace image, decoded (and resized to ``image_size``) into memory, by file_name.

  Sorted by file_name, so an archive and its extracted folder give the same source. Memory is
  N * H * W * 3 bytes: 23,705 images take 2.8 GB at the native 200x200, 291 MB at 64x64.

  Decoded once per source and size: later calls read the same images, metadata and skipped list from
  ``decoded_cache`` (``cache_dir``, default ``$FAIRJAX_CACHE_DIR`` or ``~/.cache/fairjax``; 'off' turns
  it off) in a fraction of a second instead of ~20 s, and a changed archive or folder is decoded again.
  The skipped files are logged either way.
  """
  path, decoded = os.fspath(path), []

  def decode():
    decoded.append(True)
    reader = UTKFaceReader(path, image_size)
    records = sorted(reader, key=lambda record: record["file_name"])
    source = DecodedSource.from_records(records, reader.skipped, schema.METADATA_COLUMNS)
    return source.images, source.metadata, source.skipped

  options = {"image_size": None if image_size is None else [int(n) for n in image_size]}
  images, metadata, skipped = decoded_cache.load("utkface", path, options, decode, root=cache_dir)
  if not decoded:  # the reader logged them while decoding; say the same when they come from the cache
    log_skipped(f"UTKFace {path}", skipped, len(images) + len(skipped))
  return DecodedSource(images, metadata, skipped)
