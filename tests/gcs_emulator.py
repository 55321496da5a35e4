"""A Google Cloud Storage server on localhost, for tests of ``gs://`` workdirs without the network.

gcp-storage-emulator serves GCS's JSON API from this process's memory, and both clients of a run's
workdir are pointed at it through their own settings (``GcsEmulator.env``): orbax's tensorstore
(``TENSORSTORE_GCS_HTTP_URL``) and etils.epath's fsspec backend, gcsfs (``STORAGE_EMULATOR_HOST``).
``EPATH_USE_TF=false``: with TensorFlow installed, epath would reach ``gs://`` through tf.io.gfile,
whose GCS client has no emulator endpoint, so that backend is the one path to GCS not tested here.
``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``: otherwise gcsfs asks a gRPC control API for each bucket's
type, which the emulator does not serve (a 60 s timeout per call).

One gap of the emulator is filled here: its downloads carry no ``x-goog-generation`` header, which GCS
sends and tensorstore reads as the object's generation (without it every read after a write fails with
"Malformed StorageGeneration"). The emulator does not check write preconditions (``ifGenerationMatch``),
so what two writers racing on one object would do is not tested through it.
"""

import os
import socket

from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.server import create_server


def _with_generation_header(download):
  if getattr(download, "adds_generation", False):
    return download

  def wrapped(request, response, storage, *args, **kwargs):
    download(request, response, storage, *args, **kwargs)
    try:
      found = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
    except Exception:  # noqa: BLE001 - not found: the emulator has answered 404 already
      return
    response["x-goog-generation"] = found["generation"]

  wrapped.adds_generation = True
  return wrapped


# gcsfs reads this once, when it is first imported; this process's own gcsfs (the test's reads, and epath in
# tests that write to the server in-process) must not look bucket types up either.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


class GcsEmulator:
  """``with GcsEmulator("bucket") as gcs:``: a server holding one empty bucket at ``gcs.url``."""

  def __init__(self, bucket: str):
    self.bucket = bucket
    objects.download = _with_generation_header(objects.download)  # objects.get serves alt=media by it
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    self.url = f"http://127.0.0.1:{port}"
    self._server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)

  @property
  def env(self) -> dict:
    """The environment under which a process's ``gs://`` reads and writes reach this server."""
    return {"STORAGE_EMULATOR_HOST": self.url, "TENSORSTORE_GCS_HTTP_URL": self.url,
            "EPATH_USE_TF": "false", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}

  def filesystem(self):
    """A gcsfs client of this server, for the test's own reads."""
    from gcsfs.core import GCSFileSystem  # the plain client: no bucket-type lookup
    return GCSFileSystem(endpoint_url=self.url, token="anon", skip_instance_cache=True)

  def __enter__(self) -> "GcsEmulator":
    self._server.start()
    return self

  def __exit__(self, *exc) -> None:
    self._server.stop()
