"""CLIP-format tokenizers trained here: loadable by transformers, one encoding whichever file is read.

transformers v5 has a single, tokenizers-backed ``CLIPTokenizer`` (``CLIPTokenizerFast`` is an alias
of it; the pure-Python "slow" CLIP tokenizer is gone), so the two readers compared are the ones that
can disagree: transformers reading ``tokenizer.json``, transformers rebuilding CLIP's pipeline from
``vocab.json`` + ``merges.txt`` alone (what other CLIP readers use), and the bare ``tokenizers``
library on ``tokenizer.json``.
"""

import json
import os
import shutil

import pytest
import tokenizers
import transformers

from fairjax.clip import tokenizer as tokenizer_lib

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")
ODD_TEXTS = ("A  PHOTO\tof a naïve Café-owner, aged 42!", "日本の写真 🙂", "it's they'll we've", "x" * 40)


@pytest.fixture(name="folder", scope="module")
def _folder(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("tokenizer"))
  tokenizer_lib.build_tokenizer(tokenizer_lib.caption_corpus(), folder, vocab_size=1024, min_frequency=1,
                                context_length=32)
  return folder


def _readers(folder, tmp_path):
  """The three ways the folder is read: tokenizer.json via transformers, vocab + merges, bare tokenizers."""
  from_files = tmp_path / "vocab_and_merges_only"
  shutil.copytree(folder, from_files)
  os.remove(from_files / "tokenizer.json")
  bare = tokenizers.Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
  return {
      "tokenizer.json": transformers.CLIPTokenizer.from_pretrained(folder),
      "vocab+merges": transformers.CLIPTokenizer.from_pretrained(str(from_files)),
      "tokenizers": lambda text: {"input_ids": bare.encode(text).ids},
  }


def test_readers_agree_and_decoding_round_trips(folder, tmp_path):
  readers = _readers(folder, tmp_path)
  texts = tokenizer_lib.caption_corpus() + list(ODD_TEXTS)
  hf = readers["tokenizer.json"]
  for text in texts:
    ids = {name: list(read(text)["input_ids"]) for name, read in readers.items()}
    assert ids["tokenizer.json"] == ids["vocab+merges"] == ids["tokenizers"], (text, ids)
    assert ids["tokenizer.json"][0] == hf.bos_token_id and ids["tokenizer.json"][-1] == hf.eos_token_id
    assert hf.unk_token_id not in ids["tokenizer.json"][1:-1], text  # every byte has a token
  for text in tokenizer_lib.caption_corpus() + list(ODD_TEXTS[:3]):
    ids = hf(text)["input_ids"]
    decoded = hf.decode(ids, skip_special_tokens=True)
    # CLIP decodes every end of word as a space ("close-up" -> "close - up"): the text comes back
    # lower-cased up to spacing, and re-encodes to the same ids.
    assert decoded.replace(" ", "") == " ".join(text.split()).lower().replace(" ", ""), text
    assert hf(decoded)["input_ids"] == ids, text


def test_captions_are_whole_word_tokens(folder):
  hf = transformers.CLIPTokenizer.from_pretrained(folder)
  tokens = hf.convert_ids_to_tokens(hf("a photo of an old Woman")["input_ids"])
  assert tokens == ["<|startoftext|>", "a</w>", "photo</w>", "of</w>", "an</w>", "old</w>", "woman</w>",
                    "<|endoftext|>"]


def test_vocabulary_has_clips_layout(folder):
  with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
    vocab = json.load(f)
  by_id = sorted(vocab, key=vocab.get)
  alphabet = tokenizer_lib.byte_alphabet()
  assert by_id[:256] == alphabet and by_id[256:512] == [a + "</w>" for a in alphabet]
  assert by_id[-2:] == ["<|startoftext|>", "<|endoftext|>"] and len(by_id) <= 1024
  with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
    lines = f.read().splitlines()
  assert lines[0] == "#version: 0.2"
  assert ["".join(line.split(" ")) for line in lines[1:]] == by_id[512:-2]  # one token per merge, in order
  hf = transformers.CLIPTokenizer.from_pretrained(folder)
  assert hf.pad_token == hf.eos_token == "<|endoftext|>" and hf.model_max_length == 32
  assert hf(["a boy", "a photo of a girl"], padding="max_length", max_length=8)["input_ids"][0][-1] == \
      hf.eos_token_id


@pytest.mark.parametrize("name", ("legacy_quick_gelu", "eos_gelu"))
def test_committed_test_tokenizers_agree(name, tmp_path):
  readers = _readers(os.path.join(TESTDATA, name), tmp_path)
  for text in ("a photo of an old White woman", *ODD_TEXTS):
    ids = [list(read(text)["input_ids"]) for read in readers.values()]
    assert ids[0] == ids[1] == ids[2], text


def test_bad_training_input():
  with pytest.raises(ValueError, match="below CLIP's 512 byte symbols"):
    tokenizer_lib.train_bpe(["a photo"], vocab_size=300)
  with pytest.raises(ValueError, match="no text"):
    tokenizer_lib.train_bpe(["", "  "], vocab_size=600)


def test_merge_budget_is_respected():
  vocab, merges = tokenizer_lib.train_bpe(tokenizer_lib.caption_corpus(), vocab_size=530, min_frequency=1)
  assert len(merges) == 530 - 514 and len(vocab) == 530


def test_command_line(tmp_path, capsys):
  tokenizer_lib.main([f"--output_dir={tmp_path}", "--vocab_size=700"])
  assert "eos id" in capsys.readouterr().out
  assert len(transformers.CLIPTokenizer.from_pretrained(str(tmp_path))) <= 700
