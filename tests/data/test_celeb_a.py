"""CelebA: the stock TFDS builder, fed files in CelebA's own formats, mapped into the schema."""

import io
import zipfile
from unittest import mock

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from fairjax.data import celeb_a
from fairjax.data import schema

# file -> (partition 0 train / 1 validation / 2 test, Male, Young, identity)
EXAMPLES = {"000001.jpg": (0, True, True, 2880), "000002.jpg": (0, False, True, 2937),
            "000003.jpg": (0, False, False, 8692), "000004.jpg": (1, True, False, 5805),
            "000005.jpg": (1, False, True, 9295), "000006.jpg": (2, True, True, 4153)}
LANDMARKS = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"


def _attributes(name, male, young):
  """+1 / -1 per attribute as in list_attr_celeba.txt; Male and Young as given, the rest varied."""
  seed = int(name[:6])
  return [1 if (a == "Male" and male) or (a == "Young" and young) or
          (a not in ("Male", "Young") and (i + seed) % 3 == 0) else -1
          for i, a in enumerate(celeb_a.ATTRIBUTES)]


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory, image_bytes):
  """The five files the stock builder downloads, in their formats, for EXAMPLES (218x178 JPEGs)."""
  root = tmp_path_factory.mktemp("celeb_a_files")
  with zipfile.ZipFile(root / "img_align_celeba.zip", "w") as archive:
    for i, name in enumerate(EXAMPLES):
      archive.writestr(f"img_align_celeba/{name}", image_bytes(i, size=(178, 218)))
  (root / "list_eval_partition.txt").write_text("".join(f"{n} {v[0]}\n" for n, v in EXAMPLES.items()))
  attr_rows = "".join(f"{n} " + " ".join(f"{a:2d}" for a in _attributes(n, v[1], v[2])) + "\n"
                      for n, v in EXAMPLES.items())
  (root / "list_attr_celeba.txt").write_text(f"{len(EXAMPLES)}\n{' '.join(celeb_a.ATTRIBUTES)} \n{attr_rows}")
  landmark_rows = "".join(f"{n} " + " ".join(str(60 + i + j) for j in range(10)) + "\n"
                          for i, n in enumerate(EXAMPLES))
  (root / "list_landmarks_align_celeba.txt").write_text(f"{len(EXAMPLES)}\n{LANDMARKS}\n{landmark_rows}")
  (root / "identity_CelebA.txt").write_text("".join(f"{n} {v[3]}\n" for n, v in EXAMPLES.items()))
  return root


@pytest.fixture(scope="module")
def builder(files_dir, tmp_path_factory):
  """The stock builder prepared from files_dir, its registered checksums swapped for the fake files'."""
  builder_cls = tfds.builder_cls("celeb_a")
  fake_infos = {url: tfds.download.checksums.compute_url_info(files_dir / info.filename)
                for url, info in builder_cls.url_infos.items()}
  assert sorted(info.filename for info in fake_infos.values()) == sorted(celeb_a.FILES)
  with mock.patch.object(builder_cls, "url_infos", fake_infos):
    return celeb_a.prepare(data_dir=tmp_path_factory.mktemp("tfds"), files_dir=files_dir)


def test_examples_map_into_the_schema(builder, files_dir):
  with zipfile.ZipFile(files_dir / "img_align_celeba.zip") as archive:
    originals = {name: np.asarray(Image.open(io.BytesIO(archive.read(f"img_align_celeba/{name}"))))
                 for name in EXAMPLES}
  seen = {}
  for split, partition in zip(celeb_a.SPLITS, range(3)):
    source = celeb_a.CelebASource(builder, split)
    assert len(source) == sum(v[0] == partition for v in EXAMPLES.values())
    for index in range(len(source)):
      record = source[index]
      assert record["file_name"] == f"celeb_a/{split}/{index}"
      assert record["image"].shape == (218, 178, 3) and record["image"].dtype == np.uint8
      assert record["age"] == record["race"] == schema.UNKNOWN
      assert all(record[k].dtype == np.int32 for k in ("age", "gender", "race", "identity"))
      # The stock builder drops file names; the identity number finds the example's file here.
      name = next(n for n, v in EXAMPLES.items() if v[3] == record["identity"])
      part, male, young, _ = EXAMPLES[name]
      assert part == partition and record["gender"] == (0 if male else 1) and record["Young"] == young
      assert [record[a] for a in celeb_a.ATTRIBUTES] == [v > 0 for v in _attributes(name, male, young)]
      # TensorFlow decodes the JPEG, so pixels may differ from PIL's by a few levels.
      assert np.abs(record["image"].astype(int) - originals[name]).max() <= 8
      seen[name] = record
  assert sorted(seen) == sorted(EXAMPLES)
  with pytest.raises(IndexError):
    celeb_a.CelebASource(builder, "test")[1]


def test_metadata_without_images(builder):
  source = celeb_a.CelebASource(builder, "train")
  frame = source.metadata(chunk_size=2)
  assert list(frame.columns) == list(celeb_a.COLUMNS) and len(frame) == 3
  for index, row in frame.iterrows():
    record = source[index]
    assert all(row[c] == record[c] for c in celeb_a.COLUMNS)
  assert frame.gender.dtype == np.int32 and frame.Male.dtype == bool
  assert sorted(frame.identity) == [2880, 2937, 8692]


def test_missing_files_are_named(tmp_path, files_dir):
  (tmp_path / "list_eval_partition.txt").write_text((files_dir / "list_eval_partition.txt").read_text())
  with pytest.raises(FileNotFoundError) as error:
    celeb_a.prepare(data_dir=tmp_path / "tfds", files_dir=tmp_path)
  message = str(error.value)
  assert str(tmp_path / "img_align_celeba.zip") in message and "identity_CelebA.txt" in message
  assert "list_eval_partition.txt" not in message
  with pytest.raises(ValueError, match="unknown CelebA split"):
    celeb_a.CelebASource(None, "val")
