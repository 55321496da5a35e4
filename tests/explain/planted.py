"""A generated task whose label depends on one known region only, and a small CNN trained on it.

Each 32 x 32 RGB image holds dim noise, a few distractor squares of both colours anywhere outside the
region, and, for class 1 only, a red square inside the region (the top-left 12 x 12 corner). The outside carries no information about the label, so a model that learned the task looks only
inside the region, and a faithful attribution method must say so. The CNN sees its pixels' coordinates
(two extra input channels, as CoordConv) so that its filters can fire for "red, in the corner" and not
for a distractor, and it ends in a global average pool, the architecture Grad-CAM assumes (its weights
are gradients averaged over the map): a model that read position off a flattened map instead would
leave Grad-CAM pointing at every red square. Trained once per test module
(about two seconds).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fairjax.explain import targets
from fairjax.models.heads import HeadSpec

SIZE, REGION, SQUARE = 32, 12, 6


def region_mask() -> np.ndarray:
  mask = np.zeros((SIZE, SIZE), bool)
  mask[:REGION, :REGION] = True
  return mask


def make_images(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
  images = rng.uniform(0.0, 0.05, (n, SIZE, SIZE, 3)).astype(np.float32)
  labels = rng.integers(0, 2, n)
  red, blue = np.array([0.9, 0.1, 0.1], np.float32), np.array([0.1, 0.1, 0.9], np.float32)
  for i in range(n):
    if labels[i]:
      top, left = rng.integers(0, REGION - SQUARE + 1, 2)
      images[i, top:top + SQUARE, left:left + SQUARE] = red
    for _ in range(3):  # distractors: both colours, wholly outside the region
      while True:
        top, left = rng.integers(0, SIZE - SQUARE + 1, 2)
        if top >= REGION or left >= REGION:
          break
      images[i, top:top + SQUARE, left:left + SQUARE] = blue
  return images, labels.astype(np.int32)


class TinyCNN(nn.Module):
  """Coordinates -> conv 8 -> pool -> conv 16 -> global average -> dense."""
  heads: tuple = (HeadSpec("label", "binary"),)

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.max_pool(nn.relu(nn.Conv(8, (3, 3), name="conv1")(x)), (2, 2), (2, 2))
    x = nn.relu(nn.Conv(16, (3, 3), name="conv2")(x))
    embedding = x.mean(axis=(1, 2))
    return {"embedding": embedding, "label": nn.Dense(1, name="out")(embedding)[:, 0]}


@functools.lru_cache(maxsize=None)
def trained(seed: int = 0, steps: int = 300):
  """(target, variables, fresh variables, test images, test labels) of a TinyCNN trained on the task."""
  rng = np.random.default_rng(seed)
  images, labels = make_images(rng, 2048)
  model = TinyCNN()
  variables = model.init(jax.random.key(seed), jnp.zeros((1, SIZE, SIZE, 3)))
  fresh = model.init(jax.random.key(seed + 1), jnp.zeros((1, SIZE, SIZE, 3)))
  optimizer = optax.adam(3e-3)
  opt_state = optimizer.init(variables)

  @jax.jit
  def step(variables, opt_state, x, y):
    def loss(v):
      logits = model.apply(v, x)["label"]
      return optax.sigmoid_binary_cross_entropy(logits, y).mean()
    grads = jax.grad(loss)(variables)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(variables, updates), opt_state

  for i in range(steps):
    batch = slice((i * 64) % 2048, (i * 64) % 2048 + 64)
    variables, opt_state = step(variables, opt_state, images[batch], labels[batch].astype(np.float32))
  test_images, test_labels = make_images(np.random.default_rng(seed + 100), 64)
  return targets.Target(model, "label", 1), variables, fresh, test_images, test_labels
