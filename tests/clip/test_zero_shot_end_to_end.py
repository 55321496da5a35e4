"""Zero-shot audit, debiasing and retrieval bias on embeddings of the tiny CLIP checkpoint."""

import json
import os
import warnings

import jax
import numpy as np
import pytest

from fairjax import clip
from fairjax.clip import debias
from fairjax.clip import prompts
from fairjax.clip import zero_shot
from fairjax.metrics import group_report as report_lib
from fairjax.metrics import retrieval

CHECKPOINT = os.path.join(os.path.dirname(__file__), "testdata", "eos_gelu")


@pytest.mark.slow
def test_audit_of_the_tiny_checkpoint(tmp_path):
  model, params = clip.from_pretrained(CHECKPOINT)
  processor = clip.load_processor(CHECKPOINT)
  raw = np.load(os.path.join(CHECKPOINT, "reference.npz"))["raw_images"]
  rng = np.random.default_rng(0)
  # 20 images: the checkpoint's three and noisy copies, labelled at random (the model knows no faces).
  raw = np.clip(np.concatenate([raw] * 7)[:20] + rng.integers(-30, 30, (20,) + raw.shape[1:]), 0, 255)
  images = processor.images(list(raw.astype(np.uint8)))
  image_embeddings = np.asarray(model.apply({"params": params}, images, method=model.encode_image))
  gender, race = rng.integers(0, 2, 20), rng.integers(0, 5, 20)

  sets = {**prompts.seed003_sets(), "race": prompts.race_set()}
  encode_text = prompts.clip_text_encoder(model, params, processor, batch_size=16)
  embedded = prompts.embed_prompt_sets(sets, encode_text)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", report_lib.FairnessWarning)
    result = zero_shot.evaluate(image_embeddings, gender, race, embedded, params["logit_scale"],
                             groupings=("race",))

  # The audit's probabilities are the model's own logits_per_image, softmaxed over each set's classes.
  batch = processor.tokenize(["male", "female"])
  logits = model.apply({"params": params}, images, batch["input_ids"], batch["attention_mask"])
  expected = jax.nn.softmax(logits["logits_per_image"], -1)[:, 1]
  np.testing.assert_allclose(result.gender["male/female"].p_female, expected, atol=1e-5)
  assert set(result.gender) == {"male/female", "man/woman", "boy/girl", "ensemble"}
  assert result.race["race"].probabilities.shape == (20, 5)
  names = result.save(str(tmp_path / "audit"))
  assert "boy_girl/by_group.csv" in names
  summary = json.loads((tmp_path / "audit" / "summary.json").read_text())
  assert summary["num_examples"] == 20

  # Debiasing and retrieval bias run on the same embeddings.
  bias = prompts.embed_texts(list(prompts.GENDER_BIAS_PROMPTS), encode_text)
  pairs = np.stack([prompts.embed_texts(list(p), encode_text) for p in prompts.gender_pairs()])
  projection = debias.fit_biased_prompts(bias, pairs)
  neutral = prompts.embed_texts(prompts.neutral_queries(), encode_text)
  queries = projection.apply(neutral)
  np.testing.assert_allclose(np.asarray(queries) @ bias.T, 0.0, atol=1e-4)  # P* = P0 G⁻¹ ends in P0
  before = retrieval.bias_at_k(neutral, image_embeddings, gender, k=10, num_groups=2)
  after = retrieval.bias_at_k(queries, image_embeddings, gender, k=10, num_groups=2)
  assert before.max_skew.shape == after.max_skew.shape == (len(prompts.NEUTRAL_TRAITS),)
