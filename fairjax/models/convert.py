"""Weights from Keras HDF5 files and PyTorch state dicts into our Flax variables; TF.js graph models as JAX.

Pretrained weights cannot be downloaded where fairjax is built, so every importer here is tested on
small checkpoints that the tests write with Keras / PyTorch themselves, and compared output for
output. Each importer overlays a checkpoint onto variables from ``registry.init_variables`` and checks
that every array lands somewhere, with the shape it must have, and that nothing is left out (apart from
heads the caller chooses to train anew); a checkpoint that does not fit is an error, never a partial
load. The layout traps handled:

  Keras     kernels are already HWIO / [in, out] and Flatten is NHWC, so arrays load unchanged; the
            difficulty is *which* layer is which. Legacy ``.h5`` files record the model's layer order;
            Keras 3 ``.weights.h5`` files only key layers by name, so auto-generated names
            (``conv2d``, ``conv2d_1``, ..., ``conv2d_10``) are put in creation order by their numeric
            suffix, not alphabetically; pass ``layer_names`` for hand-named layers.
  PyTorch   convolutions are OIHW (-> HWIO), Linear weights [out, in] (-> transposed), BatchNorm
            running statistics go to ``batch_stats`` (``num_batches_tracked`` has no counterpart),
            and VGG's first classifier layer reads an NCHW flatten (c, h, w) where ours reads NHWC
            (h, w, c): its input rows are permuted, not just transposed.
  TF.js     graph models (model.json + .bin shards) are no Flax module's checkpoint: ``load_tfjs``
            interprets the graph itself (``tfjs.py``, its ops in ``tfjs_ops.py``) and checks every op
            it needs when it loads.
"""

import re
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn
from flax import traverse_util
import h5py
import jax
import jax.numpy as jnp
import numpy as np

from fairjax.models import resnet as resnet_lib
from fairjax.models import tfjs
from fairjax.models import vgg as vgg_lib


def _suffix_order(name: str) -> tuple[str, int]:
  """Creation order of a Keras auto-name: ``dense`` < ``dense_1`` < ``dense_2`` < ``dense_10``."""
  match = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
  return match.group(1), int(match.group(2) or 0)


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def read_keras_weights(path: str, layer_names: Optional[Sequence[str]] = None
                       ) -> list[tuple[str, list[np.ndarray]]]:
  """``[(layer name, [arrays])]`` for every Keras layer with weights, in model order.

  Reads legacy HDF5 (``model.save('m.h5')``, Keras 2 ``save_weights('w.h5')``) and Keras 3
  ``.weights.h5``. ``layer_names`` selects and orders the layers explicitly.
  """
  layers = []
  with h5py.File(path, "r") as f:
    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" in root.attrs:  # legacy HDF5: ordered names, each with ordered weight names
      names = [_text(n) for n in root.attrs["layer_names"]]
      for name in names:
        group = root[name]
        arrays = [np.asarray(group[_text(w)]) for w in group.attrs.get("weight_names", [])]
        layers.append((name, arrays))
    elif "layers" in f:  # Keras 3: layers/<name>/vars/<index>
      for name, group in f["layers"].items():
        variables = group.get("vars", {})
        arrays = [np.asarray(variables[k]) for k in sorted(variables, key=int)]
        layers.append((name, arrays))
      layers.sort(key=lambda item: _suffix_order(item[0]))
    else:
      raise ValueError(f"{path}: neither a legacy Keras HDF5 file nor a Keras 3 .weights.h5 file")
  if layer_names is not None:
    by_name = dict(layers)
    missing = [n for n in layer_names if n not in by_name]
    if missing:
      raise ValueError(f"{path}: no layers {missing}; it has {sorted(by_name)}")
    layers = [(n, by_name[n]) for n in layer_names]
  return [(name, arrays) for name, arrays in layers if arrays]


def load_keras_weights(path: str, model: nn.Module, variables: Mapping[str, Any],
                       layer_names: Optional[Sequence[str]] = None) -> dict:
  """``variables`` with every layer of ``model.keras_layers()`` replaced by the file's, in order.

  For the ``KerasCNN`` models (seed 000), whose layers pair one to one with the Keras listing: the
  file's i-th layer with weights (kernel, bias) loads into our i-th layer.
  """
  ours = model.keras_layers()
  theirs = read_keras_weights(path, layer_names)
  if len(theirs) != len(ours):
    raise ValueError(f"{path} has {len(theirs)} layers with weights ({[n for n, _ in theirs]}); "
                     f"the model has {len(ours)} ({list(ours)})")
  converted = {}
  for name, (keras_name, arrays) in zip(ours, theirs):
    if len(arrays) != 2:
      raise ValueError(f"Keras layer {keras_name!r} has {len(arrays)} weights, expected kernel and bias")
    for leaf, array in zip(("kernel", "bias"), arrays):
      converted[("params", name, leaf)] = np.asarray(array, np.float32)
  return _overlay(variables, converted, set())


def _check(what: str, expected, got) -> None:
  if tuple(expected) != tuple(got):
    raise ValueError(f"{what}: checkpoint shape {tuple(got)} does not fit {tuple(expected)}")


def _numpy(value) -> np.ndarray:
  """A torch tensor (any device) or array as a float32 NumPy array, without importing torch."""
  if hasattr(value, "detach"):
    value = value.detach().cpu().numpy()
  return np.asarray(value, np.float32)


def _torch_leaf(module: tuple[str, ...], leaf: str, value: np.ndarray):
  """(our variable path, converted array) of one PyTorch parameter or buffer, None to skip it."""
  if leaf == "num_batches_tracked":
    return None
  if leaf == "weight" and value.ndim == 4:
    return ("params", *module, "kernel"), value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if leaf == "weight" and value.ndim == 2:
    return ("params", *module, "kernel"), value.T  # Linear [out, in] -> Dense [in, out]
  if leaf == "weight":
    return ("params", *module, "scale"), value  # BatchNorm gamma
  if leaf == "bias":
    return ("params", *module, "bias"), value
  if leaf in ("running_mean", "running_var"):
    return ("batch_stats", *module, leaf[len("running_"):]), value
  raise ValueError(f"unknown PyTorch parameter {'.'.join(module)}.{leaf}")


def _overlay(variables: Mapping[str, Any], converted: dict, skip_modules: set) -> dict:
  """``variables`` with ``converted`` paths replaced; every other leaf must lie under skip_modules.

  ``variables`` may hold ``jax.ShapeDtypeStruct``s (``registry.abstract_variables``) where the
  checkpoint replaces them, which spares initialising a model only to overwrite it.
  """
  flat = traverse_util.flatten_dict(dict(variables))
  for path, value in converted.items():
    if path not in flat:
      raise ValueError(f"checkpoint entry for {'/'.join(path)} has no counterpart in the model")
    _check("/".join(path), flat[path].shape, value.shape)
    flat[path] = jnp.asarray(value)
  missing = [p for p in flat if p not in converted and p[1] not in skip_modules]
  if missing:
    raise ValueError(f"the checkpoint lacks {len(missing)} model variables, e.g. "
                     f"{['/'.join(p) for p in missing[:5]]}")
  abstract = [p for p, v in flat.items() if isinstance(v, jax.ShapeDtypeStruct)]
  if abstract:
    raise ValueError(f"{['/'.join(p) for p in abstract[:5]]} are neither in the checkpoint nor "
                     "initialised: pass initialised variables")
  return traverse_util.unflatten_dict(flat)


def head_modules(model: nn.Module) -> set:
  """The parameter groups of the model's heads (their output and hidden layers)."""
  return {s.name for s in model.heads} | {f"{s.name}_fc{i + 1}" for s in model.heads
                                          for i in range(len(s.hidden))}


def _split_head(state_dict: Mapping[str, Any], fc_key: str, head: Optional[str]):
  """Removes ``{fc_key}.weight/bias`` from the state dict; their paths under ``head`` (if given)."""
  trunk, converted = {}, {}
  for key, value in state_dict.items():
    if key.startswith(fc_key + "."):
      if head is not None:
        path, array = _torch_leaf((head,), key[len(fc_key) + 1:], _numpy(value))
        converted[path] = array
    else:
      trunk[key] = value
  return trunk, converted


def load_torch_resnet(state_dict: Mapping[str, Any], model: nn.Module, variables: Mapping[str, Any],
                      head: Optional[str] = None, prefix: str = "", fc_key: str = "fc") -> dict:
  """A torchvision-named ResNet / SE-ResNet state dict loaded into ``variables`` of a ``ResNet``.

  Names: ``conv1``, ``bn1``, ``layer{s}.{j}.conv{k}`` / ``bn{k}`` / ``downsample.0`` / ``downsample.1``
  and, for the SE-ResNet source of seed 002, ``layer{s}.{j}.se.fc.0`` / ``se.fc.2``; ``prefix`` is
  stripped from these (``'classifier.features.'`` in that source's saved ``ModelWithLoss``). The
  classifier, full key ``{fc_key}.weight`` (``'classifier.classifier'`` there), loads into head
  ``head``; with ``head=None`` it is dropped and the heads keep their fresh initialisation.
  """
  rest, converted = _split_head(state_dict, fc_key, head)
  foreign = [k for k in rest if not k.startswith(prefix)]
  if foreign:
    raise ValueError(f"state dict entries outside prefix {prefix!r}: {foreign[:5]}")
  trunk = {k[len(prefix):]: v for k, v in rest.items()}
  block_parts = {("downsample", "0"): "downsample_conv", ("downsample", "1"): "downsample_bn",
                 ("se", "fc", "0"): "se_fc1", ("se", "fc", "2"): "se_fc2"}
  for key, value in trunk.items():
    *module, leaf = key.split(".")
    if re.fullmatch(r"layer\d+", module[0]) and len(module) >= 3:
      inner = tuple(module[2:])
      module = (f"{module[0]}_{module[1]}", block_parts.get(inner, inner[0]))
    entry = _torch_leaf(tuple(module), leaf, _numpy(value))
    if entry is not None:
      converted[entry[0]] = entry[1]
  return _overlay(variables, converted, head_modules(model) - {head})


def _vgg_feature_names() -> dict[int, str]:
  """torchvision ``features`` index -> our conv name (a ReLU follows each conv, a pool each stage)."""
  names, index = {}, 0
  for stage, depth in enumerate(vgg_lib.STAGE_DEPTHS):
    for i in range(depth):
      names[index] = f"conv{stage + 1}_{i + 1}"
      index += 2
    index += 1
  return names


def load_torch_vgg(state_dict: Mapping[str, Any], model: vgg_lib.VGG16, variables: Mapping[str, Any],
                   head: Optional[str] = None) -> dict:
  """A torchvision ``vgg16`` state dict (``features.N``, ``classifier.0/3/6``) loaded into a ``VGG16``.

  ``classifier.6`` (the output layer) loads into head ``head``, or is dropped with ``head=None``.
  fc6's input rows are reordered from torch's (c, h, w) flatten to our (h, w, c).
  """
  trunk, converted = _split_head(state_dict, "classifier.6", head)
  features = _vgg_feature_names()
  channels = model.widths[-1]
  classifier = {"0": "fc6", "3": "fc7"}
  for key, value in trunk.items():
    group, index, leaf = key.split(".")
    value = _numpy(value)
    module = features.get(int(index)) if group == "features" else classifier.get(index)
    if group not in ("features", "classifier") or module is None:
      raise ValueError(f"{key} is not a parameter of torchvision's vgg16")
    if module == "fc6" and leaf == "weight":
      side = int(round(np.sqrt(value.shape[1] / channels)))
      value = value.reshape(-1, channels, side, side).transpose(0, 2, 3, 1).reshape(value.shape[0], -1)
    path, array = _torch_leaf((module,), leaf, value)
    converted[path] = array
  return _overlay(variables, converted, head_modules(model) - {head})


def load_tfjs(path: str) -> tuple[Callable[..., dict], dict]:
  """``(apply_fn, params)`` of the TF.js graph model whose model.json is ``path``.

  ``apply_fn(params, images)`` feeds ``images`` (NHWC, as given: no preprocessing) to the graph's input
  (a dict keyed by input name for graphs with several) and returns a dict of its outputs keyed by output
  node name (TF.js's ``GraphModel.outputs``, e.g. ``Identity_2``) and, where model.json has a
  signature, also by the signature's output keys. It is pure JAX and jit-able; ``params`` holds the
  graph's float constants (the weights, dequantised as TF.js does), so a jitted ``apply_fn`` takes new
  weights of the same shapes without recompiling. ``apply_fn.graph`` describes the inputs and outputs.
  """
  return tfjs.load(path)



# ------------------------------------------------------------------------- any file, for ``init_from``

KERAS_SUFFIXES, TORCH_SUFFIXES, TFJS_SUFFIXES = (".h5", ".hdf5", ".keras"), (".pt", ".pth"), (".json",)


def load_keras_by_order(path: str, model: nn.Module, variables: Mapping[str, Any],
                        layer_names: Optional[Sequence[str]] = None) -> tuple[dict, list[str]]:
  """``variables`` with the file's Keras layers (kernel and bias) loaded into the model's layers in order.

  For models without a ``keras_layers()`` listing, whose parameter groups (in creation order: the trunk,
  then the heads) pair one to one with the Keras layers that have weights. A kernel loads where it has
  the element count of ours in the same layout order: serengil's VGG-Face writes fc6 as a 7x7 'valid'
  convolution on the 7x7x512 map, [7, 7, 512, 4096], which is our Dense fc6's [25088, 4096] row for row
  (both read the map in (h, w, c) order), and fc7 as a 1x1 convolution. A head whose shape differs (the
  2622 identities where our head has 101 ages) keeps its fresh initialisation; any other mismatch is an
  error. Returns the variables and a note per head left fresh.
  """
  theirs = read_keras_weights(path, layer_names)
  params = dict(variables["params"])
  ours = [name for name in call_order(model, variables)
          if isinstance(params.get(name), Mapping) and "kernel" in params[name]]
  heads = head_modules(model)
  if len(theirs) != len(ours):
    raise ValueError(f"{path} has {len(theirs)} layers with weights ({[n for n, _ in theirs]}); the model "
                     f"has {len(ours)} ({ours}): they pair one to one in order")
  converted, notes = {}, []
  for name, (keras_name, arrays) in zip(ours, theirs):
    if len(arrays) != 2:
      raise ValueError(f"Keras layer {keras_name!r} has {len(arrays)} weights, expected kernel and bias")
    kernel, bias = (np.asarray(a, np.float32) for a in arrays)
    want = params[name]["kernel"].shape
    if kernel.size != int(np.prod(want)) or bias.shape != params[name]["bias"].shape:
      if name in heads:
        notes.append(f"head {name!r} keeps its fresh initialisation: {path}'s layer {keras_name!r} has "
                     f"kernel {kernel.shape}, the head {tuple(want)}")
        continue
      raise ValueError(f"Keras layer {keras_name!r} (kernel {kernel.shape}, bias {bias.shape}) does not fit "
                       f"layer {name!r} (kernel {tuple(want)}, bias {tuple(params[name]['bias'].shape)})")
    converted[("params", name, "kernel")] = kernel.reshape(want)
    converted[("params", name, "bias")] = bias
  fresh = {note.split("'")[1] for note in notes}
  return _overlay(variables, converted, fresh), notes


def call_order(model: nn.Module, variables: Mapping[str, Any]) -> list[str]:
  """The model's top-level layers in the order its forward pass calls them (a variables dict is sorted
  by name, which is not the layer order: ``age`` < ``conv1_1``, ``conv10`` < ``conv2``)."""
  order = []

  def record(next_fun, args, kwargs, context):
    path = context.module.scope.path if context.module.scope is not None else ()
    if context.method_name == "__call__" and len(path) == 1 and path[0] not in order:
      order.append(path[0])
    return next_fun(*args, **kwargs)

  images = jnp.zeros((1, *model.input_shape), jnp.float32)
  with nn.intercept_methods(record):
    jax.eval_shape(lambda v: model.apply(v, images, train=False), dict(variables))
  return order


def _torch_head(state_dict: Mapping[str, Any], fc_key: str, model: nn.Module,
                variables: Mapping[str, Any]) -> Optional[str]:
  """The head the checkpoint's classifier ``fc_key`` loads into: the model's one head of its shape, else
  None (all heads keep their fresh initialisation)."""
  weight = state_dict.get(f"{fc_key}.weight")
  if weight is None or len(model.heads) != 1:
    return None
  head = model.heads[0].name
  ours = variables["params"].get(head, {}).get("kernel")
  return head if ours is not None and tuple(ours.shape) == tuple(_numpy(weight).T.shape) else None


def load_weights(path: str, model: nn.Module, variables: Mapping[str, Any]) -> tuple[dict, list[str]]:
  """``variables`` (initialised) with the weights of the checkpoint file at ``path``, and notes on what
  kept its initialisation. The file's kind is read from its name:

    ``.h5`` / ``.hdf5`` / ``.keras``   Keras: by ``model.keras_layers()`` where the model lists them
                                       (seed 000's CNNs), else layer by layer in order
                                       (``load_keras_by_order``: serengil's VGG-Face)
    ``.pt`` / ``.pth``                 a torchvision-named state dict, for ``ResNet`` / ``VGG16`` models;
                                       the classifier loads into the model's head where it fits
    ``.json``                          a TF.js graph model, into a model built on one (its ``graph``
                                       parameters, e.g. ``gear``), every weight with its shape
  """
  lower = path.lower()
  if lower.endswith(KERAS_SUFFIXES):
    if hasattr(model, "keras_layers"):
      return load_keras_weights(path, model, variables), []
    return load_keras_by_order(path, model, variables)
  if lower.endswith(TORCH_SUFFIXES):
    import torch  # pylint: disable=g-import-not-at-top  (only for this kind of file)
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(model, resnet_lib.ResNet):
      head = _torch_head(state_dict, "fc", model, variables)
      loaded = load_torch_resnet(state_dict, model, variables, head=head)
    elif isinstance(model, vgg_lib.VGG16):
      head = _torch_head(state_dict, "classifier.6", model, variables)
      loaded = load_torch_vgg(state_dict, model, variables, head=head)
    else:
      raise ValueError(f"{path}: a PyTorch state dict loads into a ResNet or VGG16 model, not "
                       f"{type(model).__name__}")
    return loaded, [] if head else [f"the heads keep their fresh initialisation ({path}'s classifier does "
                                    "not fit them)"]
  if lower.endswith(TFJS_SUFFIXES):
    return load_tfjs_weights(path, variables), []
  raise ValueError(f"{path}: cannot tell the checkpoint's kind from its name; expected a fairjax workdir, "
                   f"{', '.join(KERAS_SUFFIXES + TORCH_SUFFIXES + TFJS_SUFFIXES)}")


def load_tfjs_weights(path: str, variables: Mapping[str, Any], collection: str = "graph") -> dict:
  """``variables`` whose ``params[collection]`` (a model built on a TF.js graph, ``pretrained_tfjs``: one
  parameter per graph constant, by ``pretrained_tfjs.param_key``'s name) are replaced by the weights of
  the graph at ``path``: the same names and shapes, or an error naming the first difference. A model
  fine-tuned elsewhere and exported to TF.js, say, starts from its own weights."""
  from fairjax.models import pretrained_tfjs  # pylint: disable=g-import-not-at-top  (registers models)
  ours = variables["params"].get(collection)
  if ours is None:
    raise ValueError(f"{path} is a TF.js graph; the model has no {collection!r} parameters to load it into "
                     "(only models built on a TF.js graph have)")
  _, graph = load_tfjs(path)
  theirs = {pretrained_tfjs.param_key(name): value for name, value in graph.items()}
  missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
  if missing or extra:
    raise ValueError(f"{path} is not the model's graph: it lacks {missing[:3]} and has {extra[:3]} besides")
  for name, value in theirs.items():
    _check(name, ours[name].shape, value.shape)
  return {**variables, "params": {**variables["params"], collection: {k: jnp.asarray(v) for k, v in theirs.items()}}}
