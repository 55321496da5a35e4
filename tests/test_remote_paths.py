"""``fairjax.paths`` on a remote folder: a GCS bucket on a localhost server (``tests/gcs_emulator.py``).

A whole run in a bucket is tested in ``tests/train/test_processes.py``; this checks, in-process, the copy
that a remote run's CLIP export goes through (its writers write local files only).
"""

import os
import subprocess
import sys

from fairjax import paths
from tests.gcs_emulator import GcsEmulator


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_copy_tree_puts_every_file_of_a_local_folder_in_a_bucket(tmp_path):
  source = tmp_path / "export"
  (source / "nested" / "deeper").mkdir(parents=True)
  files = {"config.json": b'{"a": 1}\n', "model.safetensors": bytes(range(256)) * 40,
           "nested/vocab.json": b"{}", "nested/deeper/merges.txt": b"#version\n"}
  for name, data in files.items():
    (source / name).write_bytes(data)
  with GcsEmulator("fairjax-paths") as gcs:
    # In a process of its own, as in a run: epath picks its gs:// backend once per process.
    subprocess.run([sys.executable, "-c", "import sys; from fairjax import paths; paths.copy_tree(*sys.argv[1:])",
                    str(source), "gs://fairjax-paths/run/clip_checkpoint"], env={**os.environ, **gcs.env},
                   cwd=ROOT, check=True, timeout=120)
    store = gcs.filesystem()
    found = {path.split("/clip_checkpoint/", 1)[1]: store.cat(path)
             for path in store.find("fairjax-paths/run/clip_checkpoint")}
  assert found == files
  # A local target is a plain copy.
  paths.copy_tree(source, tmp_path / "copy")
  assert {p.relative_to(tmp_path / "copy").as_posix(): p.read_bytes()
          for p in (tmp_path / "copy").rglob("*") if p.is_file()} == files
