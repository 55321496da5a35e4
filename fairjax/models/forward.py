"""A model's forward pass as training, evaluation and analyses run it: one function for all of them.

The train step's objectives, the evaluation sums, the leakage probes and the analyses of a trained run
(``experiments/eo_frontier.py``) all apply a registered model to a batch's images the same way: uint8
images scaled to [0, 1] unless the step already prepared float ones, dropout keyed by the step's rng,
and the mutable collections (BatchNorm statistics) updated only when training.
"""

import jax
import jax.numpy as jnp


def model_images(batch) -> jax.Array:
  """The model's input: float images as the step prepared them, or uint8 images scaled to [0, 1]."""
  images = batch["image"]
  if jnp.issubdtype(images.dtype, jnp.floating):
    return images
  return images.astype(jnp.float32) / 255.0


def forward(apply_fn, params, model_state, images, rng, train: bool):
  """The model's outputs and its updated mutable collections (unchanged when not training)."""
  variables = {"params": params, **model_state}
  if train and model_state:
    outputs, updates = apply_fn(variables, images, train=True, rngs={"dropout": rng},
                                mutable=list(model_state))
    return outputs, {**model_state, **updates}
  return apply_fn(variables, images, train=train, rngs={"dropout": rng}), model_state
