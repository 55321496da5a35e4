"""VGG-16 and VGG-Face (seed 001), with the fine-tuning split that trains only the last FC layers.

Seed 001 takes VGG-Face (Parkhi et al.: the VGG-16 layout, 13 3x3 convolutions in five stages, each
stage closed by 2x2 max pooling, then fc6 / fc7 of 4096 units with dropout 0.5, then the output layer)
as serengil's Keras port builds it, replaces the 2622-identity output by a 101-way age softmax (class
i is age i, decoded by the expected value) or a 2-way gender softmax, and retrains only "the last two
fully connected layers and the softmax output" on UTKFace, freezing the 13 convolutions. In serengil's
code that is ``model.layers[:-7]`` frozen: fc6, fc7 and the new output train.

The module is the same for torchvision's ``vgg16`` (same convolutions, same classifier: Linear 25088 ->
4096, ReLU, Dropout(0.5), Linear 4096 -> 4096, ReLU, Dropout(0.5), Linear -> classes). VGG-Face's fc6
is a 7x7 'valid' convolution on the 7x7x512 map, i.e. a Dense layer on its NHWC flatten; torchvision
flattens NCHW, which ``convert.load_torch_vgg`` permutes. Neither has anything else between the last
pool and fc6 at 224x224 input (torchvision's AdaptiveAvgPool2d((7, 7)) is then the identity), so fc6's
width fixes the input at 224x224.

Layer names follow VGG-Face: ``conv{stage}_{i}``, ``fc6``, ``fc7``, then the heads. The ``'embedding'``
is fc7's ReLU output (4096-d), before the dropout in front of the heads.
"""

import flax.linen as nn
import jax
import optax

from fairjax.models import heads as heads_lib
from fairjax.models.heads import HeadSpec
from fairjax.models.registry import register
from fairjax.ops.conv import Conv

Array = jax.Array

STAGE_DEPTHS = (2, 2, 3, 3, 3)  # VGG-16, configuration "D"
FC_LAYERS = ("fc6", "fc7")
# torchvision's VGG initialisation: Kaiming-normal (fan-out) convolutions, N(0, 0.01) linear layers.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_DENSE_INIT = nn.initializers.normal(0.01)


class VGG16(nn.Module):
  """VGG-16 with configurable heads on fc7.

  Attributes:
    heads: output heads, each a Dense layer on fc7 (after dropout).
    input_shape: (224, 224, 3).
    widths: filters of the five stages (64, 128, 256, 512, 512); smaller for tests.
    fc_units: width of fc6 and fc7 (4096).
    dropout: rate after fc6 and after fc7.
    conv_implementation: ``fairjax.ops.conv`` path ('auto', 'lax', 'im2col').
    trainable_fc: None lets gradients reach every layer. N stops them below the last N FC layers
      (2: the flattened convolution features; 1: fc6's output; 0: fc7's), as ``trainable_mask`` freezes
      those layers: the frozen layers' gradients are zeros the optimiser discards anyway, and without the
      stop the backward pass still runs through all 13 convolutions and keeps their activations (at
      64x64, batch 256: three times the step's compute and gigabytes of memory).
  """

  heads: tuple[HeadSpec, ...]
  input_shape: tuple[int, int, int] = (224, 224, 3)
  widths: tuple[int, ...] = (64, 128, 256, 512, 512)
  fc_units: int = 4096
  dropout: float = 0.5
  conv_implementation: str = "auto"
  trainable_fc: int | None = None

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
    for stage, (depth, width) in enumerate(zip(STAGE_DEPTHS, self.widths)):
      for i in range(depth):
        x = nn.relu(Conv(width, (3, 3), padding="SAME", kernel_init=_CONV_INIT,
                         implementation=self.conv_implementation, name=f"conv{stage + 1}_{i + 1}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    x = self._frozen_below(x.reshape(x.shape[0], -1), 2)
    x = nn.relu(nn.Dense(self.fc_units, kernel_init=_DENSE_INIT, name="fc6")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(self._frozen_below(x, 1))
    embedding = nn.relu(nn.Dense(self.fc_units, kernel_init=_DENSE_INIT, name="fc7")(x))
    embedding = self._frozen_below(embedding, 0)
    x = nn.Dropout(self.dropout, deterministic=not train)(embedding)
    outputs = heads_lib.head_outputs(self.heads, x, train, kernel_init=_DENSE_INIT)
    return {"embedding": embedding, **outputs}

  def _frozen_below(self, x: Array, num_trainable_fc: int) -> Array:
    """``x`` without a gradient when only the last ``num_trainable_fc`` FC layers (and heads) train."""
    if self.trainable_fc is not None and self.trainable_fc == num_trainable_fc:
      return jax.lax.stop_gradient(x)
    return x


def trainable_mask(params: dict, model: VGG16, num_trainable_fc: int = 2) -> dict:
  """Pytree of bools over ``params``: True for the heads and the last ``num_trainable_fc`` FC layers.

  The default (2: fc6 and fc7) is seed 001's retraining; 0 trains the heads alone. Every convolution
  is False. A top-level entry that is neither a convolution, an FC layer nor a head layer is an error,
  so a renamed layer cannot silently end up trainable or frozen.
  """
  if not 0 <= num_trainable_fc <= len(FC_LAYERS):
    raise ValueError(f"num_trainable_fc must lie in [0, {len(FC_LAYERS)}], got {num_trainable_fc}")
  head_layers = {f"{s.name}_fc{i + 1}" for s in model.heads for i in range(len(s.hidden))}
  head_layers |= {s.name for s in model.heads}
  trainable_fc = set(FC_LAYERS[len(FC_LAYERS) - num_trainable_fc:])

  def is_trainable(name):
    if name in head_layers or name in trainable_fc:
      return True
    if name.startswith("conv") or name in FC_LAYERS:
      return False
    raise ValueError(f"parameter group {name!r} is not a VGG layer or a head of this model")

  mask = {}
  for name, sub in params.items():
    flag = is_trainable(name)
    mask[name] = jax.tree.map(lambda _: flag, sub)
  return mask


def fine_tune_optimizer(tx: optax.GradientTransformation, params: dict, model: VGG16,
                        num_trainable_fc: int = 2) -> optax.GradientTransformation:
  """``tx`` on the trainable parameters of ``trainable_mask``; zero updates for the rest.

  Use this rather than ``optax.masked(tx, mask)`` alone: ``masked`` passes the frozen parameters'
  gradients through unchanged, so ``apply_updates`` would move them by their raw gradient.
  """
  mask = trainable_mask(params, model, num_trainable_fc)
  labels = jax.tree.map(lambda t: "trainable" if t else "frozen", mask)
  return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)


@register("vgg16")
def vgg16(**overrides) -> VGG16:
  """torchvision's VGG-16 (ImageNet, 1000 classes); the layout the torch importer reads."""
  return VGG16(**{"heads": (HeadSpec("label", "multiclass", num_outputs=1000),), **overrides})


@register("vgg_face")
def vgg_face(**overrides) -> VGG16:
  """VGG-Face as pretrained: 2622-way identity softmax (the model seed 001 transfers from)."""
  return VGG16(**{"heads": (HeadSpec("identity", "multiclass", num_outputs=2622),), **overrides})


@register("vgg_face_age")
def vgg_face_age(**overrides) -> VGG16:
  """Seed 001's age model: VGG-Face with a 101-way softmax, class i = age i, decoded by expected value.

  Bins of width 1 centred on 0..100 (bin_low = -0.5), so labels are ages in years and ages above 100
  fall in the last bin.
  """
  age = HeadSpec("age", "binned", num_outputs=101, bin_low=-0.5, bin_width=1.0)
  return VGG16(**{"heads": (age,), **overrides})


@register("vgg_face_gender")
def vgg_face_gender(**overrides) -> VGG16:
  """Seed 001's gender model: VGG-Face with a 2-way softmax (a separate network from the age model).

  Classes follow the data schema (0 male, 1 female). serengil's released gender weights order them the
  other way (index 0 = woman): swap the two output units when importing them.
  """
  return VGG16(**{"heads": (HeadSpec("gender", "multiclass", num_outputs=2),), **overrides})
