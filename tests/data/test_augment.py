"""On-device augmentation: each transform's maths, and train_images' keying of copies and draws."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest

from fairjax.data import augment


def _image(seed=0, size=(12, 16)):
  return jax.random.uniform(jax.random.key(seed), size + (3,), jnp.float32)


def _data_config(**augment_overrides):
  config = ml_collections.ConfigDict(dict(augment=augment.default_config(), mean=(0.0,), std=(1.0,), grayscale=False))
  config.augment.update(augment_overrides)
  return config


def _batch(n=8, size=16, seeds=(-1, 0, 1, -1, 7, -1, 3, 2)):
  rng = np.random.default_rng(0)
  return {"image": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
          "index": np.arange(100, 100 + n, dtype=np.int32), "augment_seed": np.asarray(seeds[:n], np.int32)}


def test_flip_mirrors_exactly_or_not_at_all():
  image = _image()
  outs = [np.asarray(augment.flip(jax.random.key(k), image)) for k in range(16)]
  flipped = [np.array_equal(o, np.asarray(image)[:, ::-1]) for o in outs]
  kept = [np.array_equal(o, np.asarray(image)) for o in outs]
  assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_rotation_and_shift_geometry():
  image = _image(1, (16, 16))
  np.testing.assert_array_equal(augment.rotate_by(image, 0.0), image)
  np.testing.assert_array_equal(augment.rotate(jax.random.key(3), image, 0.0), image)
  np.testing.assert_allclose(augment.rotate_by(image, 90.0), np.rot90(np.asarray(image), 1), atol=1e-5)
  shifted = augment.shift_by(image, 2, -3)
  np.testing.assert_array_equal(shifted[2:, :-3], image[:-2, 3:])
  np.testing.assert_array_equal(shifted[0, :-3], image[0, 3:])  # edges repeat
  draws = [augment.shift(jax.random.key(k), image, 0.25) for k in range(4)]
  assert not np.array_equal(draws[0], draws[1])


def test_blur_keeps_constants_and_smooths_an_impulse():
  flat = jnp.full((9, 9, 3), 0.4)
  np.testing.assert_allclose(augment.gaussian_blur(jax.random.key(0), flat, 2.0), flat, atol=1e-6)
  impulse = jnp.zeros((15, 15, 1)).at[7, 7, 0].set(1.0)
  np.testing.assert_allclose(augment.blur_by(impulse, 0.0, 3), impulse)
  blurred = np.asarray(augment.blur_by(impulse, 1.5, 5))[..., 0]
  assert abs(blurred.sum() - 1.0) < 1e-5 and blurred[7, 7] == blurred.max() < 0.1
  column = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
  column /= column.sum()
  np.testing.assert_allclose(blurred[2:13, 7], column * column[5], rtol=1e-5)


def test_noise_has_the_asked_statistics():
  grey = jnp.full((128, 128, 3), 0.5)
  noise = np.asarray(augment.gaussian_noise(jax.random.key(0), grey, 0.05)) - 0.5
  assert abs(noise.mean()) < 0.002 and abs(noise.std() - 0.05) < 0.002
  clipped = augment.gaussian_noise(jax.random.key(1), jnp.ones((8, 8, 3)), 0.5)
  assert float(clipped.max()) <= 1.0 and float(clipped.min()) >= 0.0


def test_grayscale_matches_pil_and_normalise_broadcasts():
  rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
  gray = np.asarray(augment.to_grayscale(jnp.asarray(rgb, jnp.float32)))
  assert gray.shape == (6, 5, 1)
  np.testing.assert_allclose(gray[..., 0], rgb @ np.array([0.299, 0.587, 0.114]), rtol=1e-6)
  assert np.abs(gray[..., 0] - np.asarray(Image.fromarray(rgb).convert("L"), np.float32)).max() <= 1.0
  images = jnp.ones((2, 3, 3, 3))
  np.testing.assert_allclose(augment.normalise(images, (0.5, 0.0, 1.0), (0.5, 2.0, 1.0))[0, 0, 0], [1.0, 0.5, 0.0])
  np.testing.assert_allclose(augment.normalise(images, (0.5,), (0.25,)), 2.0)
  with pytest.raises(ValueError, match="need 1 or 3 values"):
    augment.normalise(images, (0.0, 0.0), (1.0,))


def test_train_images_shapes_determinism_and_jit():
  config = _data_config(rotation=10.0, blur_sigma=0.5, noise_std=0.01)
  batch = _batch()
  fn = jax.jit(lambda b, k: augment.train_images(b, k, config))
  a, b = fn(batch, jax.random.key(1)), fn(batch, jax.random.key(1))
  assert a.shape == (8, 16, 16, 3) and a.dtype == jnp.float32
  np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(a, augment.train_images(batch, jax.random.key(1), config), atol=1e-5)
  assert not np.allclose(a, fn(batch, jax.random.key(2)))
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_copies_are_the_same_picture_every_step():
  config = _data_config(flip=False, shift=0.0)  # no training augmentation: only copies change
  batch = _batch()
  a = augment.train_images(batch, jax.random.key(1), config)
  b = augment.train_images(batch, jax.random.key(2), config)
  np.testing.assert_array_equal(a, b)
  originals = batch["augment_seed"] < 0
  np.testing.assert_allclose(a[originals], batch["image"][originals] / 255.0, atol=1e-6)
  assert not np.allclose(a[~originals], batch["image"][~originals] / 255.0, atol=0.01)
  same_seed = _batch(seeds=(7,) * 8)
  same_seed["image"] = np.repeat(same_seed["image"][:1], 8, 0)
  copies = augment.train_images(same_seed, jax.random.key(0), config)
  np.testing.assert_array_equal(copies[0], copies[5])  # the seed alone decides the copy
  config.augment.copies.seed = 1
  assert not np.array_equal(augment.train_images(batch, jax.random.key(1), config)[1], a[1])


def test_rows_do_not_depend_on_batch_layout():
  config = _data_config(rotation=10.0, noise_std=0.02)
  batch = _batch()
  whole = augment.train_images(batch, jax.random.key(5), config)
  halves = [augment.train_images({k: v[i:i + 4] for k, v in batch.items()}, jax.random.key(5), config) for i in (0, 4)]
  np.testing.assert_allclose(np.concatenate(halves), whole, atol=1e-6)
  order = np.array([3, 1, 7, 0, 2, 6, 5, 4])
  shuffled = augment.train_images({k: v[order] for k, v in batch.items()}, jax.random.key(5), config)
  np.testing.assert_allclose(shuffled, whole[order], atol=1e-6)


def test_eval_images_scale_gray_and_normalise():
  config = _data_config()
  config.grayscale, config.mean, config.std = True, (0.5,), (0.5,)
  batch = _batch(2)
  out = augment.eval_images(batch, config)
  assert out.shape == (2, 16, 16, 1)
  expected = (batch["image"].astype(np.float32) / 255 @ np.array(augment.GRAY_WEIGHTS, np.float32) - 0.5) / 0.5
  np.testing.assert_allclose(out[..., 0], expected, atol=1e-5)
