"""CLIP in JAX: the Flax model, Hugging Face checkpoints in and out, tokenizers we build ourselves.

  model, params = fairjax.clip.from_pretrained(path)            # a HF CLIP folder, no torch needed
  processor = fairjax.clip.load_processor(path)                  # its tokenizer and image processor
  batch = processor.tokenize(["a photo of a woman"])
  text = model.apply({'params': params}, batch['input_ids'], batch['attention_mask'],
                     method=model.encode_text)
  image = model.apply({'params': params}, processor.images(pil_images), method=model.encode_image)

The model and its config presets (``vit_b32``, ``vit_b16``, ``vit_l14``, ``small``, ``tiny``) live in
``fairjax.clip.model`` and are re-exported here; ``tokenizer`` trains CLIP-format BPE tokenizers.
"""

from fairjax.clip import pretrained
from fairjax.clip.pretrained import (Processor, abstract_params, config_from_hf, config_to_hf,
                                     from_pretrained, init_params, load_processor, save_image_processor,
                                     save_pretrained)
from fairjax.clip.model import (CLIP, PRESETS, CLIPConfig, TextConfig, VisionConfig, contrastive_loss,
                                 small, tiny, vit_b16, vit_b32, vit_l14)
