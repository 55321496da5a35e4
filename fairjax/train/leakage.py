"""Leakage: how well a fresh probe reads a protected attribute from a model's embedding.

Wang et al. (2019, "Balanced datasets are not enough") measure what a representation still knows about
a protected attribute by training a new classifier, the attacker, to predict it from the
representation. fairjax reports it as the probe's accuracy minus the majority-class rate of the rows
it is tested on: 0 when the probe does no better than always guessing the commonest class, which is
what unlearning (``adversarial``: gradient reversal, JLU) must drive the embedding to.

The probe. A one-hidden-layer ReLU MLP (``HIDDEN`` units; ``hidden=()`` is logistic regression) on
standardised embeddings, with an L2 penalty on its kernels, trained full-batch with Adam in JAX,
deterministic given its seed. The penalty matters: unregularised, a probe on a few hundred 128-d rows
memorises its half and scores near chance on the other even where the attribute is plainly encoded
(on such data this probe matches scikit-learn's logistic regression where the code is linear, and
finds codes that are not). Its
train/test split: each evaluated split is cut into two halves stratified by the attribute; a probe
trained on one half is tested on the other and vice versa (two-fold cross-fitting), and the leakage is
the mean over the two folds of (accuracy - majority rate of the tested half). The probe never sees the
rows it is scored on, yet every row is scored once; and it is fitted to the split's own distribution,
so a shift between splits (seed 004's BD against EBD, where age no longer predicts gender) does not
pass for a lack of leakage. Rows whose attribute is unknown (-1) and padding rows are left out.

A run reports it through the ``leakage`` evaluator (``fairjax.train.evaluators``), which collects each
evaluated split's embeddings and puts ``leakage_<attribute>`` for race and gender into the split's
metrics (so ``summary.json``, ``report.md`` and ``final_metrics.json`` carry them).
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fairjax.report import run_report

HIDDEN = (64,)
STEPS = 500
LEARNING_RATE = 1e-2
L2 = 0.1  # coefficient of 0.5 * sum of squared kernel weights, on standardised inputs
FOLDS = 2


def metric_name(attribute: str) -> str:
  """The key of an attribute's leakage in a split's metrics and at the top of its ``summary.json``."""
  return run_report.LEAKAGE_PREFIX + attribute


class _Probe(nn.Module):
  hidden: tuple[int, ...]
  num_classes: int

  @nn.compact
  def __call__(self, x):
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)


def _fit_predict(key, x_train, y_train, w_train, x_test, class_mask, *, hidden, steps, learning_rate, l2):
  """Trains a probe on the weighted rows of ``x_train`` and returns its classes for ``x_test``.

  Classes outside ``class_mask`` get no probability: a probe as wide as the mask is one with only
  the masked-in classes, so attributes with different numbers of classes share a compiled probe.
  """
  total = jnp.maximum(w_train.sum(), 1.0)
  mean = (w_train[:, None] * x_train).sum(0) / total
  std = jnp.sqrt((w_train[:, None] * jnp.square(x_train - mean)).sum(0) / total) + 1e-6
  x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
  if x_train.shape[1] > x_train.shape[0]:
    # Wider than it has rows (a flattened conv map: 4,608 wide for seed 000 §6.4's CNN at 32x32): the
    # rows' coordinates in an orthonormal basis of the training rows' span. An L2-penalised linear probe's
    # optimum lies in that span (the representer theorem), and so do all its gradients; what the basis
    # drops is the part of the first layer that training never moves. The probe then costs its rows,
    # not the embedding's width.
    _, _, basis = jnp.linalg.svd(w_train[:, None] * x_train, full_matrices=False)
    x_train, x_test = x_train @ basis.T, x_test @ basis.T
  probe = _Probe(hidden, class_mask.shape[0])
  logits = lambda p, x: jnp.where(class_mask, probe.apply(p, x), -1e9)
  params = probe.init(key, x_train[:1])
  tx = optax.adam(learning_rate)

  def loss_fn(p):
    ce = optax.softmax_cross_entropy_with_integer_labels(logits(p, x_train), y_train)
    kernels = sum(jnp.sum(jnp.square(layer["kernel"])) for layer in p["params"].values())
    return (w_train * ce).sum() / total + 0.5 * l2 * kernels

  def step(carry, _):
    p, opt_state = carry
    grads = jax.grad(loss_fn)(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return jnp.argmax(logits(params, x_test), -1)


@functools.partial(jax.jit, static_argnames=("hidden", "steps", "learning_rate", "l2"))
def _fit_predict_folds(keys, x_train, y_train, w_train, x_test, class_mask, **settings):
  """One probe per fold, trained side by side; compiled once per (padded) shape."""
  fit = functools.partial(_fit_predict, **settings)
  return jax.vmap(fit, in_axes=(0, 0, 0, 0, 0, None))(keys, x_train, y_train, w_train, x_test, class_mask)


def padded_size(n: int, minimum: int = 256, step: int = 1024) -> int:
  """The size that ``n`` rows are padded to, so that splits of similar sizes reuse one compiled program:
  the power of two (at least ``minimum``) up to ``step``, beyond it the next multiple of ``step``. Padded
  rows weigh nothing but cost as much as real ones: a power of two beyond ``step`` wastes up to half of
  every probe step (the default's 10,000-row test folds padded to 16,384, now 10,240)."""
  if n > step:
    return -(-n // step) * step
  return max(minimum, 1 << max(n - 1, 0).bit_length())


def stratified_halves(labels, seed: int) -> np.ndarray:
  """The fold (0 or 1) of each row: each class's rows shuffled by ``seed`` and dealt alternately."""
  labels = np.asarray(labels)
  fold = np.zeros(len(labels), np.int32)
  rng = np.random.default_rng(seed)
  start = 0  # deal each class from where the last one stopped, so the halves differ by at most one row
  for value in np.unique(labels):
    rows = rng.permutation(np.flatnonzero(labels == value))
    fold[rows] = (start + np.arange(len(rows))) % FOLDS
    start += len(rows)
  return fold


def probe_leakage(embeddings, labels, num_classes: int, *, seed: int = 0, hidden: Sequence[int] = HIDDEN,
                  steps: int = STEPS, learning_rate: float = LEARNING_RATE, l2: float = L2) -> dict:
  """The leakage of ``labels`` (classes 0..num_classes-1) from ``embeddings`` ``[N, D]``.

  Returns ``leakage`` (mean over the two folds of probe accuracy minus majority rate), ``accuracy``
  and ``majority_rate`` (their means) and ``count`` (rows used). Fewer than two rows per fold leave it
  undefined: NaN.
  """
  x = np.asarray(embeddings, np.float32).reshape(len(embeddings), -1)
  y = np.asarray(labels, np.int32)
  if len(y) != len(x):
    raise ValueError(f"{len(y)} labels for {len(x)} embeddings")
  if len(y) and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(f"labels must lie in [0, {num_classes}); drop unknown rows first")
  if len(y) < 2 * FOLDS:
    return {"leakage": np.nan, "accuracy": np.nan, "majority_rate": np.nan, "count": len(y)}
  fold = stratified_halves(y, seed)
  # Both folds padded (weight 0) to one length and the classes to a power of two, masked.
  size = padded_size(int(np.bincount(fold, minlength=FOLDS).max()))
  xs, ys, ws = (np.zeros((FOLDS, size) + a.shape[1:], a.dtype) for a in (x, y, np.ones(len(y), np.float32)))
  for f in range(FOLDS):
    rows = np.flatnonzero(fold == f)
    xs[f, :len(rows)], ys[f, :len(rows)], ws[f, :len(rows)] = x[rows], y[rows], 1.0
  keys = jax.random.split(jax.random.PRNGKey(seed), FOLDS)
  class_mask = np.arange(padded_size(num_classes, minimum=8)) < num_classes
  tested = xs[::-1]  # the probe of fold f is tested on the other fold
  predicted = np.asarray(_fit_predict_folds(keys, xs, ys, ws, tested, class_mask, hidden=tuple(hidden),
                                            steps=steps, learning_rate=learning_rate, l2=l2))
  accuracy, majority = [], []
  for f in range(FOLDS):
    truth, valid = ys[FOLDS - 1 - f], ws[FOLDS - 1 - f] > 0
    accuracy.append(np.mean(predicted[f][valid] == truth[valid]))
    majority.append(np.bincount(truth[valid], minlength=num_classes).max() / valid.sum())
  accuracy, majority = float(np.mean(accuracy)), float(np.mean(majority))
  return {"leakage": accuracy - majority, "accuracy": accuracy, "majority_rate": majority, "count": len(y)}
