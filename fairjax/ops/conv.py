"""2-D convolution that is fast to train on XLA:CPU, and plain ``lax.conv`` everywhere else.

On GPU/TPU, ``lax.conv_general_dilated`` and its autodiff are what the hardware is built for. On CPU,
XLA computes the *kernel* gradient of a convolution several times slower than oneDNN does (measured
6x on the seed CNN's second layer), which caps a CPU training step at about a quarter of PyTorch's
speed. The same gradient written as one matrix product of image patches ("im2col") runs at matmul
speed, so on CPU this module uses a custom VJP:

  forward        y  = patches(x) @ K              (one matmul; patches kept for the backward pass)
  kernel grad    dK = patches(x)^T @ dy           (one matmul, instead of XLA's slow conv)
  input grad     dx = XLA's own transposed conv   (already fast on CPU)

Both paths compute the same convolution (the cross-correlation of ``lax.conv``, NHWC / HWIO); they
differ only in float summation order. ``implementation='auto'`` picks im2col on CPU and lax elsewhere,
so accelerator numerics are untouched. A convolution followed by ReLU and 2x2 max pooling trains
faster still through ``conv_pool``, which does the same per chunk of the batch instead of keeping
full-batch patches.
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

_DIMS = ("NHWC", "HWIO", "NHWC")
IMPLEMENTATIONS = ("auto", "lax", "im2col")


def explicit_pads(padding, kernel_hw: Sequence[int], strides: Sequence[int], in_hw: Sequence[int]):
  """Explicit ((top, bottom), (left, right)) padding for 'VALID', 'SAME' or explicit pairs."""
  if not isinstance(padding, str):
    return tuple(tuple(p) for p in padding)
  if padding.upper() == "VALID":
    return ((0, 0), (0, 0))
  if padding.upper() != "SAME":
    raise ValueError(f"padding must be 'SAME', 'VALID' or explicit pairs, got {padding!r}")
  return tuple(lax.padtype_to_pads(in_hw, kernel_hw, strides, "SAME"))


def patches(x, kernel_hw, strides):
  """[N, H', W', kh*kw*C] patches of an already padded x, ordered like an HWIO kernel's rows."""
  kh, kw = kernel_hw
  sh, sw = strides
  out_h = (x.shape[1] - kh) // sh + 1
  out_w = (x.shape[2] - kw) // sw + 1
  cols = [x[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]
  return jnp.concatenate(cols, axis=-1)


def _lax_conv(x, kernel, strides, pads):
  return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _im2col_conv(x, kernel, strides, pads):
  return _im2col_forward(x, kernel, strides, pads)[0]


def _im2col_forward(x, kernel, strides, pads):
  kh, kw, c, f = kernel.shape
  cols = patches(jnp.pad(x, ((0, 0), *pads, (0, 0))), (kh, kw), strides)
  y = cols @ kernel.reshape(kh * kw * c, f)
  return y, (x, kernel, cols)


def _im2col_backward(strides, pads, residuals, dy):
  x, kernel, cols = residuals
  kh, kw, c, f = kernel.shape
  rows = cols.reshape(-1, kh * kw * c)
  dkernel = (rows.T @ dy.reshape(-1, f)).reshape(kernel.shape)
  _, input_vjp = jax.vjp(lambda v: _lax_conv(v, kernel, strides, pads), x)
  (dx,) = input_vjp(dy)
  return dx, dkernel


_im2col_conv.defvjp(_im2col_forward, _im2col_backward)


def conv2d(x, kernel, strides=(1, 1), padding="VALID", implementation: str = "auto"):
  """NHWC x HWIO cross-correlation, like ``lax.conv_general_dilated``; see the module docstring."""
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
  strides = tuple(strides)
  pads = explicit_pads(padding, kernel.shape[:2], strides, x.shape[1:3])
  if implementation == "auto":
    implementation = "im2col" if jax.default_backend() == "cpu" else "lax"
  if implementation == "lax":
    return _lax_conv(x, kernel, strides, pads)
  return _im2col_conv(x, kernel, strides, pads)


class Conv(nn.Module):
  """Drop-in for ``flax.linen.Conv`` (NHWC, no dilation or groups) built on ``conv2d``.

  Parameter names and shapes ('kernel' HWIO, 'bias') match ``nn.Conv``, so checkpoints and weight
  importers are shared between the two.
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: str | Sequence[tuple[int, int]] = "SAME"
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  implementation: str = "auto"

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    y = conv2d(x, kernel.astype(x.dtype), self.strides, self.padding, self.implementation)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32).astype(x.dtype)
    return y
