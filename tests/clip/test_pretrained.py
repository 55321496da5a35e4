"""Checkpoint folders: sharded files, bad folders as clear errors, save / load round trip, the processor.

None of these import torch; ``test_torch_round_trip.py`` has the one that needs it.
"""

import json
import os
import shutil
import subprocess
import sys

from flax import traverse_util
import jax
import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

from fairjax import clip
from fairjax.clip import pretrained

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")
CHECKPOINT = os.path.join(TESTDATA, "eos_gelu")


@pytest.fixture(name="folder")
def _folder(tmp_path):
  """A writable copy of the eos_gelu checkpoint."""
  path = tmp_path / "ckpt"
  shutil.copytree(CHECKPOINT, path)
  return path


def _tensors(folder):
  return safetensors_numpy.load_file(os.path.join(folder, "model.safetensors"))


def _rewrite(folder, tensors):
  safetensors_numpy.save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})


def _assert_same_params(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_sharded_checkpoint_loads_like_the_single_file(folder):
  _, reference = clip.from_pretrained(CHECKPOINT)
  tensors = _tensors(folder)
  names = sorted(tensors)
  shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
  for file, shard in shards.items():
    safetensors_numpy.save_file({n: tensors[n] for n in shard}, os.path.join(folder, file),
                                metadata={"format": "pt"})
  with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": {n: file for file, shard in shards.items() for n in shard}}, f)
  os.remove(os.path.join(folder, "model.safetensors"))
  _, params = clip.from_pretrained(folder)
  _assert_same_params(params, reference)


def test_old_position_id_buffers_are_skipped(folder):
  _, reference = clip.from_pretrained(CHECKPOINT)
  tensors = _tensors(folder)
  tensors["text_model.embeddings.position_ids"] = np.arange(16)[None]
  _rewrite(folder, tensors)
  _, params = clip.from_pretrained(folder)
  _assert_same_params(params, reference)


@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
def test_half_precision_checkpoints_load_as_float32(folder, dtype):
  _, reference = clip.from_pretrained(CHECKPOINT)
  _rewrite(folder, {n: t.astype(dtype) for n, t in _tensors(folder).items()})
  _, params = clip.from_pretrained(folder)
  assert all(p.dtype == np.float32 for p in jax.tree.leaves(params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-2), params, reference)


def test_save_pretrained_then_from_pretrained_is_exact(tmp_path):
  model, params = clip.from_pretrained(CHECKPOINT)
  clip.save_pretrained(model, params, tmp_path)
  reloaded_model, reloaded = clip.from_pretrained(tmp_path)
  assert reloaded_model.config == model.config
  _assert_same_params(reloaded, params)
  # The HF tensors themselves come back bit for bit.
  original, written = _tensors(CHECKPOINT), _tensors(tmp_path)
  assert sorted(original) == sorted(written)
  for name in original:
    np.testing.assert_array_equal(written[name], original[name], err_msg=name)


def test_missing_files(folder):
  with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
    clip.from_pretrained(folder / "nothing")
  os.remove(folder / "model.safetensors")
  (folder / "pytorch_model.bin").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match="neither model.safetensors.*pytorch_model.bin"):
    clip.from_pretrained(folder)
  os.remove(folder / "config.json")
  with pytest.raises(FileNotFoundError, match="no config.json"):
    clip.from_pretrained(folder)


def test_bad_config(folder):
  config = json.loads((folder / "config.json").read_text())
  (folder / "config.json").write_text(json.dumps({**config, "model_type": "siglip"}))
  with pytest.raises(ValueError, match="model_type is 'siglip'"):
    clip.from_pretrained(folder)
  (folder / "config.json").write_text("{not json")
  with pytest.raises(ValueError, match="not valid JSON"):
    clip.from_pretrained(folder)
  config["text_config"]["hidden_act"] = "quick_gelu"
  (folder / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="towers differ in hidden_act"):
    clip.from_pretrained(folder)


def test_wrong_shape_names_the_tensor(folder):
  tensors = _tensors(folder)
  name = "vision_model.encoder.layers.1.self_attn.k_proj.weight"
  tensors[name] = tensors[name][:, :8]
  _rewrite(folder, tensors)
  with pytest.raises(ValueError, match=rf"tensor '{name}' has shape \(16, 8\); config.json implies \(16, 16\)"):
    clip.from_pretrained(folder)


def test_unknown_and_missing_tensors_are_named(folder):
  tensors = _tensors(folder)
  tensors["text_model.encoder.layers.2.mlp.fc1.weight"] = tensors["text_model.encoder.layers.1.mlp.fc1.weight"]
  _rewrite(folder, tensors)
  with pytest.raises(ValueError, match=r"text_model.encoder.layers.2.mlp.fc1.weight.*not part of a CLIPModel"):
    clip.from_pretrained(folder)
  del tensors["text_model.encoder.layers.2.mlp.fc1.weight"]
  del tensors["vision_model.post_layernorm.bias"]
  _rewrite(folder, tensors)
  with pytest.raises(ValueError, match=r"missing tensor\(s\) \['vision_model.post_layernorm.bias'\]"):
    clip.from_pretrained(folder)


def test_corrupt_safetensors_file(folder):
  (folder / "model.safetensors").write_bytes(b"\x00" * 100)
  with pytest.raises(ValueError, match="not a readable safetensors file"):
    clip.from_pretrained(folder)


def test_processor_reproduces_the_reference_inputs():
  processor = clip.load_processor(CHECKPOINT)
  ref = np.load(os.path.join(CHECKPOINT, "reference.npz"))
  images = processor.images(list(ref["raw_images"]))
  assert images.shape == (3, 32, 32, 3) and images.dtype == np.float32
  np.testing.assert_allclose(images, ref["images"], atol=1e-6)
  batch = processor.tokenize(list(ref["texts"]))
  assert batch["input_ids"].dtype == np.int32 and batch["input_ids"].shape == (4, 16)
  # Rows 0 and 1 are the tokenizer's own; make_tiny_clip.py edits rows 2 and 3 after tokenising.
  np.testing.assert_array_equal(batch["input_ids"][:2], ref["input_ids"][:2])
  np.testing.assert_array_equal(batch["attention_mask"][:2], ref["attention_mask"][:2])
  tokenizer, image_processor = processor  # unpacks into the transformers objects
  assert tokenizer.eos_token_id == int(batch["input_ids"][1, -1])  # truncated, end token kept
  assert image_processor.crop_size["height"] == 32


def test_processor_needs_its_config(folder):
  os.remove(folder / "preprocessor_config.json")
  with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
    clip.load_processor(folder)


def test_loading_needs_no_torch():
  """from_pretrained and load_processor where ``import torch`` fails, as on a machine without it."""
  script = f"""
import sys
sys.modules["torch"] = None
from fairjax import clip
model, params = clip.from_pretrained({CHECKPOINT!r})
processor = clip.load_processor({CHECKPOINT!r})
print(processor.tokenize(["a photo of a woman"])["input_ids"].shape, params["logit_scale"].shape)
"""
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 0, result.stderr[-2000:]
  assert "(1, 16) ()" in result.stdout


def test_tensor_map_covers_every_parameter_once():
  for make in (clip.vit_b32, clip.vit_l14):
    config = make()
    mapping = pretrained.tensor_map(config)
    paths = [entry.path for entry in mapping]
    names = [n for entry in mapping for n in entry.hf_names]
    assert len(set(paths)) == len(paths) and len(set(names)) == len(names)
    assert set(paths) == set(traverse_util.flatten_dict(clip.abstract_params(clip.CLIP(config))))
