"""Prompt sets for CLIP's zero-shot audits and debiasing, as data, and their embeddings.

A prompt set names the classes of one sensitive attribute in the order of ``fairjax.data.schema``
(gender: male, female; race: White, Black, Asian, Indian, Others) and gives, per class, the texts whose
embeddings are averaged into that class's text embedding. Seed 003 tokenises bare words ("male" /
"female", "man" / "woman", "boy" / "girl") with no template; templated sets ("a photo of a {}.") average
several phrasings per class in embedding space (CLIP's prompt ensembling, Radford et al. 2021 §3.1.4).

Encoding goes through one callable, ``encode_text(texts) -> [len(texts), D]``, so this module works with
any text encoder (the Flax CLIP, a test's planted embeddings). ``embed_prompt_sets`` encodes the union
of all sets' texts in one call and assembles each set from it, so a text shared by several sets (or a
set audited under several names) is encoded once.
"""

import dataclasses
from typing import Callable, Mapping, Sequence

import jax
import numpy as np

from fairjax.data import schema

EncodeText = Callable[[Sequence[str]], np.ndarray]

ATTRIBUTE_CLASSES = {"gender": schema.GENDERS, "race": schema.RACES}

# Seed 003's three keyword pairs, class order male, female.
SEED_003_WORDS = {
    "male/female": ("male", "female"),
    "man/woman": ("man", "woman"),
    "boy/girl": ("boy", "girl"),
}
# Phrasings of a face photo; "{}" takes a gender noun ("man") or adjective ("male").
GENDER_TEMPLATES = ("a photo of a {}.", "a portrait of a {}.", "a close-up photo of the face of a {}.")
# UTKFace's races with their articles; "Others" is UTKFace's own gloss of its fifth label
# ("like Hispanic, Latino, Middle Eastern").
RACE_WORDS = ("a white", "a black", "an asian", "an indian", "a hispanic, latino or middle eastern")
RACE_TEMPLATES = ("a photo of {} person.", "a portrait of {} person.",
                  "a close-up photo of the face of {} person.")
# Attribute-neutral retrieval queries (text-to-image bias, Berg et al. 2022): a person described by a
# trait that should not depend on gender or race.
NEUTRAL_TRAITS = ("good", "kind", "honest", "smart", "hard-working", "trustworthy", "friendly", "caring",
                  "evil", "lazy", "dishonest", "violent", "criminal", "rude", "stupid", "dangerous")
NEUTRAL_TEMPLATE = "a photo of a {} person."
# Prompts that describe only the bias, whose span Chuang et al. 2023 project out of the text embeddings.
GENDER_BIAS_PROMPTS = ("a photo of a male.", "a photo of a man.", "a photo of a boy.",
                       "a photo of a female.", "a photo of a woman.", "a photo of a girl.")


@dataclasses.dataclass(frozen=True)
class PromptSet:
  """The texts of each class of one attribute; ``texts[c]`` are averaged into class c's embedding."""

  name: str
  attribute: str
  texts: tuple[tuple[str, ...], ...]

  def __post_init__(self):
    if self.attribute not in ATTRIBUTE_CLASSES:
      raise ValueError(f"prompt set {self.name!r}: attribute must be one of {sorted(ATTRIBUTE_CLASSES)}, "
                       f"got {self.attribute!r}")
    expected = len(ATTRIBUTE_CLASSES[self.attribute])
    if len(self.texts) != expected:
      raise ValueError(f"prompt set {self.name!r}: {len(self.texts)} classes for {self.attribute}, "
                       f"which has {expected} ({', '.join(ATTRIBUTE_CLASSES[self.attribute])})")
    for c, texts in enumerate(self.texts):
      if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError(f"prompt set {self.name!r}: class {self.class_names[c]} needs non-empty texts, "
                         f"got {texts!r}")

  @property
  def class_names(self) -> tuple[str, ...]:
    return ATTRIBUTE_CLASSES[self.attribute]


def words_set(name: str, attribute: str, words: Sequence[str],
              templates: Sequence[str] = ("{}",)) -> PromptSet:
  """One class word per class (schema order), each put into every template."""
  return PromptSet(name, attribute, tuple(tuple(t.format(w) for t in templates) for w in words))


def seed003_sets() -> dict[str, PromptSet]:
  """Seed 003's bare keyword pairs, tokenised as they are: male/female, man/woman, boy/girl."""
  return {name: words_set(name, "gender", words) for name, words in SEED_003_WORDS.items()}


def templated_gender_sets(templates: Sequence[str] = GENDER_TEMPLATES) -> dict[str, PromptSet]:
  """Seed 003's pairs put into photo templates, named e.g. ``"man/woman, templated"``."""
  return {f"{name}, templated": words_set(f"{name}, templated", "gender", words, templates)
          for name, words in SEED_003_WORDS.items()}


def race_set(templates: Sequence[str] = RACE_TEMPLATES, name: str = "race") -> PromptSet:
  """UTKFace's five races, each averaged over ``templates``."""
  return words_set(name, "race", RACE_WORDS, templates)


def neutral_queries(traits: Sequence[str] = NEUTRAL_TRAITS, template: str = NEUTRAL_TEMPLATE) -> list[str]:
  """Attribute-neutral text queries for retrieval bias (``fairjax.metrics.retrieval``)."""
  return [template.format(t) for t in traits]


def gender_pairs(traits: Sequence[str] = NEUTRAL_TRAITS,
                 template: str = "a photo of a {} {} person.") -> list[tuple[str, str]]:
  """Texts that differ only in gender ("a photo of a male kind person." / "... female ..."): the
  positive pairs of Chuang et al. 2023's calibrated projection, which should embed alike."""
  return [(template.format("male", t), template.format("female", t)) for t in traits]


def clip_text_encoder(model, params, processor, batch_size: int = 256) -> EncodeText:
  """``encode_text`` of a Flax CLIP (``fairjax.clip.from_pretrained``) and its ``load_processor``.

  Texts are tokenised as CLIP pads them and encoded ``batch_size`` at a time; a shorter batch is padded
  up to the next power of two (at most ``batch_size``) by repeating its last text, so a handful of
  compiled shapes serve every call.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  encode = jax.jit(lambda p, ids, mask: model.apply({"params": p}, ids, mask, method=model.encode_text))

  def encode_text(texts: Sequence[str]) -> np.ndarray:
    texts = list(texts)
    out = []
    for start in range(0, len(texts), batch_size):
      chunk = texts[start:start + batch_size]
      size = min(batch_size, 1 << (len(chunk) - 1).bit_length())
      batch = processor.tokenize(chunk + chunk[-1:] * (size - len(chunk)))
      out.append(np.asarray(encode(params, batch["input_ids"], batch["attention_mask"]))[:len(chunk)])
    return np.concatenate(out)

  return encode_text


def embed_texts(texts: Sequence[str], encode_text: EncodeText) -> np.ndarray:
  """``encode_text(texts)`` checked ([len(texts), D], finite, non-zero) and L2-normalised, float32."""
  texts = list(texts)
  if not texts:
    raise ValueError("no texts to embed")
  embeddings = np.asarray(encode_text(texts), np.float32)
  if embeddings.ndim != 2 or embeddings.shape[0] != len(texts):
    raise ValueError(f"encode_text returned shape {embeddings.shape} for {len(texts)} texts; "
                     f"expected [{len(texts)}, D]")
  bad = ~np.isfinite(embeddings).all(axis=1)
  if bad.any():
    raise ValueError(f"encode_text returned non-finite embeddings for {int(bad.sum())} text(s), "
                     f"e.g. {texts[int(np.argmax(bad))]!r}")
  norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
  if (norms == 0).any():
    raise ValueError(f"encode_text returned a zero embedding for {texts[int(np.argmin(norms[:, 0]))]!r}")
  return embeddings / norms


def embed_prompt_sets(prompt_sets: Mapping[str, PromptSet], encode_text: EncodeText) -> dict[str, np.ndarray]:
  """Each set's class embeddings ``[C, D]``, unit length, from one ``encode_text`` call over all texts.

  A class's embedding is the mean of its texts' unit embeddings, renormalised (so one text per class
  gives that text's embedding itself, as seed 003's bare words).
  """
  if not prompt_sets:
    raise ValueError("no prompt sets to embed")
  unique = list(dict.fromkeys(t for s in prompt_sets.values() for texts in s.texts for t in texts))
  embeddings = embed_texts(unique, encode_text)
  row = {t: i for i, t in enumerate(unique)}
  out = {}
  for name, prompt_set in prompt_sets.items():
    classes = np.stack([embeddings[[row[t] for t in texts]].mean(0) for texts in prompt_set.texts])
    norms = np.linalg.norm(classes, axis=1, keepdims=True)
    if (norms < 1e-6).any():
      c = int(np.argmin(norms[:, 0]))
      raise ValueError(f"prompt set {name!r}: the texts of class {prompt_set.class_names[c]} cancel out "
                       "(their mean embedding is zero)")
    out[name] = classes / norms
  return out
