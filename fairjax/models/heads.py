"""Output heads declared as data: each head's layers, loss, and decoding of its raw outputs.

Every classifier in fairjax ends in one or more heads read off a shared representation (the model's
``'embedding'``). A head is declared by a frozen, hashable ``HeadSpec`` so that a config can list a
model's heads and a Flax module can hold them as an attribute; ``head_outputs`` builds the declared
layers inside a model, and the functions below give each kind's loss and prediction. Kinds:

  binary        K independent sigmoid units, binary cross-entropy averaged over the K units (Keras's
                ``binary_crossentropy``). K = 1 is the usual one-logit classifier; K = 2 is seed 000
                §6.3's ``Dense(2, activation='sigmoid')``, trained on one-hot labels.
  multiclass    K-way softmax, cross-entropy against integer labels or soft targets ``[B, K]`` (soft
                targets are how JLU's confusion loss asks for a (0.5, 0.5) gender posterior).
  regression    K linear (or ReLU, seed 000 §6.4) outputs, mean squared or absolute error.
  binned        ordinal value (age) predicted as a softmax over K bins of equal width; trained with
                cross-entropy on the bin of the value and decoded by the expected bin centre, as
                seed 001 decodes VGG-Face's 101-way age softmax and seed 004 its 14 age bins.
  multilabel_softmax
                many labels per example (multi-hot targets), trained as seed 002's ADS was: for each
                positive label p, a softmax cross-entropy over {p} and all negative labels, averaged
                over the positives of the batch. ``class_groups`` and ``class_key`` read it as a
                classifier too, as seed 002 reads its ADS's 18,000 Open Images labels as a gender
                classifier: the predicted class is the group holding the highest-scoring of the
                grouped labels ("Man" or "Boy" male, "Woman" or "Girl" female), compared with the
                batch's ``class_key`` (``gender``). It trains on its multi-hot labels all the same.

Raw outputs are what the loss takes: logits for the classifying kinds, values for regression (after
the declared output activation, which is part of the value). Single-unit binary and regression heads
return ``[B]``; all others ``[B, K]``.

Weights, masks and unknown labels. Each loss reduces to ``(total, count)``: the sum over examples of
weight * mask * loss, and the sum of weight * mask (for multilabel_softmax, times the number of
positives). The loss is total / count, a weighted mean, so integer weights are the same as repeating
examples (seed 001 triples its over-60 photos). Returning both sums lets a multi-device objective
divide global sums (``mean_fn`` of ``multitask_loss``). Integer labels below zero are the data
schema's "unknown" (-1) and are masked out for every kind.
"""

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array

KINDS = ("binary", "multiclass", "regression", "binned", "multilabel_softmax")
REGRESSION_LOSSES = ("mse", "l1")
ACTIVATIONS = ("linear", "relu")


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """One output head.

  Attributes:
    name: key of the head's raw output in the model's output dict, and name of its output layer.
    kind: one of KINDS.
    num_outputs: units of the output layer: sigmoid units (binary), classes (multiclass,
      multilabel_softmax), bins (binned) or regressed values (regression).
    loss_weight: factor of this head's loss in ``multitask_loss``.
    label_key: batch key holding the head's labels; defaults to ``name``.
    hidden: widths of ReLU Dense layers between the embedding and the output layer (a branch, as in
      seed 000 §6.2 / §6.4); empty for a plain linear head.
    hidden_dropout: dropout rate after each hidden layer's ReLU.
    activation: output activation of a regression head, 'linear' or 'relu'.
    regression_loss: 'mse' or 'l1' (regression heads).
    bin_low, bin_width: binned heads: bin k covers [bin_low + k * bin_width, bin_low + (k+1) * bin_width).
    class_groups: multilabel_softmax heads read as a classifier: class c is the labels (output indices)
      of ``class_groups[c]``, and the head predicts the class whose group holds the highest logit among
      all grouped labels (labels in no group are not read), as seed 002 "compare[s] the confidence
      levels" of its four labels: the most confident names the gender. Empty: no classes, the head
      reports its loss only.
    class_key: the batch key of the classes that ``class_groups`` are compared with (with class_groups
      only; the head's multi-hot targets stay under ``key``).
  """

  name: str
  kind: str
  num_outputs: int = 1
  loss_weight: float = 1.0
  label_key: Optional[str] = None
  hidden: tuple[int, ...] = ()
  hidden_dropout: float = 0.0
  activation: str = "linear"
  regression_loss: str = "mse"
  bin_low: float = 0.0
  bin_width: float = 1.0
  class_groups: tuple[tuple[int, ...], ...] = ()
  class_key: Optional[str] = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"head {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
    if self.name == "embedding":
      raise ValueError("'embedding' is the representation's key in a model's outputs, not a head name")
    if self.num_outputs < 1:
      raise ValueError(f"head {self.name!r}: num_outputs must be >= 1, got {self.num_outputs}")
    if self.kind in ("multiclass", "binned", "multilabel_softmax") and self.num_outputs < 2:
      raise ValueError(f"head {self.name!r}: a {self.kind} head needs at least 2 outputs")
    if self.activation not in ACTIVATIONS or (self.activation != "linear" and self.kind != "regression"):
      raise ValueError(f"head {self.name!r}: activation {self.activation!r} is for regression heads "
                       f"only, one of {ACTIVATIONS}")
    if self.regression_loss not in REGRESSION_LOSSES:
      raise ValueError(f"head {self.name!r}: regression_loss must be one of {REGRESSION_LOSSES}")
    if self.bin_width <= 0:
      raise ValueError(f"head {self.name!r}: bin_width must be positive, got {self.bin_width}")
    if not 0.0 <= self.hidden_dropout < 1.0:
      raise ValueError(f"head {self.name!r}: hidden_dropout must lie in [0, 1), got {self.hidden_dropout}")
    object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
    self._check_class_groups()

  def _check_class_groups(self) -> None:
    """One line per way ``class_groups`` / ``class_key`` can fail to describe classes of this head; a
    valid ``class_groups`` is stored as a tuple of tuples of ints (a config may give lists)."""
    where = f"head {self.name!r}"
    try:
      groups = tuple(tuple(int(i) for i in group) for group in self.class_groups)
    except (TypeError, ValueError):
      raise ValueError(f"{where}: class_groups must be groups of label indices, e.g. ((0, 2), (1, 3)), "
                       f"got {self.class_groups!r}") from None
    object.__setattr__(self, "class_groups", groups)
    if not groups and self.class_key is None:
      return
    if self.kind != "multilabel_softmax":
      raise ValueError(f"{where}: class_groups read a multilabel_softmax head as a classifier; a {self.kind} "
                       "head has classes of its own")
    if not groups or self.class_key is None:
      raise ValueError(f"{where}: class_groups and class_key go together (the classes and the batch key "
                       f"they are compared with), got class_groups={groups} and class_key={self.class_key!r}")
    if self.class_key == self.key:
      raise ValueError(f"{where}: class_key {self.class_key!r} is the key of the head's multi-hot targets; "
                       "the classes need a key of their own")
    if len(groups) < 2 or not all(groups):
      raise ValueError(f"{where}: class_groups needs at least 2 non-empty groups of labels, got {groups}")
    flat = [i for group in groups for i in group]
    if not all(0 <= i < self.num_outputs for i in flat) or len(set(flat)) != len(flat):
      raise ValueError(f"{where}: class_groups {groups} must name distinct labels in [0, {self.num_outputs})")

  @property
  def key(self) -> str:
    """The batch key of this head's labels."""
    return self.label_key or self.name

  @property
  def class_label_key(self) -> str:
    """The batch key of the classes the head's predicted ``label`` is compared with: ``class_key`` for a
    multi-label head read as a classifier, ``key`` for every other head."""
    return self.class_key or self.key

  @property
  def centers(self) -> np.ndarray:
    """Centres of a binned head's bins, ``[num_outputs]``."""
    return self.bin_low + self.bin_width * (np.arange(self.num_outputs) + 0.5)


def field_defaults() -> dict[str, Any]:
  """Each ``HeadSpec`` field's default, by name: what a head saved in a run's config.json before the
  field existed meant by leaving it out (``loop.check_workdir``)."""
  return {f.name: f.default for f in dataclasses.fields(HeadSpec) if f.default is not dataclasses.MISSING}


def binned_head(name: str, low: float, high: float, width: float, **kwargs) -> HeadSpec:
  """A binned head whose equal bins of ``width`` tile [low, high]; (high - low) / width must be whole."""
  count = (high - low) / width
  if abs(count - round(count)) > 1e-9:
    raise ValueError(f"[{low}, {high}] is not a whole number of bins of width {width}")
  return HeadSpec(name, "binned", num_outputs=int(round(count)), bin_low=low, bin_width=width, **kwargs)


def head_outputs(specs: Sequence[HeadSpec], x: Array, train: bool,
                 kernel_init: Callable = nn.initializers.lecun_normal()) -> dict[str, Array]:
  """Builds and applies every head's layers on ``x``; call from inside a model's compact method.

  The layers are created in the calling module's scope, so a head's parameters sit at the model's top
  level under ``{name}_fc1 .. {name}_fcN`` (hidden layers) and ``{name}`` (output layer), where
  optimizer masks and weight importers can name them.
  """
  outputs = {}
  for spec in specs:
    h = x
    for i, width in enumerate(spec.hidden):
      h = nn.relu(nn.Dense(width, kernel_init=kernel_init, name=f"{spec.name}_fc{i + 1}")(h))
      if spec.hidden_dropout:
        h = nn.Dropout(spec.hidden_dropout, deterministic=not train)(h)
    y = nn.Dense(spec.num_outputs, kernel_init=kernel_init, name=spec.name)(h)
    if spec.activation == "relu":
      y = nn.relu(y)
    if spec.num_outputs == 1 and spec.kind in ("binary", "regression"):
      y = y[..., 0]
    outputs[spec.name] = y
  return outputs


def bin_index(spec: HeadSpec, values: Array) -> Array:
  """The bin of each value, clipped into [0, K-1] (values beyond the range count in the end bins)."""
  k = jnp.floor((jnp.asarray(values, jnp.float32) - spec.bin_low) / spec.bin_width)
  return jnp.clip(k, 0, spec.num_outputs - 1).astype(jnp.int32)


def expected_value(probs: Array, centers: Array) -> Array:
  """Expected value of a distribution over bins: sum_k p_k * centre_k, ``[B]``."""
  return probs @ jnp.asarray(centers, probs.dtype)


def _is_soft(spec: HeadSpec, output: Array, labels: Array) -> bool:
  """Whether labels are per-unit targets ``[B, K]`` rather than one value per example."""
  return spec.num_outputs > 1 and labels.ndim == output.ndim


def known_labels(labels: Array) -> Array:
  """Per-example validity: integer labels below zero are unknown; soft targets are always known."""
  if jnp.issubdtype(labels.dtype, jnp.integer):
    return labels >= 0
  return jnp.ones(labels.shape, bool)


def per_example_loss(spec: HeadSpec, output: Array, labels: Array) -> Array:
  """The head's loss of each example, ``[B]`` (unknown labels give finite, meaningless values).

  Labels: binary: 0/1 (K = 1), class index or targets ``[B, K]`` (K > 1); multiclass: class index or
  soft targets ``[B, K]``; regression: values ``[B]`` or ``[B, K]``; binned: raw values (ages), binned
  by ``bin_index``, or soft targets over the bins ``[B, K]``; multilabel_softmax: multi-hot ``[B, K]``.
  For multilabel_softmax the value is the sum over the example's positives (see ``loss_terms``).
  """
  labels = jnp.asarray(labels)
  if spec.kind == "binary":
    if _is_soft(spec, output, labels):
      targets = labels.astype(output.dtype)
    elif spec.num_outputs > 1:
      targets = jax.nn.one_hot(labels, spec.num_outputs, dtype=output.dtype)
    else:
      targets = jnp.clip(labels, 0, 1).astype(output.dtype)
    loss = optax.sigmoid_binary_cross_entropy(output, targets)
    return loss.mean(-1) if spec.num_outputs > 1 else loss
  if spec.kind in ("multiclass", "binned"):
    if _is_soft(spec, output, labels):
      return optax.softmax_cross_entropy(output, labels.astype(output.dtype))
    index = bin_index(spec, labels) if spec.kind == "binned" else jnp.clip(labels, 0, spec.num_outputs - 1)
    return optax.softmax_cross_entropy_with_integer_labels(output, index.astype(jnp.int32))
  if spec.kind == "regression":
    error = output - labels.astype(output.dtype)
    loss = jnp.square(error) if spec.regression_loss == "mse" else jnp.abs(error)
    return loss.mean(-1) if spec.num_outputs > 1 else loss
  # multilabel_softmax: for positive p, CE of the softmax over {p} and the negatives at index p is
  # logsumexp(z_p, z_negatives) - z_p, with the negatives' logsumexp shared by all positives.
  positive = labels.astype(bool)
  lse_neg = jax.nn.logsumexp(jnp.where(positive, -jnp.inf, output), axis=-1, keepdims=True)
  per_label = jnp.logaddexp(output, lse_neg) - output
  return jnp.where(positive, per_label, 0.0).sum(-1)


def loss_terms(spec: HeadSpec, output: Array, labels: Array, weights: Optional[Array] = None,
               mask: Optional[Array] = None) -> tuple[Array, Array]:
  """``(total, count)``: the weighted, masked sum of per-example losses and what it is a mean over."""
  labels = jnp.asarray(labels)
  loss = per_example_loss(spec, output, labels)
  batch = loss.shape[0]
  if _is_soft(spec, output, labels) or spec.kind == "multilabel_softmax":
    known = jnp.ones((batch,), bool)
  else:
    known = known_labels(labels).reshape(batch, -1).all(-1)
  coef = known.astype(loss.dtype)
  if weights is not None:
    coef = coef * jnp.asarray(weights, loss.dtype).reshape(batch)
  if mask is not None:
    coef = coef * jnp.asarray(mask).reshape(batch).astype(loss.dtype)
  per_example_count = coef
  if spec.kind == "multilabel_softmax":
    per_example_count = coef * labels.astype(bool).sum(-1).astype(loss.dtype)
  return (coef * jnp.where(coef != 0, loss, 0.0)).sum(), per_example_count.sum()


def _local_mean(total: Array, count: Array) -> Array:
  return total / jnp.maximum(count, 1e-12)


def head_loss(spec: HeadSpec, output: Array, labels: Array, weights: Optional[Array] = None,
              mask: Optional[Array] = None) -> Array:
  """The head's weighted mean loss over the (masked, known) examples of this batch; 0 if there are none."""
  return _local_mean(*loss_terms(spec, output, labels, weights, mask))


def _for_head(value: Any, name: str) -> Any:
  return value.get(name) if isinstance(value, Mapping) else value


def multitask_loss(
    specs: Sequence[HeadSpec],
    outputs: Mapping[str, Array],
    labels: Mapping[str, Array],
    *,
    weights: Any = None,
    mask: Any = None,
    mean_fn: Optional[Callable[[Array, Array], Array]] = None,
) -> tuple[Array, dict[str, Array]]:
  """``sum_h loss_weight_h * loss_h`` and the per-head losses ``{name: loss_h}``.

  Args:
    specs: the heads to train (a model's ``heads``, or a subset: JLU alternates tasks).
    outputs: the model's output dict.
    labels: the batch; each head reads ``labels[spec.key]`` (a missing key is an error, not a skip).
    weights, mask: one ``[B]`` array for all heads, or a dict of them by head name.
    mean_fn: turns a head's ``(total, count)`` into its loss; defaults to the local weighted mean.
      Under pmap / shard_map pass ``functools.partial(collectives.global_mean, axis_name=...)`` so that
      every head's loss is a mean over the global batch.
  """
  mean_fn = mean_fn or _local_mean
  losses = {}
  for spec in specs:
    if spec.key not in labels:
      raise KeyError(f"head {spec.name!r} reads labels[{spec.key!r}], which the batch lacks "
                     f"(keys: {sorted(labels)})")
    terms = loss_terms(spec, outputs[spec.name], labels[spec.key],
                       _for_head(weights, spec.name), _for_head(mask, spec.name))
    losses[spec.name] = mean_fn(*terms)
  total = sum(spec.loss_weight * losses[spec.name] for spec in specs)
  return jnp.asarray(total, jnp.float32), losses


def predict(spec: HeadSpec, output: Array) -> dict[str, Array]:
  """Decoded predictions of one head from its raw output.

  Keys: ``probs`` (sigmoid for binary, softmax otherwise; absent for regression), ``label`` (the
  predicted class: probability > 0.5 for a one-unit binary head, argmax otherwise; the bin for binned
  heads; the group of ``class_scores``' argmax for a multi-label head with ``class_groups``) and
  ``value`` (regression output, or a binned head's expected value).
  """
  if spec.kind == "regression":
    return {"value": output}
  if spec.kind == "binary":
    probs = jax.nn.sigmoid(output)
    label = (probs > 0.5) if spec.num_outputs == 1 else jnp.argmax(output, -1)
    return {"probs": probs, "label": label.astype(jnp.int32)}
  probs = jax.nn.softmax(output, axis=-1)
  scores = class_scores(spec, output) if spec.class_groups else output
  result = {"probs": probs, "label": jnp.argmax(scores, -1).astype(jnp.int32)}
  if spec.kind == "binned":
    result["value"] = expected_value(probs, spec.centers)
  return result


def class_scores(spec: HeadSpec, output: Array) -> Array:
  """``[B, C]``: each class's highest logit among its ``class_groups`` labels, so that the argmax is the
  class holding the highest-scoring grouped label (ties go to the lower class, as argmax over the
  grouped labels in group order would give them)."""
  if not spec.class_groups:
    raise ValueError(f"head {spec.name!r} has no class_groups to score")
  return jnp.stack([output[..., list(group)].max(-1) for group in spec.class_groups], -1)


def predict_all(specs: Sequence[HeadSpec], outputs: Mapping[str, Array]) -> dict[str, dict[str, Array]]:
  """``predict`` of every head, by head name."""
  return {spec.name: predict(spec, outputs[spec.name]) for spec in specs}
