"""UTKFace: file-name labels, skips with reasons, and the same records from folder, archive and TFDS."""

import json
import logging
import pathlib
import tarfile

import numpy as np
import pytest

from fairjax.data import schema
from fairjax.data import utkface

REAL_ARCHIVE = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "UTKFace.tar.gz"
KNOWN_BAD = ("39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
             "61_1_20170109150557335.jpg.chip.jpg")
MALFORMED = {  # name -> a phrase its skip reason must contain
    "abc_1_0_20170109150557335.jpg.chip.jpg": "age 'abc' is not a non-negative integer",
    "abc_1_0_x.jpg.chip.jpg": "age 'abc'",
    "200_0_0_20170109150557335.jpg.chip.jpg": "age 200 is outside 0..116",
    "30_0_7_20170109150557335.jpg.chip.jpg": "race 7 is not in 0..4",
    "30_2_0_20170109150557335.jpg.chip.jpg": "gender 2 is not in 0..1",
    "30_1_x_20170109150557335.jpg.chip.jpg": "race 'x'",
    "30_1_-1_20170109150557335.jpg.chip.jpg": "race '-1'",
    "1_0_0_2_3.jpg.chip.jpg": "found 5",
    ".DS_Store": "found 1",
}
TRUNCATED = "41_0_3_20170119171541497.jpg.chip.jpg"
GRAY, PNG, CMYK = ("25_1_2_20170116000000001.jpg.chip.jpg", "26_0_3_20170116000000002.jpg.chip.jpg",
                   "27_1_4_20170116000000003.jpg.chip.jpg")
# Real names with stray characters in the datetime field, which carries no label: they must be read.
ODD_DATETIME = ("55_0_0_20170116232725357jpg.chip.jpg", "24_0_1_20170116220224657 .jpg.chip.jpg")


def _good_names(n=30):
  return [f"{(7 * i) % 117}_{i % 2}_{i % 5}_2017011{i:010d}.jpg.chip.jpg" for i in range(n)]


@pytest.fixture(scope="session")
def utk(tmp_path_factory, image_bytes):
  """A fake UTKFace release: folder_dir/UTKFace/ and archive_dir/UTKFace.tar.gz with the same files."""
  root = tmp_path_factory.mktemp("utkface")
  folder = root / "folder_dir" / "UTKFace"
  folder.mkdir(parents=True)
  files = {name: image_bytes(i) for i, name in enumerate(_good_names() + list(ODD_DATETIME))}
  files.update({name: image_bytes(100 + i) for i, name in enumerate(KNOWN_BAD + tuple(MALFORMED))})
  files[TRUNCATED] = image_bytes(200, size=(64, 64))[:400]
  files[GRAY] = image_bytes(201, mode="L")
  files[PNG] = image_bytes(202, fmt="PNG", mode="RGBA")
  files[CMYK] = image_bytes(203, mode="CMYK")
  for name, data in files.items():
    (folder / name).write_bytes(data)
  archive_dir = root / "archive_dir"
  archive_dir.mkdir()
  with tarfile.open(archive_dir / utkface.ARCHIVE_NAME, "w:gz") as tar:
    tar.add(folder, arcname="UTKFace")
  return {"root": root, "folder": folder, "archive": archive_dir / utkface.ARCHIVE_NAME,
          "readable": sorted(set(_good_names()) | set(ODD_DATETIME) | {GRAY, PNG, CMYK})}


def _by_name(records):
  return {r["file_name"]: r for r in records}


def test_parse_file_name_labels_and_reasons():
  assert utkface.parse_file_name("41_0_3_20170119171541497.jpg.chip.jpg") == (
      {"age": 41, "gender": 0, "race": 3}, None)
  assert utkface.parse_file_name("UTKFace/116_1_4_20170119171541497.jpg.chip.jpg")[0] == {
      "age": 116, "gender": 1, "race": 4}
  for name in ODD_DATETIME:
    assert utkface.parse_file_name(name)[1] is None
  for name in KNOWN_BAD:
    labels, reason = utkface.parse_file_name(name)
    assert labels is None and "found 3" in reason  # the race is missing; the datetime is no race
  for name, phrase in MALFORMED.items():
    labels, reason = utkface.parse_file_name(name)
    assert labels is None and phrase in reason, (name, reason)


def test_folder_reader_records_and_skips(utk, caplog):
  reader = utkface.UTKFaceReader(utk["folder"])
  with caplog.at_level(logging.WARNING):
    records = list(reader)
  assert [r["file_name"] for r in records] == utk["readable"]  # a folder reads sorted
  for record in records:
    assert set(record) == {"image", "age", "gender", "race", "file_name"}
    assert record["image"].dtype == np.uint8 and record["image"].shape == (16, 20, 3)
    labels, _ = utkface.parse_file_name(record["file_name"])
    assert {k: record[k] for k in labels} == labels
    assert all(record[k].dtype == np.int32 for k in labels)
  by_name = _by_name(records)
  gray = by_name[GRAY]["image"]
  assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
  assert by_name[PNG]["image"].std() > 0 and by_name[CMYK]["image"].std() > 0

  reasons = {s["file"]: s["reason"] for s in reader.skipped}
  assert set(reasons) == set(KNOWN_BAD) | set(MALFORMED) | {TRUNCATED}
  assert len(reader.skipped) == len(reasons)
  assert "unreadable image" in reasons[TRUNCATED] and "truncated" in reasons[TRUNCATED].lower()
  for name, phrase in MALFORMED.items():
    assert phrase in reasons[name]
  logged = " ".join(r.getMessage() for r in caplog.records)
  assert "skipped 13 of 48 files" in logged and all(name in logged for name in reasons)


def test_archive_and_folder_give_the_same_records_and_skips(utk):
  folder, archive = utkface.UTKFaceReader(utk["folder"]), utkface.UTKFaceReader(utk["archive"])
  from_folder, from_archive = _by_name(folder), _by_name(archive)
  assert sorted(from_archive) == utk["readable"]
  for name, record in from_folder.items():
    other = from_archive[name]
    np.testing.assert_array_equal(record["image"], other["image"])
    assert {k: record[k] for k in ("age", "gender", "race")} == {k: other[k] for k in ("age", "gender", "race")}
  assert sorted(map(str, folder.skipped)) == sorted(map(str, archive.skipped))

  # The decoded, random-access source is sorted by name, so it is the same from either.
  a, b = utkface.load(utk["folder"], image_size=(8, 10)), utkface.load(utk["archive"], image_size=(8, 10))
  assert a.images.shape == (len(utk["readable"]), 8, 10, 3)
  np.testing.assert_array_equal(a.images, b.images)
  assert a.metadata.equals(b.metadata) and list(a.metadata.columns) == list(schema.METADATA_COLUMNS)
  assert a.metadata.file_name.tolist() == utk["readable"]
  record = a[3]
  assert record["file_name"] == utk["readable"][3] and record["race"].dtype == np.int32
  np.testing.assert_array_equal(record["image"], a.images[3])
  assert len(a.skipped) == 13


def test_metadata_scan_reads_names_only(utk):
  frame, skipped = utkface.scan_metadata(utk["archive"])
  again, skipped_again = utkface.scan_metadata(utk["folder"])
  assert frame.equals(again)  # sorted by name, whatever the archive's order
  assert sorted(map(str, skipped)) == sorted(map(str, skipped_again))
  assert list(frame.columns) == list(schema.METADATA_COLUMNS)
  assert {frame[c].dtype for c in ("age", "gender", "race")} == {np.dtype(np.int32)}
  # Names only: the truncated image is listed (the reader skips it); malformed names are not.
  assert frame.file_name.tolist() == sorted(utk["readable"] + [TRUNCATED])
  assert {s["file"] for s in skipped} == set(KNOWN_BAD) | set(MALFORMED)
  row = frame.set_index("file_name").loc["55_0_0_20170116232725357jpg.chip.jpg"]
  assert (row.age, row.gender, row.race) == (55, 0, 0)


def test_missing_or_wrong_source_errors_say_what_is_expected(tmp_path):
  with pytest.raises(FileNotFoundError, match="UTKFace.tar.gz"):
    utkface.find_source(tmp_path)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    list(utkface.UTKFaceReader(tmp_path / "nowhere"))
  not_tar = tmp_path / "UTKFace.tar.gz"
  not_tar.write_bytes(b"not an archive")
  with pytest.raises(ValueError, match="not a .*tar archive"):
    utkface.scan_metadata(not_tar)
  assert utkface.find_source(tmp_path) == str(not_tar)
  # The archive or the extracted folder may also be named directly.
  assert utkface.find_source(not_tar) == str(not_tar)
  folder = tmp_path / "faces"
  folder.mkdir()
  (folder / "25_0_0_20170116232725357.jpg.chip.jpg").write_bytes(b"")
  assert utkface.find_source(folder) == str(folder)


def test_tfds_builder_yields_the_direct_readers_examples(utk, tmp_path):
  import tensorflow_datasets as tfds
  import fairjax.data.tfds_builders  # noqa: F401  (registers the builders)

  data_dir = tmp_path / "tfds"
  builder = tfds.builder("utkface", data_dir=data_dir)
  assert builder.version == "1.0.0"
  config = tfds.download.DownloadConfig(manual_dir=utk["archive"].parent)
  builder.download_and_prepare(download_config=config)
  examples = _by_name(
      {**e, "file_name": e["file_name"].decode()} for e in tfds.as_numpy(builder.as_dataset("train")))
  direct = _by_name(utkface.UTKFaceReader(utk["folder"]))
  assert sorted(examples) == sorted(direct) == utk["readable"]
  for name, record in direct.items():
    np.testing.assert_array_equal(examples[name]["image"], record["image"])
    assert [int(examples[name][k]) for k in ("age", "gender", "race")] == [record[k] for k in ("age", "gender", "race")]
  assert builder.info.features["race"].names == list(schema.RACES)

  reloaded = tfds.builder("utkface", data_dir=data_dir)  # from the prepared files alone
  skipped = {s["file"]: s["reason"] for s in reloaded.info.metadata["skipped"]}
  assert set(skipped) == set(KNOWN_BAD) | set(MALFORMED) | {TRUNCATED}
  written = json.loads((pathlib.Path(builder.data_dir) / "metadata.json").read_text())
  assert {s["file"] for s in written["skipped"]} == set(skipped)

  empty = tmp_path / "manual"
  empty.mkdir()
  (empty / "unrelated.txt").write_text("x")
  with pytest.raises(FileNotFoundError, match="UTKFace.tar.gz"):
    tfds.builder("utkface", data_dir=tmp_path / "other").download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=empty))


def test_real_archive_counts_match_the_readme():
  if not REAL_ARCHIVE.is_file():
    pytest.skip(f"the real UTKFace archive is not at {REAL_ARCHIVE} (it is never in the repository; "
                f"see ../shared/data/README.md)")
  # Its speed (names only, one pass) is measured by benchmarks/input_pipeline.py, not asserted here.
  frame, skipped = utkface.scan_metadata(REAL_ARCHIVE)
  assert len(frame) == 23_705 and frame.file_name.is_unique
  assert sorted(s["file"] for s in skipped) == sorted(KNOWN_BAD)
  assert all("found 3" in s["reason"] for s in skipped)
  assert frame.gender.value_counts().sort_index().tolist() == [12_391, 11_314]
  assert frame.race.value_counts().sort_index().tolist() == [10_078, 4_526, 3_434, 3_975, 1_692]
  assert frame.age.between(0, utkface.MAX_AGE).all()
