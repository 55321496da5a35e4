"""Convolution + bias + ReLU + 2x2 max pooling as one op that trains fast on XLA:CPU.

The Keras CNNs spend most of a CPU training step in conv -> ReLU -> 2x2 max pool blocks. Written as
separate ops (``conv.conv2d``'s im2col, ``pool.max_pool_2x2``), every block materialises full-batch
tensors in both passes: the 9x im2col patches (124 MB for the §6.1 CNN's second layer at 64x64, batch
128), the pre-activation and its gradient. XLA:CPU allocates a step's temporaries as one fresh block
on every call (470 MB for that step), which the kernel hands over one 4 KiB page fault at a time
(115k faults per step, counted with ``getrusage``): building the second layer's patches took four
times as long as multiplying them, and XLA's own convolution path faults even more.

This op runs the block in chunks of the batch (``lax.scan``), each about ``ROWS_PER_CHUNK`` output
pixels, so that one chunk's patches, pre-activation and their gradients stay in cache and are reused
by the next chunk; the step's temporaries shrink to the blocks' inputs, outputs and gradients (79 MB,
19k faults per step):

  forward   z = patches(x) @ K;  out = relu(max_2x2(z) + b)      (keeps x, out and the int8 argmax)
  backward  dz = argmax-scatter(dout * [out > 0])
            dK = sum over chunks of patches(x)^T @ dz
            dx = col2im(dz @ K^T)   (the transpose of the patch extraction, per chunk)
            db = sum of dz

It computes the same function as ``lax.conv`` + bias + ReLU + ``nn.max_pool`` in float32, up to the
order of float sums: ``max(z) + b`` equals ``max(z + b)`` exactly (rounding is monotone), and the
pooling gradient goes to the first maximum of each window in row-major order, as XLA's
select-and-scatter gives it, ties included. ``implementation='auto'`` takes this path ('im2col') on
CPU only; accelerators run exactly the separate ops as before ('lax': ``lax.conv``, ReLU,
``nn.max_pool``).
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from fairjax.ops import conv as conv_lib
from fairjax.ops import pool as pool_lib

IMPLEMENTATIONS = ("auto", "lax", "im2col")

# Output pixels (matmul rows) per chunk. Large enough for a matmul that keeps both cores busy; small
# enough that a chunk's patches and pre-activation stay in L2/L3 (2,048 rows of 3x3x64 patches: 4.7 MB).
# Measured on the §6.1 CNN (each block's forward + backward, 2 cores): 2,048 was the fastest for the
# second block and as fast as any for the other two; 1,024, 4,096 and 8,192 were slower.
ROWS_PER_CHUNK = 2048


def conv_relu_max_pool(x, kernel, bias, strides=(1, 1), padding="VALID", implementation="auto"):
  """relu(conv(x, kernel) + bias), then 2x2 / stride-2 'VALID' max pooling; NHWC x HWIO.

  Odd pre-pooling sizes drop their last row / column, as Keras's MaxPooling2D does.
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
  if implementation == "auto":
    implementation = "im2col" if jax.default_backend() == "cpu" else "lax"
  strides = tuple(strides)
  pads = conv_lib.explicit_pads(padding, kernel.shape[:2], strides, x.shape[1:3])
  if implementation == "lax":  # the separate ops, as every model ran them before this op existed
    return pool_lib.max_pool_2x2(nn.relu(conv_lib.conv2d(x, kernel, strides, pads, "lax") + bias))
  conv_hw = _conv_hw(x.shape[1:3], kernel.shape[:2], strides, pads)
  if min(conv_hw) < 2:
    raise ValueError(f"a {x.shape[1]}x{x.shape[2]} input gives a {conv_hw[0]}x{conv_hw[1]} convolution "
                     "output, too small for 2x2 max pooling")
  return _fused(x, kernel, bias, strides, pads)


def _conv_hw(in_hw, kernel_hw, strides, pads):
  return tuple((size + lo + hi - k) // s + 1
               for size, k, s, (lo, hi) in zip(in_hw, kernel_hw, strides, pads))


def _chunking(n, pixels_per_image):
  """(number of chunks, images per chunk) covering n images with chunks of ~ROWS_PER_CHUNK pixels.

  An even split (no padding) is taken when one needs at most twice the fewest chunks; otherwise the
  last chunk is padded, by less than one image per chunk.
  """
  fewest = -(-n // max(1, min(n, ROWS_PER_CHUNK // pixels_per_image)))
  for count in range(fewest, 2 * fewest + 1):
    if n % count == 0:
      return count, n // count
  return fewest, -(-n // fewest)


def _split(a, count, per_chunk):
  """[n, ...] -> [count, per_chunk, ...], zero-padding the batch (padded images add zero gradient)."""
  extra = count * per_chunk - a.shape[0]
  if extra:
    a = jnp.pad(a, ((0, extra),) + ((0, 0),) * (a.ndim - 1))
  return a.reshape(count, per_chunk, *a.shape[1:])


def _merge(a, n):
  return a.reshape(-1, *a.shape[2:])[:n]


def _patch_rows(x, kernel_hw, strides, pads):
  """[pixels, kh*kw*C] im2col rows of an unpadded chunk, ordered like an HWIO kernel's rows."""
  patches = conv_lib.patches(jnp.pad(x, ((0, 0), *pads, (0, 0))), kernel_hw, strides)
  return patches.reshape(-1, patches.shape[-1])


def _pool_with_argmax(z):
  """2x2 max of [n, h, w, f] and which of the window's (row-major) four cells held it, first on ties."""
  n, h, w, f = z.shape
  windows = z[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, f)
  cells = [windows[:, :, i, :, j] for i in range(2) for j in range(2)]
  top = jnp.maximum(jnp.maximum(cells[0], cells[1]), jnp.maximum(cells[2], cells[3]))
  argmax = jnp.where(cells[0] == top, 0, jnp.where(cells[1] == top, 1, jnp.where(cells[2] == top, 2, 3)))
  return top, argmax.astype(jnp.int8)


def _unpool(g, argmax, conv_hw):
  """The transpose of _pool_with_argmax's selection: g into its argmax cell, zeros elsewhere."""
  n, h2, w2, f = g.shape
  # One broadcast compare-and-select over the [n, h2, 2, w2, 2, f] windows (a reshape away from
  # [n, 2 h2, 2 w2, f]); in the backward pass it beat writing four masked copies and stacking them.
  cell = jnp.arange(4, dtype=argmax.dtype).reshape(1, 1, 2, 1, 2, 1)
  dz = jnp.where(argmax[:, :, None, :, None] == cell, g[:, :, None, :, None], 0)
  dz = dz.reshape(n, 2 * h2, 2 * w2, f)
  return jnp.pad(dz, ((0, 0), (0, conv_hw[0] - 2 * h2), (0, conv_hw[1] - 2 * w2), (0, 0)))


def _forward(x, kernel, bias, strides, pads):
  kh, kw, c, f = kernel.shape
  n = x.shape[0]
  conv_hw = _conv_hw(x.shape[1:3], (kh, kw), strides, pads)
  count, per_chunk = _chunking(n, conv_hw[0] * conv_hw[1])
  matrix = kernel.reshape(kh * kw * c, f)

  def chunk(_, xc):
    z = _patch_rows(xc, (kh, kw), strides, pads) @ matrix
    top, argmax = _pool_with_argmax(z.reshape(per_chunk, *conv_hw, f))
    return None, (nn.relu(top + bias), argmax)

  _, (out, argmax) = lax.scan(chunk, None, _split(x, count, per_chunk))
  return _merge(out, n), _merge(argmax, n)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _fused(x, kernel, bias, strides, pads):
  return _forward(x, kernel, bias, strides, pads)[0]


def _fused_fwd(x, kernel, bias, strides, pads):
  out, argmax = _forward(x, kernel, bias, strides, pads)
  return out, (x, kernel, out, argmax)


def _fused_bwd(strides, pads, residuals, dout):
  x, kernel, out, argmax = residuals
  kh, kw, c, f = kernel.shape
  n = x.shape[0]
  conv_hw = _conv_hw(x.shape[1:3], (kh, kw), strides, pads)
  count, per_chunk = _chunking(n, conv_hw[0] * conv_hw[1])
  matrix = kernel.reshape(kh * kw * c, f)

  def chunk(_, inputs):
    xc, out_c, dout_c, argmax_c = inputs
    g = jnp.where(out_c > 0, dout_c, 0)  # ReLU's gradient, 0 at 0 like nn.relu's
    dz = _unpool(g, argmax_c, conv_hw).reshape(-1, f)
    dkernel = _patch_rows(xc, (kh, kw), strides, pads).T @ dz
    # col2im: the transpose of the (linear) patch extraction, applied to the patches' gradient.
    col2im = jax.linear_transpose(lambda v: _patch_rows(v, (kh, kw), strides, pads), xc)
    (dx,) = col2im(dz @ matrix.T)
    return None, (dx, dkernel, g.sum((0, 1, 2)))

  chunks = tuple(_split(a, count, per_chunk) for a in (x, out, dout, argmax))
  _, (dx, dkernels, dbiases) = lax.scan(chunk, None, chunks)
  return _merge(dx, n), dkernels.sum(0).reshape(kernel.shape), dbiases.sum(0)


_fused.defvjp(_fused_fwd, _fused_bwd)


class ConvReluMaxPool(nn.Module):
  """``Conv`` (same 'kernel' HWIO / 'bias' parameters) + ReLU + 2x2 max pooling, as one op."""

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: str | Sequence[tuple[int, int]] = "SAME"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  implementation: str = "auto"

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    return conv_relu_max_pool(x, kernel.astype(x.dtype), bias.astype(x.dtype), self.strides,
                              self.padding, self.implementation)
