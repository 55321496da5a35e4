r"""CLIP-format BPE tokenizers trained with Hugging Face ``tokenizers``, for checkpoints we make ourselves.

No CLIP vocabulary can be downloaded here, and two things need one: the tiny test checkpoints, and the
small CLIP trained from scratch on the synthetic faces' captions. ``build_tokenizer(texts, folder)``
trains a byte-pair encoding on ``texts`` and writes it in CLIP's own format, so that
``transformers.CLIPTokenizer.from_pretrained(folder)`` (and any CLIP reader of ``vocab.json`` +
``merges.txt``) loads it:

  text pipeline   NFC, runs of whitespace to one space, lower case; words split by CLIP's pattern
                  (letters, single digits, contractions, punctuation runs) and mapped to GPT-2's
                  byte-level alphabet; a word's last symbol carries the end-of-word suffix ``</w>``.
  vocabulary      CLIP's layout: the 256 byte symbols, the same 256 with ``</w>``, one token per merge
                  in merge order, then ``<|startoftext|>`` and ``<|endoftext|>`` (the end token has
                  the largest id, which legacy CLIP configs pool at). Every byte is in the vocabulary,
                  so any text encodes without an unknown token.
  special tokens  sequences are ``<|startoftext|> ... <|endoftext|>``; padding and the unknown token
                  are ``<|endoftext|>``, as OpenAI's; ``model_max_length`` is the context length.

The folder also holds ``tokenizer.json`` (the same pipeline for the ``tokenizers`` library), written
by transformers from the trained vocabulary; ``python -m fairjax.clip.tokenizer --output_dir=DIR``
builds the synthetic-faces caption tokenizer.
"""

import json
import os
from typing import Iterable, Optional, Sequence

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
# CLIP's word pattern (as transformers' CLIPTokenizer splits), case-folded text assumed.
SPLIT_PATTERN = (r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                 r"""[^\s\p{L}\p{N}]+""")
BASE_VOCAB_SIZE = 512  # 256 byte symbols, with and without the end-of-word suffix
# Zero-shot prompts of the seeds (003's gender words; seed 000 §8.2's Spanish captions), so that a
# caption-trained tokenizer also has whole-word tokens for them.
PROMPT_TEXTS = (
    "a photo of a male", "a photo of a female", "a photo of a man", "a photo of a woman",
    "a photo of a boy", "a photo of a girl", "a photo of a person", "a photo of a child",
    "esto es una persona de género femenino", "esto es una persona de género masculino",
)


def byte_alphabet() -> list[str]:
  """GPT-2's printable stand-in for each byte 0..255, in byte order (CLIP's first 256 tokens)."""
  printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
  symbols, extra = {}, 0
  for b in range(256):
    if b in printable:
      symbols[b] = chr(b)
    else:
      symbols[b] = chr(256 + extra)
      extra += 1
  return [symbols[b] for b in range(256)]


def _trainable_tokenizer() -> Tokenizer:
  tokenizer = Tokenizer(BPE(unk_token=EOS_TOKEN, continuing_subword_prefix="", end_of_word_suffix=END_OF_WORD))
  tokenizer.normalizer = normalizers.Sequence(
      [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
  tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False),
  ])
  return tokenizer


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2
              ) -> tuple[dict[str, int], list[tuple[str, str]]]:
  """(vocab, merges) of a CLIP-style BPE trained on ``texts``, at most ``vocab_size`` tokens.

  The merges are those of ``tokenizers``' BPE trainer in the order it learned them; fewer than
  ``vocab_size - 514`` when the corpus runs out of pairs seen ``min_frequency`` times.
  """
  max_merges = vocab_size - BASE_VOCAB_SIZE - 2
  if max_merges < 0:
    raise ValueError(f"vocab_size {vocab_size} is below CLIP's {BASE_VOCAB_SIZE} byte symbols + 2 special tokens")
  texts = [t for t in texts if t.strip()]
  if not texts:
    raise ValueError("no text to train the tokenizer on")
  tokenizer = _trainable_tokenizer()
  # The trainer's vocabulary is its alphabet (the bytes, and those seen ending a word) plus its merges;
  # with vocab_size as its budget it learns at least max_merges merges whenever the corpus has them.
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                end_of_word_suffix=END_OF_WORD)
  tokenizer.train_from_iterator(texts, trainer)
  merges = [tuple(pair) for pair in json.loads(tokenizer.to_str())["model"]["merges"]][:max_merges]
  alphabet = byte_alphabet()
  tokens = alphabet + [s + END_OF_WORD for s in alphabet] + ["".join(pair) for pair in merges]
  tokens += [BOS_TOKEN, EOS_TOKEN]
  vocab = {token: i for i, token in enumerate(tokens)}
  if len(vocab) != len(tokens):
    raise AssertionError("the trained merges repeat a token")
  return vocab, merges


def save_tokenizer(vocab: dict[str, int], merges: Sequence[tuple[str, str]], output_dir: str,
                   context_length: int = 77):
  """Writes CLIP's ``vocab.json`` / ``merges.txt`` and transformers' tokenizer files; returns the loaded tokenizer."""
  import transformers  # pylint: disable=g-import-not-at-top
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False)
  with open(os.path.join(output_dir, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
  tokenizer = transformers.CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=context_length)
  tokenizer.save_pretrained(output_dir)
  return transformers.CLIPTokenizer.from_pretrained(output_dir)


def build_tokenizer(texts: Iterable[str], output_dir: str, vocab_size: int = 2048, min_frequency: int = 2,
                    context_length: int = 77):
  """Trains a CLIP BPE on ``texts`` and saves it to ``output_dir``; returns ``transformers.CLIPTokenizer``."""
  vocab, merges = train_bpe(texts, vocab_size, min_frequency)
  return save_tokenizer(vocab, merges, output_dir, context_length)


def synthetic_faces_captions() -> list[str]:
  """Every caption ``fairjax.data.synthetic_faces`` writes: each age band x gender x group x template."""
  from fairjax.data import captions as captions_lib  # pylint: disable=g-import-not-at-top
  from fairjax.data import synthetic_faces  # pylint: disable=g-import-not-at-top
  texts = []
  for last_age, *_ in synthetic_faces.AGE_BANDS:
    age = min(last_age, synthetic_faces.MAX_AGE)
    for gender in (0, 1):
      for race in range(len(synthetic_faces.CAPTION_RACE_WORDS)):
        for template in range(len(synthetic_faces.CAPTION_TEMPLATES)):
          texts.append(captions_lib.caption(age, gender, race, template))
  return texts


def caption_corpus() -> list[str]:
  """The synthetic faces' captions and the seeds' zero-shot prompts: a corpus for a face-caption CLIP."""
  return synthetic_faces_captions() + list(PROMPT_TEXTS)


def main(argv: Optional[Sequence[str]] = None):
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description="Build the synthetic-faces caption tokenizer (CLIP format).")
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--vocab_size", type=int, default=2048)
  parser.add_argument("--context_length", type=int, default=32)
  args = parser.parse_args(argv)
  tokenizer = build_tokenizer(caption_corpus(), args.output_dir, args.vocab_size, min_frequency=1,
                              context_length=args.context_length)
  print(f"{args.output_dir}: {len(tokenizer)} tokens, eos id {tokenizer.eos_token_id}, "
        f"context length {tokenizer.model_max_length}")


if __name__ == "__main__":
  main()
