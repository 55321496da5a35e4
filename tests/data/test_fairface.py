"""FairFace: labels mapped by name (with the originals kept), skips with reasons, folder = zip = TFDS."""

import json
import pathlib
import zipfile

import numpy as np
import pandas as pd
import pytest

from fairjax.data import fairface
from fairjax.data import schema

RACE7_TO_SCHEMA = {"White": "White", "Black": "Black", "East Asian": "Asian", "Southeast Asian": "Asian",
                   "Indian": "Indian", "Middle Eastern": "Others", "Latino_Hispanic": "Others"}
AGE_BIN_TO_YEARS = {"0-2": 1, "3-9": 6, "10-19": 15, "20-29": 25, "30-39": 35, "40-49": 45, "50-59": 55,
                    "60-69": 65, "more than 70": 75}


def _rows(split, n):
  races, bins = list(RACE7_TO_SCHEMA), list(AGE_BIN_TO_YEARS)
  return [{"file": f"{split}/{i + 1}.jpg", "age": bins[i % len(bins)], "gender": ("Male", "Female")[i % 2],
           "race": races[i % len(races)], "service_test": ("True", "False")[i % 3 == 0]} for i in range(n)]


@pytest.fixture(scope="session")
def ff(tmp_path_factory, image_bytes):
  """A fake FairFace release, extracted (folder_root) and zipped (zip_root), with the same files."""
  base = tmp_path_factory.mktemp("fairface")
  tables = {"train": _rows("train", 16), "validation": _rows("val", 5)}
  files = {}
  for split, rows in tables.items():
    for i, row in enumerate(rows):
      files[row["file"]] = image_bytes(1000 * len(split) + i, size=(12, 12))
  files.pop("train/4.jpg")  # listed, not shipped
  files["train/5.jpg"] = files["train/5.jpg"][:200]  # truncated
  files["train/6.jpg"] = image_bytes(7, size=(12, 12), mode="L")
  tables["train"].append(dict(tables["train"][0]))  # a repeated row
  roots = {"folder": base / "folder_root", "zip": base / "zip_root"}
  for root in roots.values():
    root.mkdir()
    for split, rows in tables.items():
      pd.DataFrame(rows).to_csv(root / fairface.LABEL_FILES[split], index=False)
  for name, data in files.items():
    (roots["folder"] / name).parent.mkdir(exist_ok=True)
    (roots["folder"] / name).write_bytes(data)
  with zipfile.ZipFile(roots["zip"] / "fairface-img-margin025-trainval.zip", "w") as archive:
    for name, data in files.items():
      archive.writestr(name, data)
  return {**roots, "tables": tables, "files": files}


def test_labels_are_mapped_by_name_and_originals_kept(ff):
  frame = fairface.labels_from_csv(ff["folder"] / fairface.LABEL_FILES["train"])
  rows = ff["tables"]["train"]
  assert list(frame.columns) == list(schema.METADATA_COLUMNS) + ["age_bin", "race7", "service_test"]
  assert frame.file_name.tolist() == [row["file"] for row in rows]
  for (_, got), row in zip(frame.iterrows(), rows):
    assert schema.RACES[got.race] == RACE7_TO_SCHEMA[row["race"]]
    assert fairface.RACES7[got.race7] == row["race"]
    assert schema.GENDERS[got.gender] == row["gender"].lower()
    assert got.age == AGE_BIN_TO_YEARS[row["age"]] and fairface.AGE_BINS[got.age_bin] == row["age"]
    assert got.service_test == (row["service_test"] == "True")
  assert {frame[c].dtype for c in ("age", "gender", "race", "age_bin", "race7")} == {np.dtype(np.int32)}
  assert frame.service_test.dtype == bool


def test_unknown_label_names_and_missing_columns_fail_loudly(tmp_path):
  assert sorted(fairface.AGE_BIN_YEARS) == sorted(fairface.AGE_BINS)
  assert sorted(fairface.RACE_CODES) == sorted(fairface.RACES7)
  bad = _rows("train", 3)
  bad[0]["race"], bad[1]["race"], bad[2]["age"], bad[1]["gender"] = "Asian", "Asian", "70+", "M"
  pd.DataFrame(bad).to_csv(tmp_path / "labels.csv", index=False)
  with pytest.raises(ValueError) as error:
    fairface.labels_from_csv(tmp_path / "labels.csv")
  message = str(error.value)  # every unknown name of every column, with its count
  assert "unknown age names '70+' (1 rows)" in message and "unknown gender names 'M' (1 rows)" in message
  assert "unknown race names 'Asian' (2 rows) (known: ['White'," in message
  pd.DataFrame(bad).drop(columns=["service_test"]).to_csv(tmp_path / "labels.csv", index=False)
  with pytest.raises(ValueError, match="missing columns \\['service_test'\\]"):
    fairface.labels_from_csv(tmp_path / "labels.csv")


def test_reader_records_and_skips(ff):
  reader = fairface.FairFaceReader(ff["folder"], "train")
  records = list(reader)
  assert [r["file_name"] for r in records] == [f"train/{i}.jpg" for i in range(1, 17) if i not in (4, 5)]
  for record in records:
    assert set(record) == {"image", "age", "gender", "race", "file_name", "age_bin", "race7", "service_test"}
    assert record["image"].shape == (12, 12, 3) and record["image"].dtype == np.uint8
    assert record["race"].dtype == np.int32 and record["service_test"].dtype == np.bool_
  gray = {r["file_name"]: r for r in records}["train/6.jpg"]["image"]
  assert np.array_equal(gray[..., 0], gray[..., 2])
  reasons = {s["file"]: s["reason"] for s in reader.skipped}
  assert set(reasons) == {"train/1.jpg", "train/4.jpg", "train/5.jpg"}
  assert "listed again" in reasons["train/1.jpg"] and "not found" in reasons["train/4.jpg"]
  assert "unreadable image" in reasons["train/5.jpg"]
  frame, skipped = fairface.scan_metadata(ff["folder"], "train")
  assert len(frame) == 16 and [s["file"] for s in skipped] == ["train/1.jpg"]


def test_zip_and_folder_give_the_same_source(ff, tmp_path, image_bytes):
  for split in fairface.LABEL_FILES:
    a, b = fairface.load(ff["folder"], split), fairface.load(ff["zip"], split, image_size=(12, 12))
    np.testing.assert_array_equal(a.images, b.images)
    assert a.metadata.equals(b.metadata)
    assert [s["file"] for s in a.skipped] == [s["file"] for s in b.skipped]
  assert len(a) == 5 and a[2]["file_name"] == "val/3.jpg" and a[2]["race7"] == 2
  assert fairface.load(ff["zip"], "validation", image_size=(6, 4)).images.shape == (5, 6, 4, 3)
  # A zip that wraps everything in one folder reads too.
  root = tmp_path / "wrapped"
  root.mkdir()
  pd.DataFrame(_rows("val", 2)).to_csv(root / fairface.LABEL_FILES["validation"], index=False)
  with zipfile.ZipFile(root / "fairface-img-margin125-trainval.zip", "w") as archive:
    for i in (1, 2):
      archive.writestr(f"fairface/val/{i}.jpg", image_bytes(i))
  assert len(fairface.load(root, "validation")) == 2


def test_missing_files_say_what_is_expected(ff, tmp_path):
  with pytest.raises(FileNotFoundError, match="fairface_label_train.csv"):
    fairface.scan_metadata(tmp_path, "train")
  with pytest.raises(ValueError, match="splits: \\['train', 'validation'\\]"):
    fairface.FairFaceReader(ff["folder"], "val")
  for split in fairface.LABEL_FILES:
    (tmp_path / fairface.LABEL_FILES[split]).write_text((ff["folder"] / fairface.LABEL_FILES[split]).read_text())
  with pytest.raises(FileNotFoundError, match="fairface-img-margin025-trainval.zip"):
    list(fairface.FairFaceReader(tmp_path, "train"))


def test_tfds_builder_yields_the_direct_readers_examples(ff, tmp_path):
  import tensorflow_datasets as tfds
  import fairjax.data.tfds_builders  # noqa: F401  (registers the builders)

  builder = tfds.builder("fairface", data_dir=tmp_path)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=ff["zip"]))
  for split in fairface.LABEL_FILES:
    direct = {r["file_name"]: r for r in fairface.FairFaceReader(ff["folder"], split)}
    examples = {e["file_name"].decode(): e for e in tfds.as_numpy(builder.as_dataset(split))}
    assert sorted(examples) == sorted(direct)
    for name, record in direct.items():
      np.testing.assert_array_equal(examples[name]["image"], record["image"])
      for field in ("age", "gender", "race", "age_bin", "race7", "service_test"):
        assert examples[name][field] == record[field], (name, field)
  assert builder.info.features["race7"].names == list(fairface.RACES7)
  skipped = tfds.builder("fairface", data_dir=tmp_path).info.metadata["skipped"]
  assert {s["file"] for s in skipped["train"]} == {"train/1.jpg", "train/4.jpg", "train/5.jpg"}
  assert skipped["validation"] == []
  written = json.loads((pathlib.Path(builder.data_dir) / "metadata.json").read_text())
  assert written["skipped"] == skipped
