"""Shared fixtures for the face source tests: small real-format images the tests write themselves."""

import io

import numpy as np
from PIL import Image
import pytest


def encode_image(seed: int, fmt: str = "JPEG", mode: str = "RGB", size: tuple[int, int] = (20, 16)) -> bytes:
  """A small smooth image (distinct per seed) encoded as ``fmt`` in colour ``mode``; size is (w, h)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:size[1], 0:size[0]]
  base = rng.uniform(40, 200, 3)
  slope = rng.uniform(-4, 4, (2, 3))
  pixels = np.clip(base + x[..., None] * slope[0] + y[..., None] * slope[1], 0, 255).astype(np.uint8)
  image = Image.fromarray(pixels, "RGB")
  if mode != "RGB":
    image = image.convert(mode)
  buffer = io.BytesIO()
  image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
  return buffer.getvalue()


@pytest.fixture(scope="session")
def image_bytes():
  """``image_bytes(seed, fmt="JPEG", mode="RGB", size=(w, h)) -> bytes``."""
  return encode_image
