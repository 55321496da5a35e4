"""A CLIP initialised here and saved with ``save_pretrained`` is what transformers' CLIPModel then computes.

This is the path of a from-scratch training run's checkpoint into the PyTorch world; it needs torch,
and skips where torch is not installed (the parity tests in test_clip_model.py never do).
"""

import jax
import numpy as np
import pytest

from fairjax import clip
from tests.models import util

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_fresh_params_saved_for_transformers(tmp_path):
  config = clip.tiny(vocab_size=64, eos_token_id=63, pad_token_id=63, bos_token_id=62, hidden_act="gelu",
                     width=16)
  model = clip.CLIP(config)
  params = clip.init_params(model, util.key(0))
  clip.save_pretrained(model, params, tmp_path)
  hf = transformers.CLIPModel.from_pretrained(str(tmp_path)).eval()

  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
  ids = rng.integers(0, 60, (3, 16)).astype(np.int32)
  ids[:, 0], ids[0, 9], ids[1, 15], ids[2, 4] = 62, 63, 63, 63
  mask = np.ones_like(ids)
  mask[0, 10:] = 0
  ours = jax.jit(model.apply)({"params": params}, images, ids, mask)
  with torch.inference_mode():
    theirs = hf(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
                input_ids=torch.from_numpy(ids.astype(np.int64)),
                attention_mask=torch.from_numpy(mask.astype(np.int64)))
    image = hf.get_image_features(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
  np.testing.assert_allclose(ours["image_embeddings"], image.pooler_output.numpy(), atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(ours["logits_per_image"], theirs.logits_per_image.numpy(), atol=1e-5, rtol=1e-5)
  assert hf.config.text_config.eos_token_id == config.text.eos_token_id
  assert hf.config.text_config.bos_token_id == 62
