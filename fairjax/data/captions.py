"""Captions of face images from their labels, and their CLIP token ids for the input pipeline.

CLIP learns from image-caption pairs, and neither face set here comes with captions: the synthetic faces
write one per example and UTKFace none, so both are captioned from their labels by ``caption``, one
wording for both (seed 000 §8.1 fine-tunes on captions "in which the gender and race of the person are
specified"). A caption names the age band, the race and the gender:

  "a photo of a young White woman"              "a photo of a teenage Asian male."
  "a portrait of an old Black man."             "a close-up photo of the face of a Latino female person."

Gender takes two forms, the age band's noun (boy / girl, man / woman) or the adjective (male / female),
so that each of seed 003's three zero-shot word pairs (male/female, man/woman, boy/girl) and the photo
templates of ``fairjax.clip.prompts`` ("a photo of a {}.", "... person.") are words a CLIP trained on
these captions has seen, in the places the prompts put them. Race 4 (UTKFace's "Others", mostly
Hispanic / Latino faces) is "Latino". An unknown label (-1) is left out of the caption: no age word,
no race word, "person" for an unknown gender.

Which template an example gets is fixed by the data: the synthetic faces draw it from their example
hash; a data set without captions takes ``template_of(index)``, a hash of the example's source index.
``CaptionTokens`` turns each example's caption into ``input_ids`` / ``attention_mask`` in the pipeline's
reader threads, with a CLIP tokenizer folder's ``CLIPTokenizer``.
"""

import os
import threading
from typing import Optional

import numpy as np

RACE_WORDS = ("White", "Black", "Asian", "Indian", "Latino")
GENDER_ADJECTIVES = ("male", "female")
# (last age of the band, age word, noun for males, noun for females)
AGE_BANDS = ((12, "", "boy", "girl"), (19, "teenage", "boy", "girl"), (35, "young", "man", "woman"),
             (55, "middle-aged", "man", "woman"), (200, "old", "man", "woman"))
# How a template names the gender: the age band's noun ("a young White woman"), the adjective ("a young
# White female"), or the adjective and "person" ("a young White female person").
NOUN, ADJECTIVE, ADJECTIVE_PERSON = "noun", "adjective", "adjective person"
# (template, gender form): "{}" takes the article and the description.
TEMPLATES = (
    ("a photo of {}", NOUN),
    ("a close-up photo of the face of {}", NOUN),
    ("a portrait photo of {}", NOUN),
    ("a photo of {}.", ADJECTIVE),
    ("a portrait of {}.", NOUN),
    ("a close-up photo of the face of {}.", ADJECTIVE_PERSON),
)
TEXT_FIELDS = ("input_ids", "attention_mask")


def caption(age: int, gender: int, race: int, template: int) -> str:
  """The caption of one example's labels (schema codes; -1 unknown) in ``TEMPLATES[template]``."""
  pattern, form = TEMPLATES[template]
  band = next(b for b in AGE_BANDS if age <= b[0]) if age >= 0 else (None, "", "man", "woman")
  known = gender in (0, 1)
  if form == NOUN:
    words = [band[2 + gender] if known else "person"]
  else:
    words = [GENDER_ADJECTIVES[gender]] if known else []
    if form == ADJECTIVE_PERSON or not known:
      words.append("person")
  race_word = RACE_WORDS[race] if 0 <= race < len(RACE_WORDS) else ""
  description = " ".join(w for w in (band[1], race_word, *words) if w)
  article = "an" if description[0].lower() in "aeiou" else "a"
  return pattern.format(f"{article} {description}")


def all_captions() -> list[str]:
  """Every caption of known labels: each age band x gender x race x template."""
  return [caption(min(band[0], 90), gender, race, template) for band in AGE_BANDS for gender in (0, 1)
          for race in range(len(RACE_WORDS)) for template in range(len(TEMPLATES))]


def template_of(index: int) -> int:
  """The template of source example ``index`` in a data set without captions (a fixed hash of it)."""
  x = (int(index) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
  x = ((x ^ (x >> 31)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
  return int((x ^ (x >> 29)) % len(TEMPLATES))


def record_caption(record: dict, index: int) -> str:
  """A record's own ``caption``, or the one its labels give (template by ``template_of(index)``)."""
  text = record.get("caption")
  if text is not None:
    return str(text)
  labels = [int(record.get(k, -1)) for k in ("age", "gender", "race")]
  return caption(*labels, template_of(index))


def load_tokenizer(folder: str):
  """The ``transformers.CLIPTokenizer`` of a folder holding CLIP's ``vocab.json`` and ``merges.txt``.

  Checked first: transformers builds an empty tokenizer from a folder without them, which would turn
  every caption into unknown tokens.
  """
  import transformers  # pylint: disable=g-import-not-at-top
  missing = [f for f in ("vocab.json", "merges.txt") if not os.path.isfile(os.path.join(folder, f))]
  if missing:
    raise FileNotFoundError(f"{folder}: no CLIP tokenizer ({', '.join(missing)} missing); a Hugging Face "
                            "CLIP folder, or one written by fairjax.clip.tokenizer, has them")
  return transformers.CLIPTokenizer.from_pretrained(folder)


class CaptionTokens:
  """``(record, index) -> {'input_ids', 'attention_mask'}`` int32 ``[context_length]``, for the pipeline.

  Tokenised as CLIP's processors do (``<|startoftext|> ... <|endoftext|>``, padded with the pad token
  and truncated to ``context_length``). The captions of a face set are a few hundred distinct strings,
  so each is tokenised once and cached; the lock serialises the tokenizer, whose Rust backend is not
  safe to reconfigure (padding, truncation) from several reader threads at once.
  """

  def __init__(self, tokenizer_dir: str, context_length: Optional[int] = None):
    self.tokenizer = load_tokenizer(tokenizer_dir)
    self.context_length = int(context_length or self.tokenizer.model_max_length)
    self._cache, self._lock = {}, threading.Lock()

  def tokenize(self, text: str) -> dict[str, np.ndarray]:
    cached = self._cache.get(text)
    if cached is None:
      with self._lock:
        batch = self.tokenizer([text], padding="max_length", truncation=True, max_length=self.context_length,
                               return_tensors="np")
      cached = {k: np.asarray(batch[k][0], np.int32) for k in TEXT_FIELDS}
      self._cache[text] = cached
    return cached

  def __call__(self, record: dict, index: int) -> dict[str, np.ndarray]:
    return self.tokenize(record_caption(record, index))
