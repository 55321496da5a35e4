"""Hugging Face CLIP checkpoint folders to and from ``fairjax.clip.model.CLIP``, without torch.

A folder as ``transformers.CLIPModel.save_pretrained`` writes it: ``config.json`` and
``model.safetensors`` (or shards listed in ``model.safetensors.index.json``), read with safetensors'
numpy API; tokenizer and image-processor files beside them are read by ``load_processor``. The
parameter layouts that differ from HF's:

  patch convolution   OIHW ``[width, 3, p, p]``  ->  HWIO ``[p, p, 3, width]``
  Linear weights      ``[out, in]``               ->  ``[in, out]``
  q / k / v           three ``[D, D]`` weights and ``[D]`` biases  ->  one ``[D, 3, heads, head_dim]``
                      kernel and ``[3, heads, head_dim]`` bias (the fused QKV product)
  out_proj            ``[D, D]``                  ->  ``[heads, head_dim, D]``

Loading checks both directions: every tensor in the files lands in exactly one parameter with the
shape that ``config.json`` implies, and every parameter of the model is filled. A tensor that is
missing, unknown or misshapen is an error that names it; only the ``position_ids`` buffers that old
checkpoints carry (always ``arange``) are skipped.
"""

import json
import os
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence, Union

from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_dtypes  # pylint: disable=unused-import  (registers bfloat16 with NumPy: safetensors reads bf16 files)
import numpy as np
from safetensors import numpy as safetensors_numpy

from fairjax.clip import model as clip_lib

PathLike = Union[str, os.PathLike]
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
# Non-persistent buffers that checkpoints written by older transformers still hold.
_IGNORED_TENSORS = ("vision_model.embeddings.position_ids", "text_model.embeddings.position_ids")


class _Tensor(NamedTuple):
  """One of our parameters and the HF tensors it is made of.

  ``to_ours`` turns the HF arrays (in ``hf_names`` order) into our array; ``to_hf`` is its inverse.
  """
  path: tuple[str, ...]
  hf_names: tuple[str, ...]
  to_ours: Callable[..., np.ndarray]
  to_hf: Callable[[np.ndarray], tuple[np.ndarray, ...]]


def _same(name: str, path: tuple[str, ...]) -> _Tensor:
  return _Tensor(path, (name,), lambda a: a, lambda a: (a,))


def _linear(name: str, path: tuple[str, ...]) -> _Tensor:
  return _Tensor(path, (name,), lambda a: a.T, lambda a: (a.T,))


def _tower_tensors(hf: str, ours: str, layers: int, heads: int) -> Iterator[_Tensor]:
  for i in range(layers):
    src, dst = f"{hf}.encoder.layers.{i}", (ours, "encoder", f"layer_{i}")
    attn = f"{src}.self_attn"
    qkv = tuple(f"{attn}.{p}_proj.weight" for p in "qkv")
    qkv_bias = tuple(f"{attn}.{p}_proj.bias" for p in "qkv")
    yield _Tensor(dst + ("attn", "qkv_kernel"), qkv,
                  lambda q, k, v: np.stack([q.T, k.T, v.T], axis=1).reshape(q.shape[1], 3, heads, -1),
                  lambda a: tuple(a[:, j].reshape(a.shape[0], -1).T for j in range(3)))
    yield _Tensor(dst + ("attn", "qkv_bias"), qkv_bias,
                  lambda q, k, v: np.stack([q, k, v]).reshape(3, heads, -1),
                  lambda a: tuple(a[j].reshape(-1) for j in range(3)))
    yield _Tensor(dst + ("attn", "out_kernel"), (f"{attn}.out_proj.weight",),
                  lambda w: w.T.reshape(heads, -1, w.shape[0]), lambda a: (a.reshape(-1, a.shape[-1]).T,))
    yield _same(f"{attn}.out_proj.bias", dst + ("attn", "out_bias"))
    for norm in ("layer_norm1", "layer_norm2"):
      ln = "ln" + norm[-1]
      yield _same(f"{src}.{norm}.weight", dst + (ln, "scale"))
      yield _same(f"{src}.{norm}.bias", dst + (ln, "bias"))
    for fc in ("fc1", "fc2"):
      yield _linear(f"{src}.mlp.{fc}.weight", dst + (fc, "kernel"))
      yield _same(f"{src}.mlp.{fc}.bias", dst + (fc, "bias"))


def tensor_map(config: clip_lib.CLIPConfig) -> list[_Tensor]:
  """Every parameter of ``CLIP(config)`` with the HF ``CLIPModel`` tensors it corresponds to."""
  v, t = config.vision, config.text
  tensors = [
      _Tensor(("vision", "patch_kernel"), ("vision_model.embeddings.patch_embedding.weight",),
              lambda w: w.transpose(2, 3, 1, 0), lambda a: (a.transpose(3, 2, 0, 1),)),
      _same("vision_model.embeddings.class_embedding", ("vision", "class_embedding")),
      _same("vision_model.embeddings.position_embedding.weight", ("vision", "position_embedding")),
      _same("text_model.embeddings.token_embedding.weight", ("text", "token_embedding", "embedding")),
      _same("text_model.embeddings.position_embedding.weight", ("text", "position_embedding")),
      _linear("visual_projection.weight", ("visual_projection", "kernel")),
      _linear("text_projection.weight", ("text_projection", "kernel")),
      _same("logit_scale", ("logit_scale",)),
  ]
  for hf, ours in (("pre_layrnorm", "pre_layrnorm"), ("post_layernorm", "post_layernorm")):
    tensors.append(_same(f"vision_model.{hf}.weight", ("vision", ours, "scale")))
    tensors.append(_same(f"vision_model.{hf}.bias", ("vision", ours, "bias")))
  tensors.append(_same("text_model.final_layer_norm.weight", ("text", "final_layer_norm", "scale")))
  tensors.append(_same("text_model.final_layer_norm.bias", ("text", "final_layer_norm", "bias")))
  tensors.extend(_tower_tensors("vision_model", "vision", v.layers, v.heads))
  tensors.extend(_tower_tensors("text_model", "text", t.layers, t.heads))
  return tensors


# ------------------------------------------------------------------------------------------ config


def config_from_hf(hf: Any) -> clip_lib.CLIPConfig:
  """Our config from a ``transformers.CLIPConfig`` (or its ``to_dict()``)."""
  hf = hf if isinstance(hf, dict) else hf.to_dict()
  vision, text = hf["vision_config"], hf["text_config"]
  image_size, patch_size = vision["image_size"], vision["patch_size"]
  for name, value in (("image_size", image_size), ("patch_size", patch_size)):
    if not isinstance(value, int):
      raise ValueError(f"vision_config.{name} is {value!r}; only square sizes (one int) are supported")
  if vision.get("num_channels", 3) != 3:
    raise ValueError(f"vision_config.num_channels is {vision['num_channels']}; CLIP here takes RGB (3)")
  for key in ("hidden_act", "layer_norm_eps"):
    if vision[key] != text[key]:
      raise ValueError(f"the towers differ in {key} (vision {vision[key]!r}, text {text[key]!r}); "
                       f"fairjax's CLIP shares one")
  eos = text["eos_token_id"]
  if not isinstance(eos, int):
    raise ValueError(f"text_config.eos_token_id is {eos!r}; one int is needed to pool the text")
  return clip_lib.CLIPConfig(
      vision=clip_lib.VisionConfig(image_size=image_size, patch_size=patch_size,
                                   width=vision["hidden_size"], layers=vision["num_hidden_layers"],
                                   heads=vision["num_attention_heads"], mlp_dim=vision["intermediate_size"]),
      text=clip_lib.TextConfig(vocab_size=text["vocab_size"], context_length=text["max_position_embeddings"],
                               width=text["hidden_size"], layers=text["num_hidden_layers"],
                               heads=text["num_attention_heads"], mlp_dim=text["intermediate_size"],
                               eos_token_id=eos, pad_token_id=text["pad_token_id"],
                               bos_token_id=text["bos_token_id"]),
      projection_dim=hf["projection_dim"], hidden_act=vision["hidden_act"],
      layer_norm_eps=vision["layer_norm_eps"], logit_scale_init=hf["logit_scale_init_value"])


def config_to_hf(config: clip_lib.CLIPConfig):
  """A ``transformers.CLIPConfig`` for ``CLIPModel`` that computes what ``CLIP(config)`` computes."""
  import transformers  # pylint: disable=g-import-not-at-top
  v, t = config.vision, config.text
  common = dict(hidden_act=config.hidden_act, layer_norm_eps=config.layer_norm_eps,
                projection_dim=config.projection_dim)
  text = dict(vocab_size=t.vocab_size, max_position_embeddings=t.context_length, hidden_size=t.width,
              num_hidden_layers=t.layers, num_attention_heads=t.heads, intermediate_size=t.mlp_dim,
              eos_token_id=t.eos_token_id, pad_token_id=t.pad_token_id, bos_token_id=t.bos_token_id,
              **common)
  vision = dict(image_size=v.image_size, patch_size=v.patch_size, hidden_size=v.width,
                num_hidden_layers=v.layers, num_attention_heads=v.heads, intermediate_size=v.mlp_dim,
                num_channels=3, **common)
  return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=config.projection_dim,
                                 logit_scale_init_value=config.logit_scale_init, architectures=["CLIPModel"])


def read_config(path: str) -> clip_lib.CLIPConfig:
  """The ``CLIPConfig`` of the Hugging Face CLIP folder at ``path`` (its config.json), without the weights."""
  file = os.path.join(path, CONFIG_FILE)
  if not os.path.isfile(file):
    raise FileNotFoundError(f"{path}: no {CONFIG_FILE}; a Hugging Face CLIP folder has config.json and "
                            f"{WEIGHTS_FILE}")
  with open(file, encoding="utf-8") as f:
    try:
      raw = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{file}: not valid JSON ({e})") from e
  if raw.get("model_type") != "clip":
    raise ValueError(f"{file}: model_type is {raw.get('model_type')!r}, not 'clip'")
  import transformers  # pylint: disable=g-import-not-at-top
  # transformers fills what the file leaves out with CLIP's defaults and reads legacy keys.
  return config_from_hf(transformers.CLIPConfig.from_dict(raw))


# ----------------------------------------------------------------------------------------- weights


def _read_tensors(path: str) -> dict[str, np.ndarray]:
  single, index = os.path.join(path, WEIGHTS_FILE), os.path.join(path, WEIGHTS_INDEX_FILE)
  if os.path.isfile(single):
    files = [single]
  elif os.path.isfile(index):
    with open(index, encoding="utf-8") as f:
      weight_map = json.load(f).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
      raise ValueError(f"{index}: no 'weight_map' of tensor names to files")
    files = [os.path.join(path, name) for name in sorted(set(weight_map.values()))]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
      raise FileNotFoundError(f"{index} names shard(s) that are not there: {missing}")
  else:
    bins = [n for n in os.listdir(path) if n.endswith((".bin", ".pt", ".pth"))]
    hint = f" (it has {bins}: PyTorch pickles are not read; re-save with safe_serialization)" if bins else ""
    raise FileNotFoundError(f"{path}: neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE}{hint}")
  tensors = {}
  for file in files:
    try:
      shard = safetensors_numpy.load_file(file)
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
      raise ValueError(f"{file}: not a readable safetensors file ({e})") from e
    repeated = sorted(set(shard) & set(tensors))
    if repeated:
      raise ValueError(f"{file}: tensors {repeated} appear in more than one shard")
    tensors.update(shard)
  return tensors


def params_from_tensors(config: clip_lib.CLIPConfig, tensors: dict[str, np.ndarray],
                        source: str = "checkpoint") -> dict:
  """Our ``params`` (float32 numpy) from HF tensors, checking names and shapes both ways."""
  model = clip_lib.CLIP(config)
  expected = traverse_util.flatten_dict(abstract_params(model))
  mapping = tensor_map(config)
  known = {name for entry in mapping for name in entry.hf_names}
  unknown = sorted(set(tensors) - known - set(_IGNORED_TENSORS))
  if unknown:
    raise ValueError(f"{source}: tensor(s) {unknown[:10]}{' ...' if len(unknown) > 10 else ''} are not part "
                     f"of a CLIPModel with this config.json (is it another architecture, or does the "
                     f"config give too few layers?)")
  missing = sorted(known - set(tensors))
  if missing:
    raise ValueError(f"{source}: missing tensor(s) {missing[:10]}{' ...' if len(missing) > 10 else ''} "
                     f"that config.json implies")
  hf_shapes = _hf_shapes(mapping, expected)
  flat = {}
  for entry in mapping:
    arrays = []
    for name in entry.hf_names:
      array = np.asarray(tensors[name])
      if array.shape != hf_shapes[name]:
        raise ValueError(f"{source}: tensor {name!r} has shape {array.shape}; config.json implies "
                         f"{hf_shapes[name]}")
      arrays.append(array.astype(np.float32))
    flat[entry.path] = np.array(entry.to_ours(*arrays), order="C")  # (ascontiguousarray makes 0-d 1-d)
  unfilled = sorted("/".join(p) for p in set(expected) - set(flat))
  if unfilled:  # the mapping itself is incomplete: a bug here, not in the checkpoint
    raise AssertionError(f"parameters {unfilled} have no HF tensor")
  return traverse_util.unflatten_dict(flat)


def _hf_shapes(mapping: Sequence[_Tensor], expected: dict) -> dict[str, tuple[int, ...]]:
  """The shape each HF tensor must have: our abstract shape taken back through ``to_hf`` (nothing allocated)."""
  shapes = {}
  for entry in mapping:
    for name, array in zip(entry.hf_names, jax.eval_shape(entry.to_hf, expected[entry.path])):
      shapes[name] = array.shape
  return shapes


def abstract_params(model: clip_lib.CLIP) -> dict:
  """Shapes of ``model``'s params, without allocating them."""
  cfg = model.config
  images = jax.ShapeDtypeStruct((1, cfg.vision.image_size, cfg.vision.image_size, 3), jnp.float32)
  ids = jax.ShapeDtypeStruct((1, cfg.text.context_length), jnp.int32)
  return jax.eval_shape(model.init, jax.random.key(0), images, ids)["params"]


def init_params(model: clip_lib.CLIP, rng: jax.Array) -> dict:
  """Freshly initialised params of ``model`` (one jitted program: fast on CPU)."""
  cfg = model.config
  images = jnp.zeros((1, cfg.vision.image_size, cfg.vision.image_size, 3), jnp.float32)
  ids = jnp.zeros((1, cfg.text.context_length), jnp.int32)
  return jax.jit(lambda key: model.init(key, images, ids))(rng)["params"]


def from_pretrained(path: PathLike, dtype: Any = jnp.float32) -> tuple[clip_lib.CLIP, dict]:
  """``(model, params)`` from a Hugging Face CLIP folder; params are float32, ``dtype`` the compute dtype.

  ``model.apply({'params': params}, images, method=model.encode_image)`` then equals HF's
  ``get_image_features`` (images NHWC, normalised by the folder's image processor: ``load_processor``).
  """
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: no such checkpoint folder")
  config = read_config(path)
  params = params_from_tensors(config, _read_tensors(path), source=path)
  return clip_lib.CLIP(config, dtype=dtype), jax.tree.map(jnp.asarray, params)


def params_to_tensors(config: clip_lib.CLIPConfig, params: dict) -> dict[str, np.ndarray]:
  """HF ``CLIPModel`` tensors (float32, contiguous) from our params."""
  flat = traverse_util.flatten_dict(jax.device_get(params))
  tensors = {}
  for entry in tensor_map(config):
    if entry.path not in flat:
      raise ValueError(f"params lack {'/'.join(entry.path)}; are they this config's CLIP params?")
    for name, array in zip(entry.hf_names, entry.to_hf(np.asarray(flat[entry.path], np.float32))):
      tensors[name] = np.array(array, order="C")
  return tensors


def save_pretrained(model: clip_lib.CLIP, params: dict, path: PathLike) -> None:
  """Writes ``config.json`` and ``model.safetensors`` that ``transformers.CLIPModel.from_pretrained`` reads.

  Tokenizer and image-processor files are separate (``fairjax.clip.tokenizer``, ``save_image_processor``).
  """
  path = os.fspath(path)
  os.makedirs(path, exist_ok=True)
  config_to_hf(model.config).save_pretrained(path)
  # transformers refuses safetensors files without a 'format' entry in their metadata.
  safetensors_numpy.save_file(params_to_tensors(model.config, params), os.path.join(path, WEIGHTS_FILE),
                              metadata={"format": "pt"})


# --------------------------------------------------------------------------------------- processor


class Processor(NamedTuple):
  """A folder's tokenizer and image processor, returning numpy for ``CLIP``'s methods.

  Unpacks as ``tokenizer, image_processor = load_processor(path)`` where the transformers objects are
  wanted as they are.
  """
  tokenizer: Any
  image_processor: Any

  def tokenize(self, texts: Union[str, Sequence[str]], context_length: Optional[int] = None
               ) -> dict[str, np.ndarray]:
    """``input_ids`` / ``attention_mask`` int32 [B, context_length], padded and truncated as CLIP's."""
    length = context_length or self.tokenizer.model_max_length
    batch = self.tokenizer(texts if not isinstance(texts, str) else [texts], padding="max_length",
                           truncation=True, max_length=length, return_tensors="np")
    return {"input_ids": batch["input_ids"].astype(np.int32),
            "attention_mask": batch["attention_mask"].astype(np.int32)}

  def images(self, images: Any) -> np.ndarray:
    """Resized, cropped, normalised float32 images, NHWC, from PIL images or HWC uint8 arrays."""
    pixels = self.image_processor(images=images, return_tensors="np")["pixel_values"]
    return np.ascontiguousarray(np.asarray(pixels, np.float32).transpose(0, 2, 3, 1))


def load_processor(path: PathLike) -> Processor:
  """The tokenizer (``CLIPTokenizer``, tokenizers-backed) and image processor of a CLIP folder.

  The image processor is transformers' PIL / numpy CLIP processor (its default one needs torchvision);
  both read the folder's own files and need no torch.
  """
  import transformers  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  if not os.path.isfile(os.path.join(path, "preprocessor_config.json")):
    raise FileNotFoundError(f"{path}: no preprocessor_config.json (the image processor's settings)")
  tokenizer = transformers.CLIPTokenizer.from_pretrained(path)
  image_processor = transformers.CLIPImageProcessorPil.from_pretrained(path)
  return Processor(tokenizer, image_processor)


def save_image_processor(path: PathLike, image_size: int, mean: Sequence[float] = None,
                         std: Sequence[float] = None) -> None:
  """``preprocessor_config.json`` of CLIP's processing (resize shortest edge, centre crop, normalise).

  ``mean`` / ``std`` default to OpenAI's CLIP statistics.
  """
  import transformers  # pylint: disable=g-import-not-at-top
  kwargs = {k: list(v) for k, v in (("image_mean", mean), ("image_std", std)) if v is not None}
  processor = transformers.CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                                 crop_size={"height": image_size, "width": image_size},
                                                 **kwargs)
  processor.save_pretrained(os.fspath(path))
