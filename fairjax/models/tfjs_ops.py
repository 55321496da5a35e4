"""The TensorFlow ops of TF.js graph models, as JAX functions: the op table that ``tfjs.py`` interprets with.

Each op follows TensorFlow's documented semantics, which TF.js's executors reproduce; where TF.js adds a
quirk (fused ops read in order, average pools that skip padding) the code says so. Values are either
NumPy arrays or JAX arrays. NumPy means *known while tracing*: the graph's integer constants, shapes
(``Shape`` of any tensor is static under ``jax.jit``) and whatever is computed from them only. Ops that
TensorFlow uses for shape arithmetic (``Shape`` -> ``StridedSlice`` -> ``Pack`` -> ``Reshape``) compute
in NumPy when all their inputs are NumPy, so a reshape to a computed shape stays a static reshape under
jit, and a dynamic batch dimension (-1) is simply the batch of the images fed. Float constants are
weights (``params``, traced under jit). An argument that must be static (a shape, an axis, paddings) but
is computed from the images or the weights is an error naming the node.
"""

import base64
from typing import Any, Callable, Mapping, Sequence

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

# TF.js holds float32, int32 and bool tensors only; TensorFlow's other types map onto them as it does.
DTYPES = {"DT_FLOAT": np.float32, "DT_HALF": np.float32, "DT_DOUBLE": np.float32, "DT_BFLOAT16": np.float32,
          "DT_INT32": np.int32, "DT_INT64": np.int32, "DT_INT16": np.int32, "DT_INT8": np.int32,
          "DT_UINT8": np.int32, "DT_UINT16": np.int32, "DT_BOOL": np.bool_}
_HIGHEST = lax.Precision.HIGHEST  # float32 products on every backend (no TF32 / bfloat16 passes)


class Node:
  """One graph node: its name, op, input references (``(node, output index)``) and decoded attributes."""

  def __init__(self, name: str, op: str, inputs: Sequence[tuple[str, int]], attr: Mapping[str, Any]):
    self.name, self.op, self.inputs, self._attr = name, op, tuple(inputs), dict(attr or {})

  def __repr__(self) -> str:
    return f"node {self.name!r} ({self.op})"

  def error(self, message: str) -> ValueError:
    return ValueError(f"{self!r}: {message}")

  def attr(self, key: str, default: Any = None) -> Any:
    """The attribute decoded from model.json's JSON form of TensorFlow's AttrValue, else ``default``."""
    if key not in self._attr:
      return default
    value = self._attr[key]
    if "list" in value:
      items = value["list"]
      kind = next(iter(items), None)
      return [_scalar(kind, item) for item in items.get(kind, [])]
    kind = next(iter(value), None)
    return _scalar(kind, value[kind]) if kind else default


def _scalar(kind: str, value: Any) -> Any:
  if kind == "s":
    return base64.b64decode(value).decode()
  if kind == "i":
    return int(value)
  if kind == "f":
    return float(value)
  if kind == "b":
    return bool(value)
  if kind == "shape":
    return None if value.get("unknownRank") else [int(d.get("size", -1)) for d in value.get("dim", [])]
  return value  # "type" (a DT_ name), "tensor", "func"


def is_static(value) -> bool:
  return isinstance(value, np.ndarray)


def _is_int(value) -> bool:
  return jnp.issubdtype(jnp.result_type(value), jnp.integer)


def _xp(*values):
  """NumPy when every value is known while tracing, else jax.numpy."""
  return np if all(is_static(v) for v in values) else jnp


def static(node: Node, value, what: str) -> np.ndarray:
  if not is_static(value):
    raise node.error(f"its {what} is computed from the images or the float weights (params); it must be "
                     "known when the graph is traced")
  return value


def _ints(node: Node, value, what: str) -> list[int]:
  return [int(v) for v in np.ravel(static(node, value, what))]


OPS: dict[str, Callable] = {}


def register(*names: str):
  def wrap(fn):
    for name in names:
      OPS[name] = fn
    return fn
  return wrap


def _elementwise(names: Sequence[str], fn: Callable) -> None:
  register(*names)(lambda node, *args: fn(_xp(*args), *args))


for _names, _fn in [
    (("Add", "AddV2", "BiasAdd"), lambda xp, a, b: xp.add(a, b)),
    (("Sub",), lambda xp, a, b: xp.subtract(a, b)),
    (("Mul",), lambda xp, a, b: xp.multiply(a, b)),
    (("RealDiv",), lambda xp, a, b: xp.true_divide(a, b)),
    (("Div",), lambda xp, a, b: (xp.floor_divide if _is_int(a) else xp.true_divide)(a, b)),
    (("FloorDiv",), lambda xp, a, b: xp.floor_divide(a, b)),
    (("FloorMod",), lambda xp, a, b: xp.mod(a, b)),
    (("Maximum",), lambda xp, a, b: xp.maximum(a, b)),
    (("Minimum",), lambda xp, a, b: xp.minimum(a, b)),
    (("Pow",), lambda xp, a, b: xp.power(a, b)),
    (("SquaredDifference",), lambda xp, a, b: xp.square(xp.subtract(a, b))),
    (("Atan2",), lambda xp, a, b: xp.arctan2(a, b)),
    (("Greater",), lambda xp, a, b: xp.greater(a, b)),
    (("GreaterEqual",), lambda xp, a, b: xp.greater_equal(a, b)),
    (("Less",), lambda xp, a, b: xp.less(a, b)),
    (("LessEqual",), lambda xp, a, b: xp.less_equal(a, b)),
    (("Equal",), lambda xp, a, b: xp.equal(a, b)),
    (("NotEqual",), lambda xp, a, b: xp.not_equal(a, b)),
    (("LogicalAnd",), lambda xp, a, b: xp.logical_and(a, b)),
    (("LogicalOr",), lambda xp, a, b: xp.logical_or(a, b)),
    (("LogicalNot",), lambda xp, a: xp.logical_not(a)),
    (("Neg",), lambda xp, a: xp.negative(a)),
    (("Abs",), lambda xp, a: xp.abs(a)),
    (("Sign",), lambda xp, a: xp.sign(a)),
    (("Square",), lambda xp, a: xp.square(a)),
    (("Floor",), lambda xp, a: xp.floor(a)),
    (("Ceil",), lambda xp, a: xp.ceil(a)),
    (("Round",), lambda xp, a: xp.round(a)),  # half to even, as TensorFlow
    (("Sqrt",), lambda xp, a: xp.sqrt(a)),
    (("Rsqrt",), lambda xp, a: xp.reciprocal(xp.sqrt(a))),
    (("Reciprocal", "Inv"), lambda xp, a: xp.reciprocal(a)),
    (("Exp",), lambda xp, a: xp.exp(a)),
    (("Log",), lambda xp, a: xp.log(a)),
    (("Sin",), lambda xp, a: xp.sin(a)),
    (("Cos",), lambda xp, a: xp.cos(a)),
    (("Select", "SelectV2"), lambda xp, c, a, b: xp.where(_select_condition(xp, c, a), a, b)),
    (("ClipByValue",), lambda xp, a, low, high: xp.minimum(xp.maximum(a, low), high)),
    (("AddN",), lambda xp, *a: sum(a[1:], a[0])),
    (("Identity", "StopGradient", "Snapshot", "PreventGradient", "EnsureShape", "PlaceholderWithDefault"),
     lambda xp, a, *_: a),
]:
  _elementwise(_names, _fn)


def _select_condition(xp, condition, value):
  """TensorFlow's ``Select`` with a vector condition picks whole rows of higher-rank values."""
  condition = xp.asarray(condition)
  if condition.ndim == 1 and np.ndim(value) > 1:
    return xp.reshape(condition, (-1,) + (1,) * (np.ndim(value) - 1))
  return condition


ACTIVATIONS = {
    "Relu": lambda node, x: jax.nn.relu(x),
    "Relu6": lambda node, x: jnp.clip(x, 0.0, 6.0),
    "Elu": lambda node, x: jax.nn.elu(x),
    "Selu": lambda node, x: jax.nn.selu(x),
    "Sigmoid": lambda node, x: jax.nn.sigmoid(x),
    "Tanh": lambda node, x: jnp.tanh(x),
    "Softplus": lambda node, x: jax.nn.softplus(x),
    # The op's attribute is alpha; fused into a convolution it is leakyrelu_alpha.
    "LeakyRelu": lambda node, x: jnp.where(x >= 0, x, x * node.attr("alpha",
                                                                      node.attr("leakyrelu_alpha", 0.2))),
}
for _name, _activation in ACTIVATIONS.items():
  register(_name)(_activation)
register("Prelu")(lambda node, x, alpha: jnp.where(x >= 0, x, x * alpha))
register("Softmax")(lambda node, x: jax.nn.softmax(x, axis=-1))
register("LogSoftmax")(lambda node, x: jax.nn.log_softmax(x, axis=-1))
register("NoOp")(lambda node, *args: ())


@register("Cast")
def _cast(node, x):
  dtype = DTYPES[node.attr("DstT", "DT_FLOAT")]
  return np.asarray(x).astype(dtype) if is_static(x) else jnp.asarray(x).astype(dtype)


# ---- shapes, reshapes, slices: NumPy while everything they read is static ----

register("Shape")(lambda node, x: np.asarray(np.shape(x), DTYPES[node.attr("out_type", "DT_INT32")]))
register("ShapeN")(lambda node, *xs: tuple(np.asarray(np.shape(x), np.int32) for x in xs))
register("Size")(lambda node, x: np.asarray(np.size(x), np.int32))
register("Rank")(lambda node, x: np.asarray(np.ndim(x), np.int32))
register("Reshape")(lambda node, x, shape: _xp(x).reshape(x, _ints(node, shape, "shape")))
register("ExpandDims")(lambda node, x, axis: _xp(x).expand_dims(x, _ints(node, axis, "axis")[0]))
register("Transpose")(lambda node, x, perm: _xp(x).transpose(x, _ints(node, perm, "permutation")))
register("Tile")(lambda node, x, multiples: _xp(x).tile(x, _ints(node, multiples, "multiples")))
register("BroadcastTo")(lambda node, x, shape: _xp(x).broadcast_to(x, _ints(node, shape, "shape")))
register("ZerosLike")(lambda node, x: _xp(x).zeros_like(x))
register("OnesLike")(lambda node, x: _xp(x).ones_like(x))
register("Pack")(lambda node, *xs: _xp(*xs).stack(xs, axis=node.attr("axis", 0)))
register("ConcatV2")(lambda node, *xs: _xp(*xs[:-1]).concatenate(xs[:-1], _ints(node, xs[-1], "axis")[0]))
register("Concat")(lambda node, axis, *xs: _xp(*xs).concatenate(xs, _ints(node, axis, "axis")[0]))
register("Fill")(lambda node, dims, value: _xp(value).full(_ints(node, dims, "dims"), value))


@register("Range")
def _range(node, start, limit, delta):
  bounds = ((start, "start"), (limit, "limit"), (delta, "delta"))
  return np.arange(*(np.ravel(static(node, value, what))[0] for value, what in bounds))


@register("Squeeze")
def _squeeze(node, x):
  axes = node.attr("squeeze_dims", node.attr("axis", []))
  return _xp(x).squeeze(x, tuple(axes) if axes else None)


@register("Unpack")
def _unpack(node, x):
  axis = node.attr("axis", 0)
  return tuple(_xp(x).take(x, i, axis=axis) for i in range(np.shape(x)[axis]))


@register("Split")
def _split(node, axis, x):
  return tuple(_xp(x).split(x, node.attr("num_split"), axis=_ints(node, axis, "axis")[0]))


@register("SplitV")
def _split_v(node, x, sizes, axis):
  axis = _ints(node, axis, "axis")[0]
  sizes = _ints(node, sizes, "size_splits")
  if -1 in sizes:
    sizes[sizes.index(-1)] = np.shape(x)[axis] - (sum(sizes) + 1)
  return tuple(_xp(x).split(x, np.cumsum(sizes)[:-1].tolist(), axis=axis))


@register("Slice")
def _slice(node, x, begin, size):
  begin, size = _ints(node, begin, "begin"), _ints(node, size, "size")
  return x[tuple(slice(b, None if s == -1 else b + s) for b, s in zip(begin, size))]


@register("StridedSlice")
def _strided_slice(node, x, begin, end, strides):
  """TensorFlow's masks as a Python index, whose clamping of out-of-range bounds is TensorFlow's too."""
  begin, end = _ints(node, begin, "begin"), _ints(node, end, "end")
  strides = _ints(node, strides, "strides")
  masks = {k: node.attr(f"{k}_mask", 0) for k in ("begin", "end", "ellipsis", "new_axis", "shrink_axis")}
  index = []
  for i, (b, e, s) in enumerate(zip(begin, end, strides)):
    if masks["ellipsis"] >> i & 1:
      index.append(Ellipsis)
    elif masks["new_axis"] >> i & 1:
      index.append(None)
    elif masks["shrink_axis"] >> i & 1:
      index.append(b)
    else:
      index.append(slice(None if masks["begin"] >> i & 1 else b, None if masks["end"] >> i & 1 else e, s))
  return x[tuple(index)]


@register("GatherV2")
def _gather(node, params, indices, axis):
  if node.attr("batch_dims", 0):
    raise node.error("batch_dims is not supported")
  return _xp(params, indices).take(params, indices, axis=_ints(node, axis, "axis")[0])


@register("Pad", "PadV2", "MirrorPad")
def _pad(node, x, paddings, value=None):
  widths = np.reshape(_ints(node, paddings, "paddings"), (-1, 2)).tolist()
  if node.op == "MirrorPad":
    return _xp(x).pad(x, widths, mode="reflect" if node.attr("mode") == "REFLECT" else "symmetric")
  value = np.zeros((), jnp.result_type(x)) if value is None else value
  return _xp(x, value).pad(x, widths, constant_values=value)


def _reduction(name: str):
  def reduce(node, x, axis):
    axes = tuple(_ints(node, axis, "axis"))
    return getattr(_xp(x), name)(x, axis=axes, keepdims=node.attr("keep_dims", False))
  return reduce


for _op, _name in (("Mean", "mean"), ("Sum", "sum"), ("Max", "max"), ("Min", "min"), ("Prod", "prod"),
                   ("All", "all"), ("Any", "any")):
  register(_op)(_reduction(_name))


@register("ArgMax", "ArgMin")
def _arg_extreme(node, x, axis):
  fn = _xp(x).argmax if node.op == "ArgMax" else _xp(x).argmin
  return fn(x, axis=_ints(node, axis, "axis")[0]).astype(DTYPES[node.attr("output_type", "DT_INT64")])


# ---- convolutions, products, pools, normalisation, resizing ----

def _check_nhwc(node: Node) -> None:
  data_format = node.attr("data_format", "NHWC")
  if data_format != "NHWC":
    raise node.error(f"data_format {data_format} is not supported (only NHWC)")


def _padding(node: Node, spatial_only: bool = True):
  padding = node.attr("padding", "VALID")
  if padding != "EXPLICIT":
    return padding
  pairs = np.reshape(node.attr("explicit_paddings", []), (-1, 2)).tolist()
  return [tuple(p) for p in (pairs[1:3] if spatial_only else pairs)]


def _conv(node: Node, x, kernel, depthwise: bool = False):
  _check_nhwc(node)
  groups = 1
  if depthwise:  # [kh, kw, C, multiplier] -> [kh, kw, 1, C * multiplier]: output channel c * multiplier + m
    groups = kernel.shape[2]
    kernel = jnp.reshape(kernel, kernel.shape[:2] + (1, -1))
  return lax.conv_general_dilated(
      jnp.asarray(x), jnp.asarray(kernel), window_strides=node.attr("strides", [1] * 4)[1:3],
      padding=_padding(node), rhs_dilation=node.attr("dilations", [1] * 4)[1:3],
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups, precision=_HIGHEST)


def _matmul(node: Node, a, b):
  a = jnp.swapaxes(a, -1, -2) if node.attr("transpose_a", node.attr("adj_x", False)) else a
  b = jnp.swapaxes(b, -1, -2) if node.attr("transpose_b", node.attr("adj_y", False)) else b
  return jnp.matmul(a, b, precision=_HIGHEST)


def _batch_norm(x, scale, offset, mean, variance, epsilon: float):
  return (x - mean) * lax.rsqrt(variance + epsilon) * scale + offset


def _fused(node: Node, y, args):
  """``fused_ops`` applied in order, each taking its arguments from ``args`` (TF's and TF.js's reading)."""
  args = list(args)
  if len(args) != node.attr("num_args", len(args)):
    raise node.error(f"num_args is {node.attr('num_args')} but the node has {len(args)} extra inputs")
  for fused_op in node.attr("fused_ops", []):
    if fused_op in ("BiasAdd", "Add"):
      y = y + args.pop(0)
    elif fused_op == "FusedBatchNorm":
      y = _batch_norm(y, *args[:4], node.attr("epsilon", 1e-4))
      del args[:4]
    elif fused_op == "Prelu":
      y = jnp.where(y >= 0, y, y * args.pop(0))
    elif fused_op in ACTIVATIONS:
      y = ACTIVATIONS[fused_op](node, y)
    else:
      raise node.error(f"fused op {fused_op!r} is not supported")
  return y


register("Conv2D")(lambda node, x, kernel: _conv(node, x, kernel))
register("DepthwiseConv2dNative", "DepthwiseConv2d")(lambda node, x, kernel: _conv(node, x, kernel, True))
register("_FusedConv2D")(lambda node, x, kernel, *args: _fused(node, _conv(node, x, kernel), args))
register("_FusedDepthwiseConv2dNative", "FusedDepthwiseConv2dNative")(
    lambda node, x, kernel, *args: _fused(node, _conv(node, x, kernel, True), args))
register("MatMul", "BatchMatMul", "BatchMatMulV2")(lambda node, a, b: _matmul(node, a, b))
register("_FusedMatMul")(lambda node, a, b, *args: _fused(node, _matmul(node, a, b), args))


@register("Conv2DBackpropInput")
def _conv_transpose(node, output_shape, kernel, gradient):
  """The gradient of ``Conv2D`` with respect to its input, of shape ``output_shape``: TF's definition."""
  shape = _ints(node, output_shape, "output_shape")
  zeros = jnp.zeros(shape, jnp.result_type(gradient))
  _, pullback = jax.vjp(lambda x: _conv(node, x, kernel), zeros)
  return pullback(jnp.asarray(gradient))[0]


@register("MaxPool", "AvgPool")
def _pool(node, x):
  _check_nhwc(node)
  window, strides = node.attr("ksize"), node.attr("strides")
  padding = _padding(node, spatial_only=False)
  x = jnp.asarray(x)
  if node.op == "MaxPool":
    return lax.reduce_window(x, -jnp.inf, lax.max, window, strides, padding)
  total = lax.reduce_window(x, 0.0, lax.add, window, strides, padding)
  # TensorFlow and TF.js average over the window's cells inside the image only.
  inside = lax.reduce_window(jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype), 0.0, lax.add, window, strides,
                             padding)
  return total / inside


@register("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def _fused_batch_norm(node, x, scale, offset, mean, variance):
  _check_nhwc(node)
  if node.attr("is_training", False):
    raise node.error("is_training=true (batch statistics) is not supported")
  y = _batch_norm(x, scale, offset, mean, variance, node.attr("epsilon", 1e-4))
  return (y, mean, variance, mean, variance, variance)


@register("ResizeBilinear")
def _resize_bilinear(node, images, size):
  """TF.js's cpu kernel: source coordinates in float64, lerped along width, then height."""
  align_corners, half_pixel = node.attr("align_corners", False), node.attr("half_pixel_centers", False)
  images = jnp.asarray(images)
  out = images
  for axis, new_size in zip((2, 1), _ints(node, size, "size")[::-1]):
    old_size = images.shape[axis]
    ratio = ((old_size - 1) / (new_size - 1) if align_corners and new_size > 1 else old_size / new_size)
    source = (np.arange(new_size) + 0.5) * ratio - 0.5 if half_pixel else np.arange(new_size) * ratio
    low = np.maximum(np.floor(source), 0).astype(np.int32)
    high = np.minimum(np.ceil(source), old_size - 1).astype(np.int32)
    frac_shape = [1] * 4
    frac_shape[axis] = new_size
    fraction = jnp.asarray(np.reshape(source - low, frac_shape), images.dtype)
    first, second = jnp.take(out, low, axis=axis), jnp.take(out, high, axis=axis)
    out = first + (second - first) * fraction
  return out


@register("DepthToSpace")
def _depth_to_space(node, x):
  _check_nhwc(node)
  block = node.attr("block_size")
  b, h, w, c = x.shape
  x = jnp.reshape(x, (b, h, w, block, block, c // block ** 2))
  return jnp.reshape(jnp.transpose(x, (0, 1, 3, 2, 4, 5)), (b, h * block, w * block, c // block ** 2))


@register("SpaceToDepth")
def _space_to_depth(node, x):
  _check_nhwc(node)
  block = node.attr("block_size")
  b, h, w, c = x.shape
  x = jnp.reshape(x, (b, h // block, block, w // block, block, c))
  return jnp.reshape(jnp.transpose(x, (0, 1, 3, 2, 4, 5)), (b, h // block, w // block, block * block * c))
