"""FairFace read directly, without TensorFlow: CSV labels mapped by name into the schema, images from
the extracted folders or the release zip.

The release has ``fairface_label_train.csv`` and ``fairface_label_val.csv`` (columns file, age, gender,
race, service_test; ``file`` is e.g. ``train/1.jpg``) and the images, extracted (``train/``, ``val/``) or
in one ``fairface-img-margin025-trainval.zip`` (or the margin125 one). Splits here are ``train`` and
``validation``.

Labels are strings and are mapped by name, never by position, so a CSV with a new or misspelt label
fails with the unknown names listed instead of shifting codes:

  gender  Male → 0, Female → 1 (schema.GENDERS)
  race    the 7 FairFace groups onto UTKFace's 5 (schema.RACES): East and Southeast Asian → Asian,
          Middle Eastern and Latino_Hispanic → Others; the 7-way code is kept as ``race7`` (RACES7)
  age     the bin's middle year (AGE_BIN_YEARS), so that ages compare with UTKFace's; the bin is kept
          as ``age_bin`` (AGE_BINS) for anything that needs the exact label
  service_test  kept as a bool (FairFace's balanced subset for testing commercial services)

A missing or unreadable image is skipped and reported as {"file": name, "reason": text}, as UTKFace's.
"""

import glob
import os
import zipfile
from typing import Iterator, Optional, Union

import numpy as np
import pandas as pd

from fairjax.data import schema
from fairjax.data import utkface

LABEL_FILES = {"train": "fairface_label_train.csv", "validation": "fairface_label_val.csv"}
IMAGE_FOLDERS = ("train", "val")
IMAGE_ZIP_PATTERN = "fairface-img-*.zip"
CSV_COLUMNS = ("file", "age", "gender", "race", "service_test")

AGE_BINS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
# Middle of the whole years a bin covers, halves rounded up (10-19 → 15); the open last bin is taken as
# 70-79. A bin's middle is the age that minimises the worst error for anyone in it.
AGE_BIN_YEARS = {"0-2": 1, "3-9": 6, "10-19": 15, "20-29": 25, "30-39": 35, "40-49": 45, "50-59": 55,
                 "60-69": 65, "more than 70": 75}
GENDER_CODES = {"Male": schema.GENDERS.index("male"), "Female": schema.GENDERS.index("female")}
RACES7 = ("White", "Black", "East Asian", "Southeast Asian", "Indian", "Middle Eastern", "Latino_Hispanic")
RACE_CODES = {"White": schema.RACES.index("White"), "Black": schema.RACES.index("Black"),
              "East Asian": schema.RACES.index("Asian"), "Southeast Asian": schema.RACES.index("Asian"),
              "Indian": schema.RACES.index("Indian"), "Middle Eastern": schema.RACES.index("Others"),
              "Latino_Hispanic": schema.RACES.index("Others")}
SERVICE_TEST_VALUES = {"True": True, "False": False}
EXTRA_COLUMNS = ("age_bin", "race7", "service_test")
COLUMNS = schema.METADATA_COLUMNS + EXTRA_COLUMNS

PathLike = Union[str, os.PathLike]


def labels_from_csv(csv: PathLike) -> pd.DataFrame:
  """A FairFace label CSV as a frame with COLUMNS (file_name is the CSV's ``file``), in CSV order.

  Every label is looked up by name; names that are not known, in any column, are listed together with
  their row counts in one ValueError.
  """
  csv = os.fspath(csv)
  if not os.path.isfile(csv):
    raise FileNotFoundError(f"FairFace labels not found: expected {csv} (from the FairFace release)")
  table = pd.read_csv(csv, dtype=str, keep_default_na=False)
  missing = [c for c in CSV_COLUMNS if c not in table.columns]
  if missing:
    raise ValueError(f"{csv}: missing columns {missing}; a FairFace label file has {list(CSV_COLUMNS)}")
  problems = []
  for column, known in (("age", AGE_BINS), ("gender", GENDER_CODES), ("race", RACES7),
                        ("service_test", SERVICE_TEST_VALUES)):
    unknown = table[column][~table[column].isin(list(known))].value_counts()
    if len(unknown):
      listed = ", ".join(f"{name!r} ({count} rows)" for name, count in unknown.items())
      problems.append(f"unknown {column} names {listed} (known: {list(known)})")
  if problems:
    raise ValueError(f"{csv}: " + "; ".join(problems))
  return pd.DataFrame({
      "file_name": table["file"],
      "age": table["age"].map(AGE_BIN_YEARS).astype(np.int32),
      "gender": table["gender"].map(GENDER_CODES).astype(np.int32),
      "race": table["race"].map(RACE_CODES).astype(np.int32),
      "age_bin": table["age"].map({name: code for code, name in enumerate(AGE_BINS)}).astype(np.int32),
      "race7": table["race"].map({name: code for code, name in enumerate(RACES7)}).astype(np.int32),
      "service_test": table["service_test"].map(SERVICE_TEST_VALUES).astype(bool),
  })


def scan_metadata(root: PathLike, split: str = "train") -> tuple[pd.DataFrame, list[dict]]:
  """Labels of ``split`` from its CSV alone (no image is read), and the rows skipped as repeats.

  Images that turn out missing or unreadable are only found by the reader.
  """
  frame, skipped = _labels(root, split)
  utkface.log_skipped(f"FairFace {root} {split}", skipped, len(frame) + len(skipped))
  return frame, skipped


def _labels(root: PathLike, split: str) -> tuple[pd.DataFrame, list[dict]]:
  frame = labels_from_csv(os.path.join(root, _label_file(split)))
  repeated = frame.file_name.duplicated()
  skipped = [{"file": name, "reason": "listed again in the label file (its first row was used)"}
             for name in frame.file_name[repeated]]
  return frame[~repeated].reset_index(drop=True), skipped


def _label_file(split: str) -> str:
  if split not in LABEL_FILES:
    raise ValueError(f"unknown FairFace split {split!r}; splits: {list(LABEL_FILES)}")
  return LABEL_FILES[split]


class _Images:
  """The release's images, read by their CSV name from the extracted folders or the zip."""

  def __init__(self, root: PathLike):
    root = os.fspath(root)
    zips = sorted(glob.glob(os.path.join(glob.escape(root), IMAGE_ZIP_PATTERN)))
    if any(os.path.isdir(os.path.join(root, folder)) for folder in IMAGE_FOLDERS):
      self.where, self._zip = root, None
    elif len(zips) == 1:
      self.where, self._zip = zips[0], zipfile.ZipFile(zips[0])
      # Accept a zip with one enclosing folder too: index names with and without it.
      names = self._zip.namelist()
      self._names = {name.split("/", 1)[1]: name for name in names if "/" in name}
      self._names.update({name: name for name in names})
    elif zips:
      raise ValueError(f"FairFace: several image zips in {root} ({[os.path.basename(z) for z in zips]}); "
                       f"keep the one to use")
    else:
      raise FileNotFoundError(f"FairFace images not found: expected the extracted folders "
                              f"{os.path.join(root, 'train')}/ and {os.path.join(root, 'val')}/, or the "
                              f"release zip {os.path.join(root, 'fairface-img-margin025-trainval.zip')}")

  def read(self, name: str) -> Optional[bytes]:
    if self._zip is None:
      path = os.path.join(self.where, name)
      if not os.path.isfile(path):
        return None
      with open(path, "rb") as f:
        return f.read()
    member = self._names.get(name)
    return None if member is None else self._zip.read(member)

  def close(self):
    if self._zip is not None:
      self._zip.close()


class FairFaceReader:
  """Iterates schema records (with EXTRA_COLUMNS) of a FairFace split, in CSV order.

  ``root`` holds the label CSVs and the images (see the module doc). ``skipped`` is rebuilt by each pass
  and complete once the pass is; ``image_size`` (height, width) resizes bilinearly.
  """

  def __init__(self, root: PathLike, split: str = "train", image_size: utkface.ImageSize = None):
    self.root, self.split, self.image_size = os.fspath(root), split, image_size
    _label_file(split)
    self.skipped: list[dict] = []

  def __iter__(self) -> Iterator[dict]:
    labels, skipped = _labels(self.root, self.split)
    self.skipped, rows = skipped, len(labels) + len(skipped)
    images = _Images(self.root)
    try:
      for row in labels.itertuples(index=False):
        data = images.read(row.file_name)
        if data is None:
          skipped.append({"file": row.file_name, "reason": f"image not found in {images.where}"})
          continue
        image, reason = utkface.decode_image(data, self.image_size)
        if reason:
          skipped.append({"file": row.file_name, "reason": reason})
          continue
        yield _record(image, row)
    finally:
      images.close()
    utkface.log_skipped(f"FairFace {self.root} {self.split}", skipped, rows)


def _record(image: np.ndarray, row) -> dict:
  record = {"image": image, "file_name": row.file_name, "service_test": np.bool_(row.service_test)}
  for field in ("age", "gender", "race", "age_bin", "race7"):
    record[field] = np.int32(getattr(row, field))
  return record


def load(root: PathLike, split: str = "train", image_size: utkface.ImageSize = None) -> utkface.DecodedSource:
  """Every readable image of ``split``, decoded (and resized) into memory, in CSV order.

  FairFace images are 224x224 (margin 0.25): 86,744 training images take 13 GB at that size, so pass
  ``image_size`` for the full set.
  """
  reader = FairFaceReader(root, split, image_size)
  return utkface.DecodedSource.from_records(list(reader), reader.skipped, COLUMNS)
