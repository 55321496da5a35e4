"""Probes: how much of an attribute a fresh classifier reads from embeddings, before and after erasure.

An eraser is judged on rows it was not fitted on, by classifiers it never saw: a probe is fitted on one
split's (erased) embeddings and scored on another's, and the leakage is its accuracy there minus the
majority-class rate of the scored rows (0: no better than always guessing the commonest class).

Two probes, both in JAX, deterministic given the seed, on embeddings standardised with the fit split's
mean and standard deviation:
  * linear: multinomial logistic regression with an L2 penalty, fitted full-batch by L-BFGS (convex, so
    it converges to the one optimum from a zero start). INLP (``inlp.py``) fits its classifiers with it.
  * mlp: one hidden ReLU layer of ``MLP_HIDDEN`` units, L2 on its kernels, full-batch Adam, initialised
    from the seed. It reads what LEACE does not promise to erase: codes that are not linear (an
    attribute carried by x1 * x2 or |x1| has equal class means).
JAX rather than scikit-learn so that ``fairjax.erasure`` needs only what the package installs
(scikit-learn is a test extra); tests/erasure checks the linear probe against scikit-learn's
``LogisticRegression``. ``fairjax.train.leakage`` has a JAX MLP probe of the same design, cross-fitted
on two halves of one split; this one takes the two splits as given, which is what erasure needs (the
eraser is fitted on the first).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

LINEAR_L2 = 1e-3  # coefficient of 0.5 * ||kernel||^2 added to the mean cross-entropy, standardised inputs
LINEAR_STEPS = 100  # L-BFGS iterations
MLP_HIDDEN = 64
MLP_L2 = 1e-3
MLP_STEPS = 500
MLP_LEARNING_RATE = 1e-2


def _cross_entropy(logits, labels, l2, kernels):
  return (optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
          + 0.5 * l2 * sum(jnp.sum(jnp.square(k)) for k in kernels))


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def logistic_regression(x, labels, l2, *, num_classes: int, steps: int = LINEAR_STEPS):
  """``(kernel [D, K], bias [K])`` of the L2-penalised multinomial logistic regression of ``labels`` (int
  classes 0..K-1) on ``x`` ``[N, D]``, by ``steps`` L-BFGS iterations from zero.

  The penalty leaves the bias free. With it the kernel's columns sum to zero (adding one vector to every
  class's column changes no probability and only adds to the penalty), so they span at most K - 1
  directions.
  """
  x = jnp.asarray(x, jnp.float32)
  params = {"kernel": jnp.zeros((x.shape[1], num_classes)), "bias": jnp.zeros((num_classes,))}

  def loss(p):
    return _cross_entropy(x @ p["kernel"] + p["bias"], labels, l2, [p["kernel"]])

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def step(carry, _):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = solver.update(grad, state, p, value=value, grad=grad, value_fn=loss)
    return (optax.apply_updates(p, updates), state), None

  (params, _), _ = jax.lax.scan(step, (params, solver.init(params)), None, length=steps)
  return params["kernel"], params["bias"]


class _Mlp(nn.Module):
  hidden: int
  num_classes: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.num_classes)(nn.relu(nn.Dense(self.hidden)(x)))


@functools.partial(jax.jit, static_argnames=("num_classes", "hidden", "steps"))
def mlp_predict(key, x_train, labels, x_test, l2, learning_rate, *, num_classes: int,
                hidden: int = MLP_HIDDEN, steps: int = MLP_STEPS):
  """The classes an MLP probe fitted on ``(x_train, labels)`` predicts for ``x_test``."""
  model = _Mlp(hidden, num_classes)
  params = model.init(key, x_train[:1])
  optimiser = optax.adam(learning_rate)

  def loss(p):
    kernels = [layer["kernel"] for layer in p["params"].values()]
    return _cross_entropy(model.apply(p, x_train), labels, l2, kernels)

  def step(carry, _):
    p, state = carry
    updates, state = optimiser.update(jax.grad(loss)(p), state, p)
    return (optax.apply_updates(p, updates), state), None

  (params, _), _ = jax.lax.scan(step, (params, optimiser.init(params)), None, length=steps)
  return jnp.argmax(model.apply(params, x_test), -1)


def _known(x, z, name):
  x = np.asarray(x, np.float32)
  z = np.asarray(z).astype(np.int64)
  if x.ndim != 2 or z.shape != (len(x),):
    raise ValueError(f"{name}: expected embeddings [N, D] and attribute [N], got {x.shape} and {z.shape}")
  keep = z >= 0  # -1: unknown
  return x[keep], z[keep]


def linear_and_mlp_leakage(train_x, train_z, test_x, test_z, seed: int = 0) -> dict:
  """``{"linear": ..., "mlp": ...}``: each probe's accuracy on ``(test_x, test_z)`` minus the test rows'
  majority-class rate, the probe fitted on ``(train_x, train_z)``. Rows whose attribute is -1 are left
  out of both; ``majority_rate`` and ``count`` (test rows scored) come with them."""
  train_x, train_z = _known(train_x, train_z, "train")
  test_x, test_z = _known(test_x, test_z, "test")
  classes = np.unique(train_z)
  if len(classes) < 2 or len(test_z) == 0:
    raise ValueError(f"probes need 2 or more attribute classes to fit on and rows to score; got classes "
                     f"{classes.tolist()} and {len(test_z)} test rows")
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  train_codes = np.searchsorted(classes, train_z)
  # A test class the fit split lacks is one no probe predicts: code it past the classes, always wrong.
  test_codes = np.where(np.isin(test_z, classes), np.searchsorted(classes, test_z), len(classes))
  kernel, bias = logistic_regression(train_x, train_codes, LINEAR_L2, num_classes=len(classes))
  linear = np.asarray(jnp.argmax(test_x @ kernel + bias, -1))
  mlp = np.asarray(mlp_predict(jax.random.PRNGKey(seed), train_x, train_codes, test_x, MLP_L2,
                               MLP_LEARNING_RATE, num_classes=len(classes)))
  majority = np.unique(test_z, return_counts=True)[1].max() / len(test_z)
  return {"linear": float(np.mean(linear == test_codes) - majority),
          "mlp": float(np.mean(mlp == test_codes) - majority),
          "majority_rate": float(majority), "count": int(len(test_z))}
