r"""Writes the tiny Hugging Face CLIP checkpoints and reference outputs that tests/clip reads.

  python tests/clip/make_tiny_clip.py [--output_dir=tests/clip/testdata]

Run by hand, with torch and transformers (the tests themselves never import torch). For each of two
tiny configs it writes ``<output_dir>/<name>/``: a random ``transformers.CLIPModel`` saved with
``save_pretrained`` (config.json + model.safetensors), a CLIP-format tokenizer trained with
``fairjax.clip.tokenizer`` on the synthetic faces' captions, the image processor's
``preprocessor_config.json``, and ``reference.npz`` with the inputs and transformers' outputs:

  legacy_quick_gelu   eos_token_id = 2 (OpenAI's legacy config: text pooled at argmax(input_ids)),
                      quick_gelu
  eos_gelu            eos_token_id = the tokenizer's end token (pooled at its first occurrence), gelu

Both models have 8 token ids above the tokenizer's (as if tokens had been added), and one text row
holds such an id before its end token, so the two pooling rules pick different positions there; one
row has a hole in its attention mask, so that the padding mask matters. All parameters are drawn
with spread (LayerNorm scales around 1, non-zero biases) so that a mislaid bias or scale shows.

reference.npz: ``raw_images`` (uint8 HWC, not square), ``pixel_values`` (NCHW, as transformers takes
them, from the folder's image processor), ``images`` (the same, NHWC, as fairjax takes them),
``input_ids`` / ``attention_mask`` (int32), ``texts`` (the captions), and transformers' outputs
``image_embeds`` / ``text_embeds`` (``get_image_features`` / ``get_text_features``),
``image_pooled`` / ``text_pooled`` (the towers' pooler outputs), ``logits_per_image`` /
``logits_per_text``. The script then checks that fairjax loads each folder, matches these outputs,
and that ``fairjax.clip.save_pretrained`` writes a folder transformers loads back to the same outputs.
"""

import argparse
import os
import shutil
import tempfile

import numpy as np
import torch
import transformers

from fairjax import clip
from fairjax.clip import tokenizer as tokenizer_lib

CONFIGS = {"legacy_quick_gelu": ("quick_gelu", True), "eos_gelu": ("gelu", False)}
EXTRA_TOKEN_IDS = 8
WIDTH = 16  # both towers; 4 heads of 4, 2 layers each: ~100 KiB of float32 weights per checkpoint
TEXTS = ("a photo of an old White woman", "a close-up photo of the face of a middle-aged Indian man",
         "a portrait photo of a teenage Asian girl", "a photo of a young Black boy")


def _spread_parameters(model: "transformers.CLIPModel", seed: int):
  """Redraws every parameter: weights N(0, std) at their init scale, LayerNorms ~1, biases non-zero."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, param in model.named_parameters():
      noise = torch.randn(param.shape, generator=gen)
      if name == "logit_scale":
        param.fill_(float(np.log(20.0)))
      elif "norm" in name and name.endswith("weight"):
        param.copy_(1.0 + 0.2 * noise)
      elif name.endswith("bias"):
        param.copy_(0.1 * noise)
      else:
        param.copy_(noise * param[0].numel() ** -0.5 if param.dim() > 1 else noise * 0.2)


def _texts(tokenizer, context_length: int, eos_token_id_in_vocab: int):
  batch = tokenizer(list(TEXTS), padding="max_length", truncation=True, max_length=context_length,
                    return_tensors="np")
  ids, mask = batch["input_ids"].astype(np.int32), batch["attention_mask"].astype(np.int32)
  # Row 2: an added-token id (above the end token) before the end: argmax and first-eos pooling differ.
  ids[2, 2] = eos_token_id_in_vocab + EXTRA_TOKEN_IDS
  # Row 3: a hole in the attention mask before the end token, so the padding mask changes the output.
  mask[3, 3] = 0
  return ids, mask


def make_checkpoint(name: str, output_dir: str, seed: int):
  hidden_act, legacy = CONFIGS[name]
  folder = os.path.join(output_dir, name)
  shutil.rmtree(folder, ignore_errors=True)
  config = clip.tiny(hidden_act=hidden_act, width=WIDTH)
  tokenizer = tokenizer_lib.build_tokenizer(tokenizer_lib.caption_corpus(), folder, vocab_size=600,
                                            context_length=config.text.context_length)
  eos = tokenizer.eos_token_id
  config = clip.tiny(vocab_size=len(tokenizer) + EXTRA_TOKEN_IDS, eos_token_id=2 if legacy else eos,
                     pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                     hidden_act=hidden_act, width=WIDTH)
  hf_config = clip.config_to_hf(config)
  torch.manual_seed(seed)
  model = transformers.CLIPModel(hf_config).eval()
  _spread_parameters(model, seed)
  model.save_pretrained(folder)
  clip.save_image_processor(folder, config.vision.image_size)

  rng = np.random.default_rng(seed)
  raw_images = rng.integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
  processor = clip.load_processor(folder)
  pixel_values = np.asarray(processor.image_processor(images=list(raw_images), return_tensors="np")
                            ["pixel_values"], np.float32)
  input_ids, attention_mask = _texts(processor.tokenizer, config.text.context_length, eos)
  with torch.inference_mode():
    pixels, ids, mask = (torch.from_numpy(a) for a in (pixel_values, input_ids.astype(np.int64),
                                                       attention_mask.astype(np.int64)))
    image = model.get_image_features(pixel_values=pixels)
    text = model.get_text_features(input_ids=ids, attention_mask=mask)
    out = model(input_ids=ids, pixel_values=pixels, attention_mask=mask)
    vision_pooled = model.vision_model(pixel_values=pixels).pooler_output
    text_pooled = model.text_model(input_ids=ids, attention_mask=mask).pooler_output
  reference = {
      "raw_images": raw_images, "pixel_values": pixel_values,
      "images": np.ascontiguousarray(pixel_values.transpose(0, 2, 3, 1)),
      "input_ids": input_ids, "attention_mask": attention_mask, "texts": np.array(TEXTS),
      "image_embeds": image.pooler_output.numpy(), "text_embeds": text.pooler_output.numpy(),
      "image_pooled": vision_pooled.numpy(), "text_pooled": text_pooled.numpy(),
      "logits_per_image": out.logits_per_image.numpy(), "logits_per_text": out.logits_per_text.numpy(),
  }
  np.savez_compressed(os.path.join(folder, "reference.npz"), **reference)
  check(folder, reference)
  return folder


def _fairjax_outputs(model, params, reference):
  out = model.apply({"params": params}, reference["images"], reference["input_ids"],
                    reference["attention_mask"])
  return {"image_embeds": out["image_embeddings"], "text_embeds": out["text_embeddings"],
          "logits_per_image": out["logits_per_image"]}


def check(folder: str, reference: dict):
  """fairjax matches transformers on the folder, and its save_pretrained round-trips through transformers."""
  model, params = clip.from_pretrained(folder)
  for key, value in _fairjax_outputs(model, params, reference).items():
    np.testing.assert_allclose(value, reference[key], atol=1e-5, rtol=1e-5, err_msg=f"{folder}: {key}")
  with tempfile.TemporaryDirectory() as tmp:
    clip.save_pretrained(model, params, tmp)
    reloaded = transformers.CLIPModel.from_pretrained(tmp).eval()
    with torch.inference_mode():
      out = reloaded(input_ids=torch.from_numpy(reference["input_ids"].astype(np.int64)),
                     pixel_values=torch.from_numpy(reference["pixel_values"]),
                     attention_mask=torch.from_numpy(reference["attention_mask"].astype(np.int64)))
    np.testing.assert_allclose(out.logits_per_image.numpy(), reference["logits_per_image"], atol=1e-5,
                               err_msg=f"{folder}: transformers on fairjax's save_pretrained")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--output_dir", default=os.path.join(os.path.dirname(__file__), "testdata"))
  args = parser.parse_args()
  for seed, name in enumerate(CONFIGS):
    folder = make_checkpoint(name, args.output_dir, seed)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"{folder}: {sorted(os.listdir(folder))}, {size / 1024:.0f} KiB; fairjax matches transformers")


if __name__ == "__main__":
  main()
