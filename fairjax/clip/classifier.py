r"""CLIP as a registered classifier: zero-shot heads from class prompts, so the training harness runs it.

``clip_zero_shot`` wraps ``fairjax.clip.model.CLIP`` in the registry's output contract:
``apply(variables, images, train=...)`` returns ``{'embedding': image embedding [B, D], 'gender': [B, 2],
'race': [B, 5]}`` (the heads asked for), where a head's output for one prompt set is CLIP's own
``logits_per_image`` against the set's class embeddings,

  logits[b, c] = exp(logit_scale) * cos(image_b, class_c),   class_c = mean of unit text embeddings of
                                                              the class's texts, renormalised,

and for several sets the log of their averaged probabilities, log(mean_s softmax(logits_s)), which is
seed 003's ensemble (``fairjax.clip.zero_shot``) with the softmax of the output giving its probabilities.
The prompts are fixed token ids held by the module (``PromptBank``, from ``fairjax.clip.prompts`` sets
or ``EXTRA_PROMPT_SETS``) and go through the text tower in every forward pass, so that:

  * the harness's per-epoch evaluation by group is a zero-shot audit of the current weights;
  * seed 000 §8.2's fine-tune ("each image against its two gender prompts", cross-entropy) is the
    ``standard`` objective on this model, training both towers, and the fairness objectives
    (``constrained`` and the other rate objectives) plug in unchanged on its heads;
  * the contrastive objective (``fairjax.clip.objectives``) reads image and caption embeddings
    through ``contrastive``.

Parameters sit under ``params['clip']`` and are CLIP's exactly. ``checkpoint=DIR`` starts them from a
Hugging Face CLIP folder (its ``config.json`` gives the architecture, its tokenizer the prompts' ids);
without one they are initialised afresh from ``architecture`` (``fairjax.clip.model.CLIPConfig``
fields, the vocabulary's size and special ids taken from the tokenizer). ``tokenizer='captions'``
builds the CLIP-format BPE of the face captions and the seeds' prompts (``fairjax.clip.tokenizer``).
Three hooks extend the training run: ``pretrained_variables`` (the registry's ``init_variables``
starts from the checkpoint), ``text_inputs`` (the input pipeline's caption token ids, for objectives
that read captions) and ``export`` (the trained CLIP as a Hugging Face folder, with its tokenizer and
image processor, that ``fairjax.clip.from_pretrained`` and transformers read).
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fairjax import paths
from fairjax.clip import pretrained as pretrained_lib
from fairjax.clip import prompts as prompts_lib
from fairjax.data import captions
from fairjax.clip import model as clip_lib
from fairjax.models import heads as heads_lib
from fairjax.models import registry

Array = jax.Array

HEADS = {"gender": heads_lib.HeadSpec("gender", "multiclass", num_outputs=2),
         "race": heads_lib.HeadSpec("race", "multiclass", num_outputs=5)}
# Seed 000 §8.2's captions ("Esto es una persona de género femenino"), one per class, as it fine-tuned.
EXTRA_PROMPT_SETS = {
    "seed000_spanish": prompts_lib.PromptSet(
        "seed000_spanish", "gender",
        (("esto es una persona de género masculino",), ("esto es una persona de género femenino",))),
}
DEFAULT_PROMPTS = {"gender": ("male/female, templated", "man/woman, templated", "boy/girl, templated"),
                   "race": ("race",)}
CAPTIONS_TOKENIZER = "captions"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def prompt_sets() -> dict[str, prompts_lib.PromptSet]:
  """Every prompt set a head may name: seed 003's bare and templated pairs, the race set, the extras."""
  return {**prompts_lib.seed003_sets(), **prompts_lib.templated_gender_sets(), "race": prompts_lib.race_set(),
          **EXTRA_PROMPT_SETS}


@dataclasses.dataclass(frozen=True)
class PromptBank:
  """The prompts' token ids and, per head, which rows make each set's class embeddings (hashable).

  ``heads`` is ``((head, (set name, ...), sets), ...)`` where a set is, per class, the tuple of rows of
  ``input_ids`` whose unit embeddings are averaged into that class's embedding.
  """

  texts: tuple[str, ...]
  input_ids: tuple[tuple[int, ...], ...]
  attention_mask: tuple[tuple[int, ...], ...]
  heads: tuple[tuple[str, tuple[str, ...], tuple[tuple[tuple[int, ...], ...], ...]], ...]

  def set_names(self, head: str) -> tuple[str, ...]:
    return dict((h, names) for h, names, _ in self.heads)[head]


def prompt_bank(tokenizer, head_sets: Mapping[str, Sequence[str]], context_length: int) -> PromptBank:
  """Tokenises every text of the named sets of each head (``{'gender': ('man/woman, templated',)}``)."""
  known = prompt_sets()
  texts, heads = [], []
  for head, names in head_sets.items():
    if head not in HEADS:
      raise ValueError(f"unknown head {head!r}; CLIP zero-shot heads: {', '.join(HEADS)}")
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names:
      raise ValueError(f"head {head!r} needs at least one prompt set")
    sets = []
    for name in names:
      if name not in known:
        raise ValueError(f"unknown prompt set {name!r} for head {head!r}; known: {', '.join(sorted(known))}")
      if known[name].attribute != head:
        raise ValueError(f"prompt set {name!r} is a {known[name].attribute} set, not one for head {head!r}")
      classes = []
      for class_texts in known[name].texts:
        rows = []
        for text in class_texts:
          if text not in texts:
            texts.append(text)
          rows.append(texts.index(text))
        classes.append(tuple(rows))
      sets.append(tuple(classes))
    heads.append((head, names, tuple(sets)))
  batch = tokenizer(texts, padding="max_length", truncation=True, max_length=context_length, return_tensors="np")
  as_rows = lambda a: tuple(tuple(int(v) for v in row) for row in np.asarray(a))
  return PromptBank(tuple(texts), as_rows(batch["input_ids"]), as_rows(batch["attention_mask"]), tuple(heads))


def _log_mean_softmax(logits: Sequence[Array]) -> Array:
  """log(mean_s softmax(logits_s)): the log-probabilities of an ensemble, computed stably."""
  stacked = jnp.stack([jax.nn.log_softmax(l, axis=-1) for l in logits])
  return jax.nn.logsumexp(stacked, axis=0) - jnp.log(len(logits))


class CLIPZeroShot(nn.Module):
  """CLIP with zero-shot heads (see the module docstring). Build it with ``get_model('clip_zero_shot')``."""

  clip_config: clip_lib.CLIPConfig
  prompts: PromptBank
  heads: tuple[heads_lib.HeadSpec, ...]
  input_shape: tuple[int, int, int]
  checkpoint: str = ""       # Hugging Face CLIP folder the parameters start from; "" for a fresh init
  tokenizer_dir: str = ""    # the CLIP tokenizer of the prompts (and of captions, for the pipeline)
  dtype: Any = jnp.float32

  def setup(self):
    self.clip = clip_lib.CLIP(self.clip_config, dtype=self.dtype)

  def head_outputs(self, image_embeddings: Array) -> dict[str, Array]:
    """Each head's logits for the images: one prompt set's, or its sets' ensemble (log mean probs)."""
    text = self.clip.encode_text(jnp.asarray(self.prompts.input_ids, jnp.int32),
                                 jnp.asarray(self.prompts.attention_mask, jnp.int32))
    unit = text / jnp.linalg.norm(text, axis=-1, keepdims=True)
    out = {}
    for head, _, sets in self.prompts.heads:
      logits = []
      for classes in sets:
        class_embeddings = jnp.stack([unit[np.asarray(rows)].mean(0) for rows in classes])
        logits.append(self.clip.logits(image_embeddings, class_embeddings))
      out[head] = logits[0] if len(logits) == 1 else _log_mean_softmax(logits)
    return out

  def __call__(self, images: Array, train: bool = False) -> dict[str, Array]:
    del train  # CLIP has no dropout and no batch statistics
    image = self.clip.encode_image(images)
    return {"embedding": image, **self.head_outputs(image)}

  def contrastive(self, images: Array, input_ids: Array, attention_mask: Optional[Array] = None,
                  with_heads: bool = False) -> dict[str, Array]:
    """Image and caption embeddings (unnormalised) and ``logit_scale``; with the heads' outputs too."""
    image = self.clip.encode_image(images)
    out = {"image_embedding": image, "text_embedding": self.clip.encode_text(input_ids, attention_mask),
           "logit_scale": self.clip.logit_scale}
    if with_heads:
      out.update({"embedding": image, **self.head_outputs(image)})
    return out

  # ------------------------------------------------------------------------ hooks of the training run

  @nn.nowrap
  def pretrained_variables(self) -> Optional[dict]:
    """``{'params': {'clip': ...}}`` from ``checkpoint``, or None for a fresh initialisation."""
    if not self.checkpoint:
      return None
    _, params = pretrained_lib.from_pretrained(self.checkpoint)
    return {"params": {"clip": params}}

  @nn.nowrap
  def check_data(self, data_config) -> None:
    """Raises unless the data are normalised as the checkpoint's image processor says (RGB, mean, std).

    A CLIP sees its pixels only through that normalisation; fine-tuning OpenAI's weights on [0, 1]
    pixels would start from a model that sees noise. Fresh models take the data's own (and export it).
    """
    if data_config.grayscale:
      raise ValueError("CLIP takes RGB images; set data.grayscale=False")
    file = os.path.join(self.checkpoint, "preprocessor_config.json") if self.checkpoint else ""
    if not file or not os.path.isfile(file):
      return
    with open(file, encoding="utf-8") as f:
      processor = json.load(f)
    for name, key in (("mean", "image_mean"), ("std", "image_std")):
      want, got = processor.get(key), list(getattr(data_config, name))
      got = got * 3 if len(got) == 1 else got
      if want is not None and not np.allclose(want, got, atol=1e-6):
        raise ValueError(f"data.{name} is {tuple(got)}; the checkpoint {self.checkpoint} normalises with "
                         f"{key} {tuple(want)}: set --config.data.{name}=\"{tuple(want)}\"")

  @nn.nowrap
  def text_inputs(self) -> captions.CaptionTokens:
    """The pipeline's text stage: each example's caption as this CLIP's token ids."""
    return captions.CaptionTokens(self.tokenizer_dir, self.clip_config.text.context_length)

  @nn.nowrap
  def export(self, params: dict, directory: str, image_mean: Sequence[float], image_std: Sequence[float]) -> str:
    """Writes ``params['clip']`` as a Hugging Face CLIP folder with the tokenizer and image processor.

    ``image_mean`` / ``image_std`` are the per-channel normalisation the model was trained with (one
    value is broadcast to the three channels).
    """
    os.makedirs(directory, exist_ok=True)
    pretrained_lib.save_pretrained(clip_lib.CLIP(self.clip_config), params["clip"], directory)
    for name in TOKENIZER_FILES:
      source = os.path.join(self.tokenizer_dir, name)
      if os.path.isfile(source) and os.path.abspath(source) != os.path.abspath(os.path.join(directory, name)):
        shutil.copyfile(source, os.path.join(directory, name))
    channels = lambda v: [float(x) for x in (list(v) * 3 if len(v) == 1 else v)]
    pretrained_lib.save_image_processor(directory, self.clip_config.vision.image_size, channels(image_mean),
                                        channels(image_std))
    return directory


# ------------------------------------------------------------------------------------------ building


def caption_tokenizer_dir(vocab_size: int = 1024, context_length: int = 32,
                          cache_dir: Optional[str] = None) -> str:
  """The folder of the face captions' CLIP tokenizer (``fairjax.clip.tokenizer.caption_corpus``).

  Built once per corpus and settings into ``cache_dir`` (default fairjax's cache folder,
  ``paths.cache_root()``; with the cache off, a temporary folder), named by a hash of both, and written to a scratch folder first and renamed into
  place, so concurrent runs never read a half-written tokenizer.
  """
  from fairjax.clip import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  corpus = tokenizer_lib.caption_corpus()
  key = hashlib.sha256("\n".join([*corpus, str(vocab_size), str(context_length)]).encode()).hexdigest()[:16]
  root = cache_dir or paths.cache_root() or tempfile.mkdtemp(prefix="fairjax-tokenizer-")
  folder = os.path.join(root, "caption_tokenizer", key)
  if not os.path.isfile(os.path.join(folder, "merges.txt")):
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    scratch = tempfile.mkdtemp(dir=os.path.dirname(folder))
    tokenizer_lib.build_tokenizer(corpus, scratch, vocab_size, min_frequency=1, context_length=context_length)
    try:
      os.rename(scratch, folder)
    except OSError:  # another process put it there first
      shutil.rmtree(scratch, ignore_errors=True)
  return folder


def _fresh_config(architecture: Mapping[str, Any], tokenizer, image_size: int) -> clip_lib.CLIPConfig:
  """A ``CLIPConfig`` from ``architecture`` (its fields, towers as dicts), sized to the data and tokenizer."""
  fields = {k: dict(v) if isinstance(v, Mapping) else v for k, v in dict(architecture).items()}
  known = {f.name for f in dataclasses.fields(clip_lib.CLIPConfig)}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f"architecture has unknown field(s) {unknown}; CLIPConfig fields: {sorted(known)}")
  vision = dict(fields.pop("vision", {}))
  text = dict(fields.pop("text", {}))
  for name, tower, cls in (("vision", vision, clip_lib.VisionConfig), ("text", text, clip_lib.TextConfig)):
    bad = sorted(set(tower) - {f.name for f in dataclasses.fields(cls)})
    if bad:
      raise ValueError(f"architecture.{name} has unknown field(s) {bad}")
  if vision.setdefault("image_size", image_size) != image_size:
    raise ValueError(f"architecture.vision.image_size {vision['image_size']} differs from the data's "
                     f"image size {image_size}; set data.image_size instead")
  for key in ("vocab_size", "eos_token_id", "pad_token_id", "bos_token_id"):
    if key in text:
      raise ValueError(f"architecture.text.{key} comes from the tokenizer; do not set it")
  text.update(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
              bos_token_id=tokenizer.bos_token_id)
  return clip_lib.CLIPConfig(vision=clip_lib.VisionConfig(**vision), text=clip_lib.TextConfig(**text), **fields)


@registry.register("clip_zero_shot")
def clip_zero_shot(input_shape: Sequence[int] = (64, 64, 3), checkpoint: str = "", tokenizer: str = "",
                   architecture: Optional[Mapping[str, Any]] = None, heads: Sequence[str] = ("gender",),
                   gender_prompts: Sequence[str] = DEFAULT_PROMPTS["gender"],
                   race_prompts: Sequence[str] = DEFAULT_PROMPTS["race"], vocab_size: int = 1024,
                   dtype: str = "float32") -> CLIPZeroShot:
  """CLIP with zero-shot ``heads`` ('gender', 'race'), from ``checkpoint`` or fresh from ``architecture``.

  Args:
    input_shape: (H, W, 3) of the data; a checkpoint's image size must match it.
    checkpoint: a Hugging Face CLIP folder (config.json, model.safetensors, tokenizer files), or "".
    tokenizer: a CLIP tokenizer folder; default the checkpoint's, or for a fresh model 'captions' (the
      face captions' BPE with ``vocab_size`` tokens, ``fairjax.clip.tokenizer``).
    architecture: fresh models only: ``CLIPConfig`` fields, e.g. ``{'vision': {'patch_size': 8,
      'width': 128, 'layers': 3, 'heads': 4, 'mlp_dim': 512}, 'text': {...}, 'projection_dim': 128}``;
      the image size comes from ``input_shape``, the vocabulary and special ids from the tokenizer.
    heads: which zero-shot heads to output (and train, under a head loss); the first is the primary.
    gender_prompts, race_prompts: names of the prompt sets of each head (``prompt_sets()``); several
      are ensembled.
    dtype: compute dtype, 'float32' or 'bfloat16' (parameters stay float32).
  """
  input_shape = tuple(int(s) for s in input_shape)
  if len(input_shape) != 3 or input_shape[0] != input_shape[1] or input_shape[2] != 3:
    raise ValueError(f"CLIP takes square RGB images; input_shape is {input_shape}")
  if dtype not in DTYPES:
    raise ValueError(f"dtype {dtype!r}: use one of {', '.join(DTYPES)}")
  heads = (heads,) if isinstance(heads, str) else tuple(heads)
  if not heads or len(set(heads)) != len(heads) or not set(heads) <= set(HEADS):
    raise ValueError(f"heads must be distinct names from {', '.join(HEADS)}, got {heads}")
  if checkpoint:
    if architecture:
      raise ValueError("a checkpoint fixes the architecture: give checkpoint or architecture, not both")
    checkpoint = os.path.abspath(os.path.expanduser(checkpoint))
    if not os.path.isdir(checkpoint):
      raise FileNotFoundError(f"CLIP checkpoint {checkpoint}: no such folder (train one with "
                              "configs/clip_synthetic.py, whose run writes WORKDIR/clip_checkpoint)")
    config = pretrained_lib.read_config(checkpoint)
    if config.vision.image_size != input_shape[0]:
      raise ValueError(f"the checkpoint takes {config.vision.image_size}x{config.vision.image_size} images; "
                       f"set data.image_size={config.vision.image_size} (the data are {input_shape[0]})")
    tokenizer_dir = os.path.abspath(tokenizer) if tokenizer else checkpoint
  else:
    architecture = dict(architecture or {})
    context = int(dict(architecture.get("text", {})).get("context_length", clip_lib.TextConfig.context_length))
    tokenizer_dir = (caption_tokenizer_dir(vocab_size, context) if tokenizer in ("", CAPTIONS_TOKENIZER)
                     else os.path.abspath(tokenizer))
  text_tokenizer = captions.load_tokenizer(tokenizer_dir)
  if not checkpoint:
    config = _fresh_config(architecture, text_tokenizer, input_shape[0])
  elif len(text_tokenizer) > config.text.vocab_size:
    raise ValueError(f"the tokenizer in {tokenizer_dir} has {len(text_tokenizer)} tokens; the checkpoint's "
                     f"vocabulary has {config.text.vocab_size}")
  head_sets = {"gender": gender_prompts, "race": race_prompts}
  bank = prompt_bank(text_tokenizer, {h: head_sets[h] for h in heads}, config.text.context_length)
  return CLIPZeroShot(clip_config=config, prompts=bank, heads=tuple(HEADS[h] for h in heads),
                      input_shape=input_shape, checkpoint=checkpoint, tokenizer_dir=tokenizer_dir,
                      dtype=DTYPES[dtype])
