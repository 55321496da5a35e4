"""The decoded-source cache behind ``utkface.load``: a second load reads the cache and gives the same source;
a changed source, size or a broken entry decodes again; the root follows the environment."""

import logging
import os
import tarfile

import numpy as np
import pytest

from fairjax.data import datasets
from fairjax.data import decoded_cache
from fairjax.data import utkface

NAMES = [f"{20 + i}_{i % 2}_{i % 5}_2017011600000{i:04d}.jpg.chip.jpg" for i in range(7)]
BAD_NAME = "39_1_20170116174525125.jpg.chip.jpg"  # no race field
TRUNCATED = "41_0_3_20170119171541497.jpg.chip.jpg"


@pytest.fixture
def faces(tmp_path, image_bytes):
  """A small UTKFace folder and its archive (with one malformed name and one unreadable image)."""
  folder = tmp_path / "src" / "UTKFace"
  folder.mkdir(parents=True)
  for i, name in enumerate(NAMES + [BAD_NAME]):
    (folder / name).write_bytes(image_bytes(i))
  (folder / TRUNCATED).write_bytes(image_bytes(99)[:300])
  archive = tmp_path / "src" / utkface.ARCHIVE_NAME
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(folder, arcname="UTKFace")
  return {"folder": folder, "archive": archive, "cache": tmp_path / "cache"}


@pytest.fixture
def decodes(monkeypatch):
  """Counts images decoded, so a test can tell a cache hit (none) from a decode."""
  calls = []
  decode = utkface.decode_image

  def counting(data, image_size=None):
    calls.append(1)
    return decode(data, image_size)

  monkeypatch.setattr(utkface, "decode_image", counting)
  return calls


def _assert_same(a: utkface.DecodedSource, b: utkface.DecodedSource):
  assert a.images.dtype == b.images.dtype == np.uint8 and a.images.shape == b.images.shape
  np.testing.assert_array_equal(a.images, b.images)
  assert a.metadata.equals(b.metadata) and a.metadata.dtypes.equals(b.metadata.dtypes)
  assert list(a.metadata.columns) == list(b.metadata.columns)
  assert a.skipped == b.skipped
  for i in range(len(a)):
    x, y = a[i], b[i]
    assert set(x) == set(y) and x["file_name"] == y["file_name"] and type(x["age"]) is type(y["age"])
    assert all(x[k] == y[k] for k in ("age", "gender", "race"))


@pytest.mark.parametrize("source", ["archive", "folder"])
def test_second_load_comes_from_the_cache_and_is_identical(faces, decodes, source, monkeypatch, caplog):
  monkeypatch.setenv(decoded_cache.ENVIRONMENT, decoded_cache.OFF)
  decoded = utkface.load(faces[source], image_size=(8, 10))
  assert len(decodes) == len(NAMES) + 1 and len(decoded) == len(NAMES)  # the truncated one is skipped
  assert {s["file"] for s in decoded.skipped} == {BAD_NAME, TRUNCATED}
  assert not faces["cache"].exists()  # 'off' writes nothing

  first = utkface.load(faces[source], image_size=(8, 10), cache_dir=str(faces["cache"]))
  assert len(decodes) == 2 * (len(NAMES) + 1)
  (entry,) = os.listdir(faces["cache"])
  assert entry.startswith("utkface-")
  assert np.load(faces["cache"] / entry / "images.npy", mmap_mode="r").shape == (len(NAMES), 8, 10, 3)
  del decodes[:]
  with caplog.at_level(logging.WARNING):
    second = utkface.load(faces[source], image_size=(8, 10), cache_dir=str(faces["cache"]))
  assert not decodes, "the second load decoded images instead of reading the cache"
  assert second.images.flags.writeable
  _assert_same(second, decoded)
  _assert_same(first, decoded)
  assert BAD_NAME in caplog.text and TRUNCATED in caplog.text  # skips are reported from the cache too


def test_the_environment_variable_places_the_cache(faces, decodes, monkeypatch):
  monkeypatch.setenv(decoded_cache.ENVIRONMENT, str(faces["cache"]))
  split = datasets.load("utkface", "train", manual_dir=str(faces["archive"].parent), image_size=(8, 8))
  assert len(split.metadata) == len(NAMES) and len(os.listdir(faces["cache"])) == 1
  del decodes[:]
  again = datasets.load("utkface", "train", manual_dir=str(faces["archive"].parent), image_size=(8, 8))
  assert not decodes
  _assert_same(again.source, split.source)
  assert again.metadata.equals(split.metadata) and again.skipped == split.skipped


def test_a_changed_source_or_image_size_is_decoded_again(faces, decodes):
  cache = str(faces["cache"])
  base = utkface.load(faces["archive"], (8, 10), cache_dir=cache)
  utkface.load(faces["archive"], (8, 10), cache_dir=cache)
  per_load = len(NAMES) + 1
  assert len(decodes) == per_load
  utkface.load(faces["archive"], (6, 6), cache_dir=cache)  # another size, another entry
  assert len(decodes) == 2 * per_load

  stat = os.stat(faces["archive"])
  os.utime(faces["archive"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: mtime
  utkface.load(faces["archive"], (8, 10), cache_dir=cache)
  assert len(decodes) == 3 * per_load

  # Rewritten without one face (size and content change): the cache must not hand back the old set.
  (faces["folder"] / NAMES[0]).unlink()
  with tarfile.open(faces["archive"], "w:gz") as tar:
    tar.add(faces["folder"], arcname="UTKFace")
  fewer = utkface.load(faces["archive"], (8, 10), cache_dir=cache)
  assert len(decodes) == 4 * per_load - 1 and len(fewer) == len(base) - 1

  # A folder: touching or adding a file changes its listing.
  utkface.load(faces["folder"], (8, 10), cache_dir=cache)
  utkface.load(faces["folder"], (8, 10), cache_dir=cache)
  assert len(decodes) == 5 * per_load - 2
  os.utime(faces["folder"] / NAMES[1], ns=(0, 10**18))
  utkface.load(faces["folder"], (8, 10), cache_dir=cache)
  assert len(decodes) == 6 * per_load - 3
  (faces["folder"] / NAMES[0]).write_bytes((faces["folder"] / NAMES[1]).read_bytes())
  assert len(utkface.load(faces["folder"], (8, 10), cache_dir=cache)) == len(base)
  assert len(decodes) == 7 * per_load - 3


@pytest.mark.parametrize("broken", ["images.npy", "metadata.npz", "skipped.json", "manifest.json"])
def test_a_corrupt_entry_is_rebuilt(faces, decodes, broken, caplog):
  cache = faces["cache"]
  good = utkface.load(faces["archive"], (8, 10), cache_dir=str(cache))
  (entry,) = os.listdir(cache)
  file = cache / entry / broken
  file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
  del decodes[:]
  with caplog.at_level(logging.WARNING):
    rebuilt = utkface.load(faces["archive"], (8, 10), cache_dir=str(cache))
  assert decodes and "unreadable cache entry" in caplog.text
  _assert_same(rebuilt, good)
  del decodes[:]
  _assert_same(utkface.load(faces["archive"], (8, 10), cache_dir=str(cache)), good)
  assert not decodes  # the rebuilt entry is whole again
  assert os.listdir(cache) == [entry]


def test_a_killed_write_leaves_no_entry(faces, decodes, monkeypatch):
  def killed(*args, **kwargs):
    raise KeyboardInterrupt  # as if the run were stopped half way through writing the entry

  with monkeypatch.context() as patch:
    patch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
      utkface.load(faces["archive"], (8, 10), cache_dir=str(faces["cache"]))
  left = os.listdir(faces["cache"])
  assert left and all(name.startswith(".scratch-") for name in left)  # scratch only, no entry
  del decodes[:]
  whole = utkface.load(faces["archive"], (8, 10), cache_dir=str(faces["cache"]))
  assert decodes and len(whole) == len(NAMES)
  del decodes[:]
  _assert_same(utkface.load(faces["archive"], (8, 10), cache_dir=str(faces["cache"])), whole)
  assert not decodes


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.delenv(decoded_cache.ENVIRONMENT, raising=False)
  monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
  assert decoded_cache.cache_root() == os.path.join(os.path.expanduser("~"), ".cache", "fairjax")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert decoded_cache.cache_root() == str(tmp_path / "xdg" / "fairjax")
  monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: relative paths are invalid
  assert decoded_cache.cache_root() == os.path.join(os.path.expanduser("~"), ".cache", "fairjax")
  monkeypatch.setenv(decoded_cache.ENVIRONMENT, "")  # empty counts as unset
  assert decoded_cache.cache_root() == os.path.join(os.path.expanduser("~"), ".cache", "fairjax")
  monkeypatch.setenv(decoded_cache.ENVIRONMENT, str(tmp_path / "mine"))
  assert decoded_cache.cache_root() == str(tmp_path / "mine")
  for off in ("off", "OFF"):
    monkeypatch.setenv(decoded_cache.ENVIRONMENT, off)
    assert decoded_cache.cache_root() is None


def test_a_source_without_readable_images_is_not_cached(tmp_path, image_bytes, monkeypatch):
  folder = tmp_path / "UTKFace"
  folder.mkdir()
  (folder / BAD_NAME).write_bytes(image_bytes(0))
  (folder / TRUNCATED).write_bytes(image_bytes(1)[:300])
  monkeypatch.setenv(decoded_cache.ENVIRONMENT, decoded_cache.OFF)
  decoded = utkface.load(folder, (8, 10))
  again = utkface.load(folder, (8, 10), cache_dir=str(tmp_path / "cache"))
  assert len(again) == 0 and again.skipped == decoded.skipped and len(again.skipped) == 2
  assert again.metadata.dtypes.equals(decoded.metadata.dtypes)
  assert not (tmp_path / "cache").exists() or not os.listdir(tmp_path / "cache")
