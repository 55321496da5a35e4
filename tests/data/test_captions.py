"""Captions from labels (one wording for the synthetic faces and UTKFace) and their token ids."""

import concurrent.futures
import os

import numpy as np
import pytest

from fairjax.data import captions

TOKENIZER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "clip", "testdata", "eos_gelu")


def test_captions_name_age_race_and_gender_in_each_form():
  assert captions.caption(30, 1, 0, 0) == "a photo of a young White woman"
  assert captions.caption(8, 0, 2, 1) == "a close-up photo of the face of an Asian boy"
  assert captions.caption(15, 1, 1, 2) == "a portrait photo of a teenage Black girl"
  assert captions.caption(70, 0, 3, 3) == "a photo of an old Indian male."
  assert captions.caption(40, 1, 4, 4) == "a portrait of a middle-aged Latino woman."
  assert captions.caption(40, 1, 4, 5) == "a close-up photo of the face of a middle-aged Latino female person."


def test_unknown_labels_are_left_out():
  assert captions.caption(-1, 0, 1, 0) == "a photo of a Black man"
  assert captions.caption(30, -1, -1, 0) == "a photo of a young person"
  assert captions.caption(30, -1, 0, 3) == "a photo of a young White person."
  assert captions.caption(-1, -1, -1, 5) == "a close-up photo of the face of a person."
  assert captions.caption(-1, 1, 9, 3) == "a photo of a female."


def test_every_seed_003_word_occurs_in_the_captions():
  texts = captions.all_captions()
  assert len(texts) == len(set(texts)) == 5 * 2 * 5 * len(captions.TEMPLATES)
  words = {w.strip(".") for t in texts for w in t.split()}
  assert {"male", "female", "man", "woman", "boy", "girl", "person"} <= words


def test_a_record_without_a_caption_is_captioned_from_its_labels():
  record = {"age": np.int32(25), "gender": np.int32(0), "race": np.int32(3)}
  text = captions.record_caption(record, 17)
  assert text == captions.caption(25, 0, 3, captions.template_of(17))
  assert captions.record_caption({**record, "caption": "given"}, 17) == "given"
  drawn = [captions.template_of(i) for i in range(6000)]
  assert drawn[:50] == [captions.template_of(i) for i in range(50)]  # a function of the index alone
  assert np.bincount(drawn, minlength=len(captions.TEMPLATES)).min() > 850  # about 1,000 each


def test_caption_tokens_are_clip_padded_and_safe_from_threads():
  tokens = captions.CaptionTokens(TOKENIZER)
  tokenizer = tokens.tokenizer
  assert tokens.context_length == 16
  record = {"age": 30, "gender": 1, "race": 0, "caption": "a photo of a young White woman"}
  out = tokens(record, 0)
  ids, mask = out["input_ids"], out["attention_mask"]
  assert ids.dtype == mask.dtype == np.int32 and ids.shape == mask.shape == (16,)
  expected = tokenizer("a photo of a young White woman")["input_ids"]
  assert list(ids[:len(expected)]) == expected and expected[0] == tokenizer.bos_token_id
  assert expected[-1] == tokenizer.eos_token_id and (ids[len(expected):] == tokenizer.pad_token_id).all()
  assert list(mask) == [1] * len(expected) + [0] * (16 - len(expected))
  # Truncated to the context length, still a fixed shape.
  long = tokens({"caption": "a photo of " * 10}, 0)["input_ids"]
  assert long.shape == (16,)
  records = [{"age": a, "gender": g, "race": r} for a in (5, 30, 70) for g in (0, 1) for r in range(5)] * 20
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    threaded = list(pool.map(lambda ir: tokens(ir[1], ir[0])["input_ids"], enumerate(records)))
  fresh = captions.CaptionTokens(TOKENIZER, context_length=16)
  for i, (record, ids) in enumerate(zip(records, threaded)):
    np.testing.assert_array_equal(ids, fresh(record, i)["input_ids"])


def test_caption_tokens_need_a_tokenizer_folder(tmp_path):
  with pytest.raises(FileNotFoundError, match="vocab.json, merges.txt missing"):
    captions.CaptionTokens(str(tmp_path))
