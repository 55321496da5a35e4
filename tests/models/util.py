"""Shared test helpers: fast-compiling keys, a few Adam steps on a tiny batch, abstract output shapes.

Model tests draw initialisations and dropout masks from ``rbg`` keys: on XLA:CPU a threefry dropout
mask over a feature map takes seconds to compile, the RngBitGenerator one a fraction of that.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fairjax.models import heads, registry


def key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl="rbg")


def images(shape, seed: int = 0) -> jax.Array:
  """Uniform [0, 1) images of ``shape`` (drawn with NumPy: nothing to compile)."""
  return jnp.asarray(np.random.default_rng(seed).uniform(0, 1, shape), jnp.float32)


def random_labels(model, batch_size: int, seed: int = 1) -> dict:
  """Random labels of the right type for each of the model's heads."""
  rng = np.random.default_rng(seed)
  labels = {}
  for spec in model.heads:
    if spec.kind == "regression":
      labels[spec.key] = rng.uniform(10.0, 60.0, batch_size)
    elif spec.kind == "binned":
      high = spec.bin_low + spec.bin_width * spec.num_outputs
      labels[spec.key] = rng.uniform(spec.bin_low, high, batch_size)
    elif spec.kind == "multilabel_softmax":
      multi_hot = rng.uniform(size=(batch_size, spec.num_outputs)) < 0.3
      multi_hot[:, 0] = True
      labels[spec.key] = multi_hot
    else:
      classes = 2 if spec.kind == "binary" and spec.num_outputs == 1 else spec.num_outputs
      labels[spec.key] = rng.integers(0, classes, batch_size)
  return {k: jnp.asarray(v) for k, v in labels.items()}


def adam_losses(model, batch, labels, steps: int = 8, learning_rate: float = 1e-3, tx=None):
  """(loss before, loss after, initial params, trained params) of ``steps`` Adam (or ``tx``) steps.

  Initialisation and all steps run as one compiled program (a scan), which on a 2-core CPU is most of
  the saving: compiling, not computing, is what tiny-batch model tests spend their time on. Every step
  uses the same dropout key, so losses are comparable for dropout and BatchNorm models alike; the loss
  of step i is that of the parameters after i updates.
  """
  tx = tx or optax.adam(learning_rate)

  def loss_fn(p, st):
    out, new_state = model.apply({"params": p, **st}, batch, train=True, rngs={"dropout": key(1)},
                                 mutable=list(st))
    total, _ = heads.multitask_loss(model.heads, out, labels)
    return total + registry.l2_penalty(model, p), new_state

  def step(carry, _):
    p, st, opt = carry
    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, st)
    updates, opt = tx.update(grads, opt, p)
    return (optax.apply_updates(p, updates), new_state, opt), loss

  @jax.jit
  def run():
    variables = dict(model.init({"params": key(0)}, batch, train=False))
    params = variables.pop("params")
    (trained, _, _), losses = jax.lax.scan(step, (params, variables, tx.init(params)), length=steps + 1)
    return losses, params, trained

  losses, initial, trained = run()
  assert np.all(np.isfinite(losses))
  return float(losses[0]), float(losses[-1]), initial, trained


def output_shapes(model, batch_size: int = 2, input_shape=None) -> dict:
  """Shapes of ``model.apply``'s outputs (default: at the model's seed input), computed abstractly."""
  x = jax.ShapeDtypeStruct((batch_size, *(input_shape or model.input_shape)), jnp.float32)

  def run(images):
    variables = model.init({"params": jax.random.key(0)}, images, train=False)
    return model.apply(variables, images, train=False)

  return {k: v.shape for k, v in jax.eval_shape(run, x).items()}
