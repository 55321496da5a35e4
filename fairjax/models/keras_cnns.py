"""The Keras CNNs of seed 000 §6.1–§6.4, layer for layer, as one configurable Flax module.

All four are the same shape of network: 3x3 convolutions with ReLU, some followed by 2x2 max pooling,
a flatten, optionally Dense layers, dropout, then heads (some with hidden Dense branches). ``KerasCNN``
is that network, and each registered factory below fixes it to one seed listing. Keras semantics kept:

  * padding: Keras ``Conv2D`` defaults to ``'valid'``; only §6.3 writes ``padding='same'``.
  * ``MaxPooling2D()`` is a 2x2 window with stride 2 and 'valid' padding (odd sizes round down).
  * Flatten is channels-last, the same NHWC order as ours, so imported Dense kernels need no permutation.
  * Initialisation is Keras's: Glorot-uniform kernels, zero biases.
  * ``kernel_regularizer=l2(f)`` becomes ``l2_factors()`` (layer -> f), which
    ``registry.l2_penalty`` sums as f * sum(kernel ** 2); nothing is dropped silently.

The ``'embedding'`` is the last representation before the heads (the last Dense layer's ReLU output,
or the flattened feature maps where the seed has no Dense trunk), taken before the dropout that the
seed applies in front of its output layers.

Where a seed is silent, the factory says what was assumed; everything is overridable through
``get_model(name, **overrides)``. In particular §6.1, §6.2 and §6.4 never give the input size, which
fixes the width of the first Dense layer; 128x128 is assumed for all three (the convolutions work at
any size: override ``input_shape`` to match the data). The seeds' sigmoid / softmax output
activations are not applied in the module: heads return logits and the head kind applies the
activation (see ``heads``).
"""

import flax.linen as nn
import jax

from fairjax.models import heads as heads_lib
from fairjax.models.heads import HeadSpec
from fairjax.models.registry import register
from fairjax.ops.conv import Conv
from fairjax.ops.conv_pool import ConvReluMaxPool
from fairjax.ops.pool import max_pool_2x2

Array = jax.Array

# Keras's default initialisers, so that training from scratch starts where the seed's runs did.
KERAS_KERNEL_INIT = nn.initializers.glorot_uniform()


class KerasCNN(nn.Module):
  """Conv(3x3)-ReLU[-MaxPool] stack, flatten, Dense-ReLU stack, dropout, heads.

  Attributes:
    heads: the output heads.
    input_shape: (H, W, C) the seed trained on.
    convs: (filters, max-pool after it?) of each 3x3 convolution, in order.
    padding: 'VALID' or 'SAME' for every convolution.
    conv_dropout: dropout rate between each convolution and its ReLU (seed 000 §6.3), 0 for none.
    conv_l2: Keras L2 factor of every convolution kernel, 0 for none.
    dense: widths of the ReLU Dense layers after the flatten.
    dropout: rate of the dropout applied to the embedding in front of the heads.
    conv_implementation: 'auto' (on CPU: a convolution followed by pooling runs as one fused, chunked
      ``fairjax.ops.conv_pool`` op, any other through ``fairjax.ops.conv``'s im2col; XLA's
      convolution elsewhere), 'lax' (XLA's convolution and pooling; compiles faster on CPU), or
      'im2col' (the CPU path on any backend).
  """

  heads: tuple[HeadSpec, ...]
  input_shape: tuple[int, int, int]
  convs: tuple[tuple[int, bool], ...]
  padding: str = "VALID"
  conv_dropout: float = 0.0
  conv_l2: float = 0.0
  dense: tuple[int, ...] = ()
  dropout: float = 0.0
  conv_implementation: str = "auto"

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
    for i, (filters, pool) in enumerate(self.convs):
      if pool and not self.conv_dropout:
        # Same 'kernel' / 'bias' parameters as Conv; one op so that CPU training never holds the
        # block's full-batch patches and pre-activations (see fairjax/ops/conv_pool.py).
        x = ConvReluMaxPool(filters, (3, 3), padding=self.padding, kernel_init=KERAS_KERNEL_INIT,
                            implementation=self.conv_implementation, name=f"conv{i + 1}")(x)
        continue
      x = Conv(filters, (3, 3), padding=self.padding, kernel_init=KERAS_KERNEL_INIT,
               implementation=self.conv_implementation, name=f"conv{i + 1}")(x)
      if self.conv_dropout:
        x = nn.Dropout(self.conv_dropout, deterministic=not train)(x)
      x = nn.relu(x)
      if pool:
        x = max_pool_2x2(x)
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.dense):
      x = nn.relu(nn.Dense(width, kernel_init=KERAS_KERNEL_INIT, name=f"fc{i + 1}")(x))
    embedding = x
    if self.dropout:
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    outputs = heads_lib.head_outputs(self.heads, x, train, kernel_init=KERAS_KERNEL_INIT)
    return {"embedding": embedding, **outputs}

  def l2_factors(self) -> dict[str, float]:
    """Layer name -> Keras L2 factor of its kernel."""
    if not self.conv_l2:
      return {}
    return {f"conv{i + 1}": self.conv_l2 for i in range(len(self.convs))}

  def keras_layers(self) -> tuple[str, ...]:
    """Our names of the layers that carry weights, in the order the seed's Keras code creates them."""
    names = [f"conv{i + 1}" for i in range(len(self.convs))]
    names += [f"fc{i + 1}" for i in range(len(self.dense))]
    for spec in self.heads:
      names += [f"{spec.name}_fc{i + 1}" for i in range(len(spec.hidden))] + [spec.name]
    return tuple(names)


def _build(defaults: dict, overrides: dict) -> KerasCNN:
  return KerasCNN(**{**defaults, **overrides})


@register("utk_gender_cnn")
def utk_gender_cnn(**overrides) -> KerasCNN:
  """Seed 000 §6.1: binary gender CNN (the Kaggle age/gender model reduced to gender).

  Conv2D(32, 3x3, relu) - MaxPool(2x2) - Conv2D(64) - MaxPool - Conv2D(128) - MaxPool - Flatten -
  Dense(64, relu) - Dropout(0.5) - Dense(1, sigmoid); BCE, Adam(1e-4). Padding is not written, so
  Keras's default 'valid'. Assumed: 128x128x3 input (not stated).
  """
  return _build(dict(
      heads=(HeadSpec("gender", "binary"),),
      input_shape=(128, 128, 3),
      convs=((32, True), (64, True), (128, True)),
      dense=(64,),
      dropout=0.5), overrides)


@register("utk_demographic_cnn")
def utk_demographic_cnn(**overrides) -> KerasCNN:
  """Seed 000 §6.2: shared convolutional trunk and three branches (age, gender, race).

  Stated: ReLU convolutions each followed by 2x2 max pooling, filters growing from 64 to 512; each
  branch three ReLU Dense layers then its output: age 1 linear unit (MSE), gender 1 unit (BCE), race
  one unit per race with softmax (categorical CE); Adam(1e-4).
  Assumed (not stated): one 3x3 convolution per filter count (64, 128, 256, 512) with Keras's default
  'valid' padding, no dropout, branch widths 128-64-32, five races (UTKFace), 128x128x3 input.
  The seed's gender output is a *softmax over one unit*, which is 1.0 for every input (zero gradient,
  constant prediction); the head here is the sigmoid unit that its binary cross-entropy implies.
  """
  branch = (128, 64, 32)
  return _build(dict(
      heads=(HeadSpec("age", "regression", hidden=branch),
             HeadSpec("gender", "binary", hidden=branch),
             HeadSpec("race", "multiclass", num_outputs=5, hidden=branch)),
      input_shape=(128, 128, 3),
      convs=((64, True), (128, True), (256, True), (512, True))), overrides)


@register("tripathi_gender_cnn")
def tripathi_gender_cnn(**overrides) -> KerasCNN:
  """Seed 000 §6.3 (Mayank Tripathi): 100x100 grayscale gender CNN, exactly as listed.

  Four times Conv2D(f, 3x3, padding='same', l2(0.001)) - Dropout(0.1) - ReLU - MaxPool(2x2) with
  f = 32, 64, 128, 256; Flatten - Dense(128, relu) - Dropout(0.2) - Dense(2, sigmoid). The dropout sits
  between each convolution and its ReLU, as the listing orders them. The two sigmoid units make a
  2-unit binary head (independent sigmoids, BCE on one-hot labels). The L2 is on the kernels only.
  """
  return _build(dict(
      heads=(HeadSpec("gender", "binary", num_outputs=2),),
      input_shape=(100, 100, 1),
      convs=((32, True), (64, True), (128, True), (256, True)),
      padding="SAME",
      conv_dropout=0.1,
      conv_l2=1e-3,
      dense=(128,),
      dropout=0.2), overrides)


@register("aghav_age_gender_cnn")
def aghav_age_gender_cnn(**overrides) -> KerasCNN:
  """Seed 000 §6.4 (Omky Aghav): grayscale trunk and two Dense branches, as its code listing reads.

  Conv2D(32, relu) - Conv2D(64, relu) - MaxPool - Conv2D(128, relu) - MaxPool - Dropout(0.25) -
  Flatten, all 'valid'; age: Dense 128-64-32 (relu), Dropout(0.5) after each, Dense(1, relu);
  gender: Dense 128-64-32-16-8 (relu), Dropout(0.5) after each, Dense(1, sigmoid).
  Dropout(0.25) before Flatten equals dropout on the flattened embedding (an elementwise mask commutes
  with a reshape), which is where it is applied here.

  The listing builds one ``dropout = Dropout(0.5)`` object per branch and calls it after every layer of
  that branch. In Keras this shares no weights (Dropout has none) and no masks: each call of the same
  layer object draws a fresh mask for that call's input (of a different width each time). So each
  call is an independent Dropout(0.5), which is how the branches are built here.
  Assumed (not stated): 128x128x1 input (``sample.shape``), L1 loss for age (the seed gives no loss;
  MAE is the age metric the seeds report).
  """
  return _build(dict(
      heads=(HeadSpec("age", "regression", hidden=(128, 64, 32), hidden_dropout=0.5, activation="relu",
                      regression_loss="l1"),
             HeadSpec("gender", "binary", hidden=(128, 64, 32, 16, 8), hidden_dropout=0.5)),
      input_shape=(128, 128, 1),
      convs=((32, False), (64, True), (128, True)),
      dropout=0.25), overrides)

