"""The CLIP audit command's work, importable without its flags (``python -m fairjax.clip`` parses them).

One run audits a Hugging Face CLIP folder on one split of a face data set:

  1. the split's images are encoded in jitted batches: read through the data set loaders
     (``fairjax.data.datasets``, or an experiment config's ``data`` section so that a split is cut
     exactly as a training run cut it), processed as the checkpoint's image processor says
     (``fairjax.clip.images``), embedded by ``encode_image``; the embeddings are cached under
     ``OUT/embeddings/`` with a key of everything they depend on, so a rerun (another method, another
     prompt set) reads them back instead of encoding again;
  2. the prompt sets (``fairjax.clip.prompts``) are encoded and audited zero-shot
     (``fairjax.clip.zero_shot``), and the text-to-image retrieval bias of attribute-neutral queries is
     measured by gender and by race (``fairjax.metrics.retrieval``);
  3. each debiasing method is fitted on ``fit_split`` (never the audited split) and the audit and the
     retrieval are run again on the debiased embeddings.

Debiasing methods (all remove *gender*, as seed 000 §8.3 does):

  none               the model as it is
  subspace           seed 000 §8.3's ``h - α V Vᵀ h`` with V from Liang et al. 2020's defining sets
                     (``debias.defining_sets``): a male and a female image matched at random, and text
                     pairs that differ only in the gender word; applied to images and texts alike
  subspace_seed      the same with the seed's literal sets, one per gender and modality
                     (``debias.group_sets``). Centring each set by its own mean subtracts the
                     between-gender difference before the PCA, so V is the within-gender variation and
                     not the gender direction; it is reported beside ``subspace`` to show that
  prompt_projection  Chuang et al. 2023's ``P0``: the span of prompts that only describe gender is
                     projected out of every text embedding (images untouched)
  calibrated         Chuang et al.'s calibrated ``P0 (I + λ M)⁻¹`` with gender-swapped prompt pairs

The gender zero-shot classifier is itself made of gendered prompts, so a method that works removes
what it reads: its accuracy falling towards chance is the price the seed reports (0.958 → 0.778), and
the gender prompt sets whose class embeddings the projection annihilates are left out of that
method's audit, with a note, rather than audited on numerical noise.
"""

import dataclasses
import hashlib
import json
import os
import warnings
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from fairjax.clip import debias
from fairjax.clip import images as images_lib
from fairjax.clip import pretrained
from fairjax.clip import prompts
from fairjax.clip import zero_shot
from fairjax.data import datasets
from fairjax.data import experiment
from fairjax.data import pipeline
from fairjax.data import plans
from fairjax.data import schema
from fairjax.metrics import group_report as report_lib
from fairjax.metrics import retrieval

METHODS = ("none", "subspace", "subspace_seed", "prompt_projection", "calibrated")
SUBSPACE_METHODS = ("subspace", "subspace_seed")
PROMPT_GROUPS = ("seed003", "templated", "race")
DATASETS = ("synthetic_faces", "utkface", "fairface")
# Published image sides of the sets decoded at a fixed size: decoding at them leaves all resizing to
# the checkpoint's own processor. UTKFace: 23,705 images take 2.8 GB at 200x200.
NATIVE_SIZES = {"utkface": 200, "fairface": 224}
# Sets with one split, cut into train / validation / test as the experiments cut them ('holdout').
HOLDOUT_SETS = ("utkface",)
DESIRED = retrieval.DESIRED
# Below this length (of a unit text embedding after the projection) a class embedding is taken as
# annihilated: what is left is rounding, not a direction.
COLLAPSED_NORM = 1e-3
CACHE_DIR = "embeddings"


class CLIPAuditError(ValueError):
  """Bad input to the audit; the command prints it as one ``error:`` line."""


@dataclasses.dataclass(frozen=True)
class Options:
  """Everything a run depends on; ``python -m fairjax.clip --help`` describes each."""

  checkpoint: str
  output_dir: str
  dataset: str = "synthetic_faces"
  manual_dir: Optional[str] = None
  split: str = "test"
  num_examples: Optional[int] = None          # None: the whole split
  prompt_sets: tuple = PROMPT_GROUPS
  methods: tuple = METHODS                    # --debias
  fit_split: str = "validation"
  fit_per_group: int = 200                    # seed 000 §8.3: 200 images of each gender
  alpha: float = debias.DEFAULT_ALPHA
  variance: float = debias.DEFAULT_VARIANCE
  subspace_k: Optional[int] = None            # a fixed k instead of the variance rule
  lam: float = debias.DEFAULT_LAMBDA
  retrieval_k: tuple = (10, 100)
  retrieval_desired: str = "proportional"
  image_size: int = 0                         # decode side of utkface / fairface; 0: NATIVE_SIZES
  batch_size: int = 128
  num_resamples: int = 0
  seed: int = 0
  headline: Optional[str] = None              # gender set of the report's tables; default the ensemble
  plots: bool = True                          # each method's figures (most of a small run's time)
  groupings: tuple = zero_shot.GROUPINGS      # group reports of each set (race is always needed)
  embeddings_dir: Optional[str] = None        # the embedding cache; default OUT/embeddings
  data: Any = None                            # an experiment config's data section (ConfigDict)


@dataclasses.dataclass
class Rows:
  """The rows of one split: ``plan`` (source_index, labels) indexes the random-access ``source``."""

  split: str
  source: Sequence[dict]
  plan: pd.DataFrame
  skipped: list


@dataclasses.dataclass
class Embedded:
  """A split's image embeddings and labels (schema codes, -1 unknown), row for row."""

  embeddings: np.ndarray
  gender: np.ndarray
  race: np.ndarray
  source_index: np.ndarray
  from_cache: bool = False


@dataclasses.dataclass
class MethodResult:
  """One debiasing method's audit, retrieval bias and fit."""

  method: str
  audit: zero_shot.ZeroShotResult
  retrieval: dict           # attribute -> str(k) -> RetrievalBias.summary(); skipped k listed
  fit: dict                 # what was fitted, on what (JSON-able)
  left_out: dict            # prompt set -> why it was not audited under this method


# ------------------------------------------------------------------------------------------- options


def check_options(options: Options) -> Options:
  """``options`` with lists made tuples; every value checked before anything is loaded."""
  def listed(values, known, flag):
    values = tuple(dict.fromkeys(values))
    unknown = [v for v in values if v not in known]
    if unknown or not values:
      raise CLIPAuditError(f"--{flag} must name some of {', '.join(known)}, got {list(values) or 'nothing'}")
    return values

  prompt_sets = listed(options.prompt_sets, PROMPT_GROUPS, "prompt_sets")
  if not set(prompt_sets) & {"seed003", "templated"}:
    raise CLIPAuditError("--prompt_sets needs seed003 or templated: the audit is of gender zero-shot")
  methods = listed(options.methods, METHODS, "debias")
  if options.data is None and options.dataset not in datasets.names():
    raise CLIPAuditError(f"unknown data set {options.dataset!r}; known: {', '.join(DATASETS)}")
  if set(methods) & set(SUBSPACE_METHODS) and options.fit_split == options.split:
    raise CLIPAuditError(f"--fit_split is --split ({options.split!r}): the subspace must be fitted on "
                         "images the audit does not score")
  try:
    ks = tuple(sorted({int(k) for k in options.retrieval_k}))
  except (TypeError, ValueError):
    raise CLIPAuditError(f"--retrieval_k must be integers, got {list(options.retrieval_k)}") from None
  if not ks or ks[0] < 1:
    raise CLIPAuditError(f"--retrieval_k must be integers >= 1, got {list(options.retrieval_k)}")
  for name, value, low in (("num_examples", options.num_examples, 1), ("fit_per_group", options.fit_per_group, 2),
                           ("batch_size", options.batch_size, 1), ("subspace_k", options.subspace_k, 1),
                           ("image_size", options.image_size, 0), ("n_boot", options.num_resamples, 0)):
    if value is not None and int(value) < low:
      raise CLIPAuditError(f"--{name} must be >= {low}, got {value}")
  for name, value in (("alpha", options.alpha), ("lam", options.lam)):
    if not np.isfinite(value) or value < 0:
      raise CLIPAuditError(f"--{name} must be a finite number >= 0, got {value}")
  if not 0 < options.variance <= 1:
    raise CLIPAuditError(f"--subspace_variance must be in (0, 1], got {options.variance}")
  if options.retrieval_desired not in DESIRED:
    raise CLIPAuditError(f"--retrieval_desired must be one of {', '.join(DESIRED)}")
  groupings = tuple(dict.fromkeys(options.groupings))
  if "race" not in groupings or set(groupings) - set(zero_shot.GROUPINGS):
    raise CLIPAuditError(f"--groupings must be among {', '.join(zero_shot.GROUPINGS)} and include race, "
                         f"got {list(groupings)}")
  if not options.output_dir:
    raise CLIPAuditError("--output_dir is required")
  return dataclasses.replace(options, prompt_sets=prompt_sets, methods=methods, retrieval_k=ks,
                             groupings=groupings)


def prompt_sets(groups: Sequence[str]) -> dict[str, prompts.PromptSet]:
  """The prompt sets of the named groups (``PROMPT_GROUPS``), in that order."""
  out = {}
  for group in groups:
    if group == "seed003":
      out.update(prompts.seed003_sets())
    elif group == "templated":
      out.update(prompts.templated_gender_sets())
    elif group == "race":
      out["race"] = prompts.race_set()
    else:
      raise CLIPAuditError(f"unknown prompt set group {group!r}; known: {', '.join(PROMPT_GROUPS)}")
  return out


def gendered_text_pairs() -> list[tuple[str, str]]:
  """(male, female) texts that differ only in the gender word: the text half of the subspace fit.

  Liang et al.'s defining sets for sentences; seed 000 took 200 gendered texts of each gender from
  MDGender, which is not available here. None of these is a zero-shot prompt, so the subspace is not
  fitted on the very texts it is then judged with.
  """
  pairs = prompts.gender_pairs()
  for race in prompts.RACE_WORDS:
    for male, female in (("man", "woman"), ("boy", "girl")):
      pairs.append((f"a photo of {race} {male}.", f"a photo of {race} {female}."))
  return pairs


# ------------------------------------------------------------------------------------------ loading


def load_checkpoint(path: str):
  """``(model, params, processor)`` of a HF CLIP folder; unreadable folders are a CLIPAuditError."""
  try:
    model, params = pretrained.from_pretrained(path)
    processor = pretrained.load_processor(path)
    transform = images_lib.ImageTransform.from_processor(processor.image_processor)
  except (OSError, ValueError) as e:  # FileNotFoundError is an OSError; transformers raises OSError too
    raise CLIPAuditError(f"checkpoint {path}: {e}") from e
  return model, params, processor, transform


def checkpoint_fingerprint(path: str) -> str:
  """sha256 of the folder's config, weight, tokenizer and processor files (names and contents)."""
  digest = hashlib.sha256()
  for name in sorted(os.listdir(path)):
    file = os.path.join(path, name)
    if os.path.isfile(file) and name.endswith((".json", ".safetensors", ".txt")):
      digest.update(name.encode())
      with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
          digest.update(chunk)
  return digest.hexdigest()


def _data_config(options: Options):
  """The data section a split is cut from: the given one, or UTKFace's holdout cut of the experiments."""
  size = options.image_size or NATIVE_SIZES.get(options.dataset, 64)
  if options.data is not None:
    data = options.data.copy_and_resolve_references()
    if options.image_size and data.name in NATIVE_SIZES:
      data.image_size = options.image_size
    return data
  if options.dataset not in HOLDOUT_SETS:
    return None
  data = experiment.default_config()
  data.name, data.manual_dir, data.splits, data.image_size = options.dataset, options.manual_dir, "holdout", size
  return data


class SplitLoader:
  """Loads splits on demand, building an experiment data section at most once (UTKFace decodes once)."""

  def __init__(self, options: Options):
    self.options = options
    self.data = _data_config(options)
    self._built = None

  def describe(self) -> dict:
    """What the rows depend on besides the split name (part of the embedding cache key)."""
    o = self.options
    return {"dataset": self.data.name if self.data is not None else o.dataset,
            "manual_dir": os.path.abspath(o.manual_dir) if o.manual_dir else None,
            "image_size": o.image_size or NATIVE_SIZES.get(o.dataset),
            "data": json.loads(self.data.to_json_best_effort()) if self.data is not None else None}

  def load(self, split: str, num_examples: Optional[int] = None) -> Rows:
    o = self.options
    try:
      if self.data is not None:
        if self._built is None:
          self._built = experiment.build(self.data)
        if split not in self._built:
          raise ValueError(f"no split {split!r}; the config's splits are {', '.join(self._built)}")
        part = self._built[split]
        rows = Rows(split, part.source, part.plan, part.skipped)
      else:
        kwargs = {}
        if o.dataset == "synthetic_faces":
          kwargs["num_examples"] = num_examples
        else:
          kwargs["manual_dir"] = o.manual_dir
          if o.dataset in NATIVE_SIZES:
            size = o.image_size or NATIVE_SIZES[o.dataset]
            kwargs["image_size"] = (size, size)
        loaded = datasets.load(o.dataset, split, **kwargs)
        rows = Rows(split, loaded.source, plans.as_plan(loaded.metadata), loaded.skipped)
    except (OSError, ValueError, KeyError) as e:
      raise CLIPAuditError(f"{self.describe()['dataset']} split {split!r}: {e}") from e
    if num_examples is not None and len(rows.plan) > num_examples:
      rows.plan = rows.plan.sample(n=num_examples, random_state=o.seed).sort_index()
    if rows.plan.empty:
      raise CLIPAuditError(f"{self.describe()['dataset']} split {split!r} has no images")
    return rows


def check_labels(rows: Rows, what: str) -> None:
  """The audit needs gender and race labels: a split without either is an error."""
  for attribute in ("gender", "race"):
    if not (rows.plan[attribute].to_numpy() >= 0).any():
      raise CLIPAuditError(f"{what} split {rows.split!r} has no {attribute} labels (all unknown); the audit "
                           f"scores gender zero-shot by race and gender")


def fit_rows(rows: Rows, per_group: int, seed: int) -> Rows:
  """Up to ``per_group`` images of each gender, drawn with ``seed`` (seed 000 §8.3: 200 + 200)."""
  gender = rows.plan["gender"].to_numpy()
  rng = np.random.default_rng(seed)
  keep = []
  for code, name in enumerate(schema.GENDERS):
    members = np.flatnonzero(gender == code)
    if members.size < 2:
      raise CLIPAuditError(f"fit split {rows.split!r} has {members.size} {name} image(s); the subspace is "
                           "fitted on images of both genders (at least 2 of each)")
    keep.append(np.sort(rng.permutation(members)[:per_group]))
  return dataclasses.replace(rows, plan=rows.plan.iloc[np.concatenate(keep)])


# ----------------------------------------------------------------------------------------- encoding


def encode_rows(rows: Rows, encode, batch_size: int) -> Embedded:
  """Every plan row's embedding, in plan order, in fixed-size batches (one compiled shape)."""
  first = np.asarray(rows.source[int(rows.plan["source_index"].iloc[0])]["image"])
  preprocess = pipeline.Preprocess(image_size=first.shape[:2])  # no resize: the transform does it
  plan = rows.plan.reset_index(drop=True)
  out = []
  for batch in pipeline.eval_batches(rows.source, global_batch_size=batch_size, preprocess=preprocess,
                                     plan=plan, num_threads=2):
    out.append(encode(batch["image"])[np.asarray(batch["mask"])])
  embeddings = np.concatenate(out).astype(np.float32)
  return Embedded(embeddings, plan["gender"].to_numpy(np.int32), plan["race"].to_numpy(np.int32),
                  plan["source_index"].to_numpy(np.int64))


def read_cache(path: str, key: dict) -> Optional[Embedded]:
  """The embeddings in ``path`` if they were written for ``key`` (else None: absent, stale or torn)."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as saved:
      if str(saved["key"]) == json.dumps(key, sort_keys=True):
        return Embedded(saved["embeddings"], saved["gender"], saved["race"], saved["source_index"], True)
  except (OSError, ValueError, KeyError):  # a torn or foreign file: encode again
    pass
  return None


def write_cache(path: str, key: dict, embedded: Embedded) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  staging = path + ".partial.npz"
  np.savez(staging, key=np.asarray(json.dumps(key, sort_keys=True)), embeddings=embedded.embeddings,
           gender=embedded.gender, race=embedded.race, source_index=embedded.source_index)
  os.replace(staging, path)


# ----------------------------------------------------------------------------------------- debiasing


@dataclasses.dataclass
class Texts:
  """Unit text embeddings of everything a run compares or fits with."""

  classes: dict                 # prompt set -> [C, D]
  queries: np.ndarray           # neutral retrieval queries [Q, D]
  biased: np.ndarray            # Chuang et al.'s gender-only prompts [M, D]
  pairs: np.ndarray             # gender-swapped prompt pairs [S, 2, D] (calibration)
  gendered: np.ndarray          # gendered_text_pairs() [P, 2, D] (subspace fit)


def embed_texts(sets: dict, encode_text) -> Texts:
  classes = prompts.embed_prompt_sets(sets, encode_text)
  pairs = prompts.gender_pairs()
  gendered = gendered_text_pairs()
  flat = (prompts.neutral_queries() + list(prompts.GENDER_BIAS_PROMPTS) + [t for p in pairs for t in p]
          + [t for p in gendered for t in p])
  unique = list(dict.fromkeys(flat))
  table = prompts.embed_texts(unique, encode_text)
  row = {t: i for i, t in enumerate(unique)}
  take = lambda texts: table[[row[t] for t in texts]]
  dim = table.shape[1]
  return Texts(classes, take(prompts.neutral_queries()), take(prompts.GENDER_BIAS_PROMPTS),
               take([t for p in pairs for t in p]).reshape(-1, 2, dim),
               take([t for p in gendered for t in p]).reshape(-1, 2, dim))


def fit_subspace(method: str, fit: Embedded, texts: Texts, options: Options) -> debias.Subspace:
  """Seed 000 §8.3's subspace from the fit images and the gendered text pairs."""
  text = texts.gendered.reshape(-1, texts.gendered.shape[-1])
  text_gender = np.tile(np.asarray([0, 1]), texts.gendered.shape[0])
  embeddings = np.concatenate([fit.embeddings, text])
  if method == "subspace":  # one member of each gender per set: random image pairs, natural text pairs
    image_sets = debias.defining_sets(fit.gender, seed=options.seed)
    text_sets = np.repeat(np.arange(texts.gendered.shape[0]), 2) + image_sets.max() + 1
    set_ids = np.concatenate([image_sets, text_sets])
  else:  # the seed's wording: one set per gender and modality
    modality = np.concatenate([np.zeros(len(fit.gender), np.int64), np.ones(len(text_gender), np.int64)])
    set_ids = debias.group_sets(np.concatenate([fit.gender, text_gender]).astype(np.int64), modality)
  try:
    return debias.fit_subspace(embeddings, set_ids, variance=options.variance, k=options.subspace_k,
                               alpha=options.alpha)
  except ValueError as e:
    raise CLIPAuditError(f"{method}: {e}") from e


def apply_method(method: str, x: np.ndarray, texts: Texts, fit: Optional[Embedded], options: Options):
  """``(image embeddings, class embeddings by set, queries, fit description, left-out sets)``."""
  if method == "none":
    return x, dict(texts.classes), texts.queries, {}, {}
  if method in SUBSPACE_METHODS:
    subspace = fit_subspace(method, fit, texts, options)
    info = {"sets": "defining (Liang et al. 2020)" if method == "subspace" else "one per gender and modality "
                                                                                 "(seed 000's wording)",
            "fit_images": int(len(fit.gender)),
            "fit_images_by_gender": {g: int((fit.gender == i).sum()) for i, g in enumerate(schema.GENDERS)},
            "text_pairs": int(texts.gendered.shape[0]), "k": subspace.k, "alpha": subspace.alpha,
            "dimension": int(x.shape[1]),
            "variance_at_k": float(subspace.cumulative_variance[subspace.k - 1]),
            "explained_variance_ratio": subspace.explained_variance_ratio[:20].tolist(),
            "variance_rule": options.variance if options.subspace_k is None else None}
    classes = {n: np.asarray(subspace.apply(c)) for n, c in texts.classes.items()}
    return np.asarray(subspace.apply(x)), classes, np.asarray(subspace.apply(texts.queries)), info, {}
  pairs = texts.pairs if method == "calibrated" else None
  projection = debias.fit_biased_prompts(texts.biased, pairs, lam=options.lam)
  info = {"biased_prompts": list(prompts.GENDER_BIAS_PROMPTS), "pairs": int(projection.num_pairs),
          "lambda": projection.lam, "applied_to": "text embeddings only"}
  classes, left_out = {}, {}
  for name, c in texts.classes.items():
    unit = c / np.linalg.norm(c, axis=1, keepdims=True)
    norms = np.linalg.norm(unit @ projection.matrix.T, axis=1)
    if (norms < COLLAPSED_NORM).any():
      left_out[name] = (f"the projection leaves class embedding(s) of length {norms.min():.1e}: the class "
                        "prompts lie in the span of the biased prompts, so no classifier is left")
      continue
    classes[name] = np.asarray(projection.apply(c))
  return x, classes, np.asarray(projection.apply(texts.queries)), info, left_out


def retrieval_bias(queries, x, gender, race, ks, desired) -> dict:
  """Per attribute and k, the retrieval bias of ``queries`` over the images labelled with it."""
  out = {}
  for attribute, labels, names in (("gender", gender, schema.GENDERS), ("race", race, schema.RACES)):
    known = labels >= 0
    out[attribute] = {}
    for k in ks:
      if k > int(known.sum()):
        out[attribute][str(k)] = {"skipped": f"k = {k} exceeds the {int(known.sum())} images labelled with "
                                             f"{attribute}"}
        continue
      figures = retrieval.bias_at_k(queries, x[known], labels[known].astype(np.int32), k=k,
                                    num_groups=len(names), desired=desired)
      out[attribute][str(k)] = figures.summary(names)
  return out


# -------------------------------------------------------------------------------------------- a run


def run(options: Options, log=print) -> dict:
  """The whole audit: files under ``options.output_dir``; returns what ``OUT/summary.json`` holds."""
  from fairjax.clip import checkpoint_audit_report  # pylint: disable=g-import-not-at-top  (matplotlib)
  options = check_options(options)
  sets = prompt_sets(options.prompt_sets)
  gender_sets = [n for n, s in sets.items() if s.attribute == "gender"]
  gender_sets += ["ensemble"] if len(gender_sets) > 1 else []
  if options.headline and options.headline not in gender_sets:
    raise CLIPAuditError(f"--headline_set {options.headline!r} is no gender set of the audit; sets: "
                         f"{', '.join(gender_sets)}")
  model, params, processor, transform = load_checkpoint(options.checkpoint)
  encode = images_lib.image_encoder(model, params, transform)
  loader = SplitLoader(options)
  base_key = {"checkpoint": checkpoint_fingerprint(options.checkpoint), "transform": repr(transform),
              **loader.describe(), "seed": options.seed}
  cache = options.embeddings_dir or os.path.join(options.output_dir, CACHE_DIR)

  def encoded(rows, path, key, what=""):
    log(f"encoding {len(rows.plan)} images of {base_key['dataset']} {rows.split}{what} ...")
    embedded = encode_rows(rows, encode, options.batch_size)
    write_cache(path, key, embedded)
    return embedded

  # Every split is loaded and checked before any is encoded, so that bad input fails at once.
  audited_key = {**base_key, "split": options.split, "num_examples": options.num_examples}
  audited_path = os.path.join(cache, f"{options.split}.npz")
  audited = read_cache(audited_path, audited_key)
  audited_rows = None
  if audited is None:
    audited_rows = loader.load(options.split, options.num_examples)
    check_labels(audited_rows, base_key["dataset"])
  fit = fit_selection = None
  if set(options.methods) & set(SUBSPACE_METHODS):
    fit_key = {**base_key, "split": options.fit_split, "per_group": options.fit_per_group}
    fit_path = os.path.join(cache, f"fit_{options.fit_split}.npz")
    fit = read_cache(fit_path, fit_key)
    if fit is None:
      fit_selection = fit_rows(loader.load(options.fit_split), options.fit_per_group, options.seed)
  if audited_rows is not None:
    audited = encoded(audited_rows, audited_path, audited_key)
  if fit_selection is not None:
    fit = encoded(fit_selection, fit_path, fit_key, " to fit on")
  if not ((audited.gender >= 0) & (audited.race >= 0)).any():
    raise CLIPAuditError(f"no image of split {options.split!r} has both a gender and a race label")
  encode_text = prompts.clip_text_encoder(model, params, processor, batch_size=64)
  try:
    texts = embed_texts(sets, encode_text)
  except ValueError as e:
    raise CLIPAuditError(f"prompt embeddings: {e}") from e
  logit_scale = float(np.asarray(params["logit_scale"]))

  results = {}
  for method in options.methods:
    x, classes, queries, info, left_out = apply_method(method, audited.embeddings, texts, fit, options)
    if not any(c.shape[0] == 2 for c in classes.values()):
      raise CLIPAuditError(f"{method}: no gender prompt set is left to audit ({left_out})")
    with warnings.catch_warnings():  # undefined figures are listed in each summary.json
      warnings.simplefilter("ignore", report_lib.FairnessWarning)
      result = zero_shot.evaluate(x, audited.gender, audited.race, classes, logit_scale,
                               groupings=options.groupings, num_resamples=options.num_resamples,
                               seed=options.seed)
    bias = retrieval_bias(queries, x, audited.gender, audited.race, options.retrieval_k,
                          options.retrieval_desired)
    results[method] = MethodResult(method, result, bias, info, left_out)
    checkpoint_audit_report.write_method(results[method], os.path.join(options.output_dir, method), options.plots)
  summary = checkpoint_audit_report.summarise(results, options, base_key, len(audited.gender),
                                   fit_size=None if fit is None else len(fit.gender),
                                   from_cache=audited.from_cache)
  checkpoint_audit_report.write_summary(summary, options.output_dir)
  return summary
