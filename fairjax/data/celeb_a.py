"""CelebA through the stock TFDS ``celeb_a`` builder, mapped into the schema.

TFDS already knows CelebA's files and parses them; this adapter only prepares the builder (from files
the user has, since CelebA's Google Drive links often refuse downloads) and maps its examples:

  gender  from the ``Male`` attribute (True → 0 male, False → 1 female; schema.GENDERS)
  age     unknown (-1); CelebA has only the ``Young`` attribute, kept below
  race    unknown (-1)
  the 40 attributes (ATTRIBUTES) as bool fields and columns, and ``identity`` (the celebrity's number,
  for identity-disjoint splits)

The stock builder does not store source file names. An example is named ``celeb_a/<split>/<index>``:
TFDS orders a split by a hash of the original file names, so the name is stable across preparations of
the same builder version.
"""

import os
from typing import Optional, Union

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds

from fairjax.data import schema

# What the stock builder downloads, under the names its checksums.tsv gives them.
FILES = ("img_align_celeba.zip", "list_eval_partition.txt", "list_attr_celeba.txt",
         "list_landmarks_align_celeba.txt", "identity_CelebA.txt")
ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby",
    "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male",
    "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair",
    "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young")
SPLITS = ("train", "validation", "test")
COLUMNS = schema.METADATA_COLUMNS + ("identity",) + ATTRIBUTES

PathLike = Union[str, os.PathLike]


def prepare(data_dir: Optional[PathLike] = None,
            files_dir: Optional[PathLike] = None) -> tfds.core.DatasetBuilder:
  """The stock ``celeb_a`` builder, prepared in ``data_dir`` (TFDS's default when None).

  ``files_dir`` holds the five original files (FILES), e.g. fetched by hand; TFDS takes them from
  there as its ``manual_dir`` and checks them against its registered checksums. Without it TFDS
  downloads them. The set is written as array_record, which gives the random access the pipeline uses.
  """
  download_config = None
  if files_dir is not None:
    paths = [os.path.join(files_dir, name) for name in FILES]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
      raise FileNotFoundError(f"CelebA files missing: expected {', '.join(missing)} (the files that the "
                              f"TFDS celeb_a builder downloads, under these names)")
    download_config = tfds.download.DownloadConfig(manual_dir=os.fspath(files_dir))
  builder = tfds.builder("celeb_a", data_dir=data_dir)
  builder.download_and_prepare(download_config=download_config, file_format="array_record")
  return builder


def example_name(split: str, index: int) -> str:
  return f"celeb_a/{split}/{index}"


def to_record(example: dict, file_name: str) -> dict:
  """A stock ``celeb_a`` example (numpy) as a schema record with ``identity`` and the 40 attributes."""
  attributes = example["attributes"]
  gender = schema.GENDERS.index("male" if attributes["Male"] else "female")
  record = {"image": example["image"], "age": np.int32(schema.UNKNOWN), "gender": np.int32(gender),
            "race": np.int32(schema.UNKNOWN), "file_name": file_name,
            "identity": np.int32(example["identity"]["Identity_No"])}
  record.update({name: np.bool_(attributes[name]) for name in ATTRIBUTES})
  return record


class CelebASource:
  """Random access (``len``, ``[i]``) to a prepared split's schema records, for the input pipeline."""

  def __init__(self, builder: tfds.core.DatasetBuilder, split: str = "train"):
    if split not in SPLITS:
      raise ValueError(f"unknown CelebA split {split!r}; splits: {list(SPLITS)}")
    self.builder, self.split = builder, split
    self._data = builder.as_data_source(split)

  def __len__(self) -> int:
    return len(self._data)

  def __getitem__(self, index: int) -> dict:
    if not -len(self) <= index < len(self):
      raise IndexError(f"index {index} outside CelebA {self.split}'s {len(self)} examples")
    index %= len(self)
    return to_record(self._data[index], example_name(self.split, index))

  def metadata(self, chunk_size: int = 4096) -> pd.DataFrame:
    """COLUMNS for every example, in source order, without decoding any image."""
    data = self.builder.as_data_source(self.split, decoders={"image": tfds.decode.SkipDecoding()})
    rows = []
    for start in range(0, len(data), chunk_size):
      indices = range(start, min(start + chunk_size, len(data)))
      for index, example in zip(indices, data.__getitems__(list(indices))):
        record = to_record(example, example_name(self.split, index))
        rows.append([record[column] for column in COLUMNS])
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype({"age": np.int32, "gender": np.int32, "race": np.int32, "identity": np.int32,
                         **{name: bool for name in ATTRIBUTES}})
