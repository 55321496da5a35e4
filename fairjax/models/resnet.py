"""ResNet-18 (seed 002's baseline) and SE-ResNet-101 (seed 002's audited ADS).

Seed 002 compares the 4th-place Inclusive Images solution, an SE-ResNet-101 trained from scratch on
Open Images, with a ResNet-18 pretrained on ImageNet and tuned on CelebA for gender. Both are built
here as the PyTorch code they came from builds them, so that their state dicts load one to one
(``convert.load_torch_resnet``):

  ResNet-18     torchvision: 7x7/2 stem (padding 3), 3x3/2 max pool (padding 1), BasicBlocks [2, 2, 2, 2]
                with the stride in the first 3x3, 1x1 projection shortcuts, global average pool.
  SE-ResNet-101 the solution's own ``se_resnet.py`` (the seed's reference [4]): bottleneck blocks
                [3, 4, 23, 3] (expansion 4) with the stride in the *first 1x1* convolution (Caffe
                style, not torchvision's 3x3), a squeeze-and-excitation gate on the residual branch
                (global average, Linear C -> C/16, ReLU, Linear C/16 -> C, sigmoid, scale) before the
                addition, an unpadded 3x3/2 stem max pool, and ``AvgPool2d(5)`` in place of a global
                pool. At its 224x224 crops the last map is 7x7, so that pool averages its top-left 5x5
                window only; ``final_pool=None`` gives the usual global average instead.

PyTorch pads explicitly and symmetrically; 'SAME' in XLA pads strided convolutions asymmetrically
(more on the bottom/right), which would shift every strided layer by a pixel against an imported
checkpoint. All paddings are therefore explicit. BatchNorm uses PyTorch's epsilon (1e-5) and momentum
(0.1, i.e. Flax's 0.9), running averages when ``train=False``; ``bn_axis_name`` makes training-mode
statistics span all devices of a pmapped / shard_mapped step. (PyTorch folds the unbiased batch
variance into its running variance, Flax the biased one: running statistics *trained* here differ
from PyTorch's by n / (n - 1); imported ones are used as they are.) The ``'embedding'`` is the pooled
feature vector (512-d / 2048-d).
"""

from typing import Optional

import flax.linen as nn
import jax

from fairjax.models import heads as heads_lib
from fairjax.models.heads import HeadSpec
from fairjax.models.registry import register
from fairjax.ops.conv import Conv

Array = jax.Array

# PyTorch's initialisation in both sources: Kaiming-normal (fan-out) convolutions; unit / zero BN.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) kernels.
_LINEAR_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _pad(k: int) -> tuple[tuple[int, int], tuple[int, int]]:
  return ((k // 2, k // 2), (k // 2, k // 2))


def _batch_norm(train: bool, axis_name: Optional[str], name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=axis_name,
                      name=name)


class _Block(nn.Module):
  """One residual block: basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 x4), optional SE gate."""

  planes: int
  stride: int
  bottleneck: bool
  stride_in_1x1: bool
  se_reduction: Optional[int]
  bn_axis_name: Optional[str]
  conv_implementation: str

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    norm = lambda name: _batch_norm(train, self.bn_axis_name, name)
    conv = lambda f, k, s, name: Conv(f, (k, k), (s, s), _pad(k), use_bias=False, kernel_init=_CONV_INIT,
                                      implementation=self.conv_implementation, name=name)
    out_planes = self.planes * (4 if self.bottleneck else 1)
    if self.bottleneck:
      s1, s3 = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
      y = nn.relu(norm("bn1")(conv(self.planes, 1, s1, "conv1")(x)))
      y = nn.relu(norm("bn2")(conv(self.planes, 3, s3, "conv2")(y)))
      y = norm("bn3")(conv(out_planes, 1, 1, "conv3")(y))
    else:
      y = nn.relu(norm("bn1")(conv(self.planes, 3, self.stride, "conv1")(x)))
      y = norm("bn2")(conv(self.planes, 3, 1, "conv2")(y))
    if self.se_reduction:
      s = y.mean(axis=(1, 2))
      s = nn.relu(nn.Dense(out_planes // self.se_reduction, kernel_init=_LINEAR_INIT, name="se_fc1")(s))
      s = nn.sigmoid(nn.Dense(out_planes, kernel_init=_LINEAR_INIT, name="se_fc2")(s))
      y = y * s[:, None, None, :]
    if self.stride != 1 or x.shape[-1] != out_planes:
      x = norm("downsample_bn")(conv(out_planes, 1, self.stride, "downsample_conv")(x))
    return nn.relu(x + y)


class ResNet(nn.Module):
  """ResNet / SE-ResNet with configurable heads on the pooled features.

  Attributes:
    heads: output heads on the pooled embedding.
    input_shape: (H, W, C) of the seed's inputs.
    stage_sizes: blocks per stage.
    bottleneck: bottleneck (x4) blocks instead of basic blocks.
    width: planes of the first stage (64); stage s has width * 2**s. Smaller for tests.
    se_reduction: squeeze-and-excitation reduction ratio, None for a plain ResNet.
    stride_in_1x1: bottleneck stride in the first 1x1 convolution (Caffe / SE-ResNet) not the 3x3.
    stem_pool_padding: padding of the 3x3/2 stem max pool (1 torchvision, 0 the SE-ResNet source).
    final_pool: None for global average pooling; k for PyTorch's ``AvgPool2d(k)`` (stride k, no
      padding), which must leave a 1x1 map.
    bn_axis_name: named axis over which training-mode BatchNorm statistics are averaged.
    conv_implementation: ``fairjax.ops.conv`` path ('auto', 'lax', 'im2col').
  """

  heads: tuple[HeadSpec, ...]
  input_shape: tuple[int, int, int] = (224, 224, 3)
  stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
  bottleneck: bool = False
  width: int = 64
  se_reduction: Optional[int] = None
  stride_in_1x1: bool = False
  stem_pool_padding: int = 1
  final_pool: Optional[int] = None
  bn_axis_name: Optional[str] = None
  conv_implementation: str = "auto"

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> dict[str, Array]:
    x = Conv(self.width, (7, 7), (2, 2), _pad(7), use_bias=False, kernel_init=_CONV_INIT,
             implementation=self.conv_implementation, name="conv1")(x)
    x = nn.relu(_batch_norm(train, self.bn_axis_name, "bn1")(x))
    p = self.stem_pool_padding
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((p, p), (p, p)))
    for stage, blocks in enumerate(self.stage_sizes):
      for j in range(blocks):
        x = _Block(planes=self.width * 2 ** stage, stride=2 if stage > 0 and j == 0 else 1,
                   bottleneck=self.bottleneck, stride_in_1x1=self.stride_in_1x1,
                   se_reduction=self.se_reduction, bn_axis_name=self.bn_axis_name,
                   conv_implementation=self.conv_implementation, name=f"layer{stage + 1}_{j}")(x, train)
    if self.final_pool is None:
      embedding = x.mean(axis=(1, 2))
    else:
      k = self.final_pool
      x = nn.avg_pool(x, (k, k), strides=(k, k), padding="VALID")
      if x.shape[1:3] != (1, 1):
        raise ValueError(f"AvgPool2d({k}) leaves a {x.shape[1]}x{x.shape[2]} map; the input size does "
                         f"not suit final_pool={k} (use final_pool=None for a global average)")
      embedding = x.reshape(x.shape[0], -1)
    outputs = heads_lib.head_outputs(self.heads, embedding, train, kernel_init=_LINEAR_INIT)
    return {"embedding": embedding, **outputs}


@register("resnet18")
def resnet18(**overrides) -> ResNet:
  """Seed 002's baseline: torchvision ResNet-18 tuned for gender on CelebA.

  Default head: 2-way softmax gender (the usual torchvision fine-tuning, ``fc = Linear(512, 2)`` with
  cross-entropy; the seed does not say which output it used).
  """
  return ResNet(**{"heads": (HeadSpec("gender", "multiclass", num_outputs=2),), **overrides})


@register("se_resnet101")
def se_resnet101(**overrides) -> ResNet:
  """Seed 002's ADS: SE-ResNet-101 as its source builds it, with its multi-label softmax output.

  The classifier is ``Linear(2048, n_classes)`` over the Open Images labels of the competition's
  training annotations, trained with the "softmax for each positive against all negatives" loss
  (``multilabel_softmax``). n_classes is data-dependent; the seed puts it at "18 thousand", which is
  the default here. The seed reads four of those labels as gender (Man and Boy male, Woman and Girl
  female): ``configs/seed002_se_resnet101.py`` gives it a head of those four, read through
  ``HeadSpec.class_groups``.
  """
  return ResNet(**{
      "heads": (HeadSpec("labels", "multilabel_softmax", num_outputs=18000),),
      "stage_sizes": (3, 4, 23, 3),
      "bottleneck": True,
      "se_reduction": 16,
      "stride_in_1x1": True,
      "stem_pool_padding": 0,
      "final_pool": 5,
      **overrides})
