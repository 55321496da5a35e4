"""The ``data`` section of an experiment config, and the splits a training run reads from it.

``build(config.data)`` loads the data set, cuts it into splits by the configured scheme and applies the
configured treatments to the training plan:

  natural  the data set's own train / validation / test splits (the synthetic faces; not UTKFace,
           which has one split)
  holdout  seed 000 §6.1.2: the one loaded split cut into train / validation / test, each stratified
           by ``stratify_by`` (default 72 / 8 / 20: 80:20, then a tenth of training for validation)
  bias     seed 004 §3.1: train on BD (young women and old men) minus a stratified validation slice;
           evaluate on EBD (equal men and women per 4-year bin, drawn from held-out images) and on
           BD_complement (young men and old women); 'test' is EBD. With ``bias.side_size`` > 0 the
           training split also holds seed 004's separate gender data set (``treatments.gender_set``,
           drawn from the loaded images that ``subset_size`` left out): its rows carry gender and hide
           age, BD's training rows carry age and hide gender, so the age head learns from BD only and
           the gender head (the one unlearning confuses) from faces whose age says nothing of gender.
           With ``bias.gender_set_size`` > 0 that many rows of the same gender data set (the same draw:
           equal sizes give the same rows; -1: every row it can hold) are the extra split
           'gender_set', evaluated only where ``eval.splits`` names it: faces where age says nothing
           of gender, to fit on them what should read gender alone (a concept eraser,
           ``experiments/seed004_erasure.py``)
  kfold    seed 000 §8.1.2: the one loaded split cut into ``kfold.k`` folds stratified by ``stratify_by``;
           fold ``kfold.fold`` is the test split, and a stratified ``kfold.validation_fraction`` of the
           other folds validates (run fold = 0 .. k-1 for the K-fold estimate)
  balanced seed 000 §8.2: the splits of ``balanced.base`` ('natural' or 'holdout'), then exactly
           ``balanced.per_class[split]`` images of every class of ``balanced.by`` drawn from the
           named splits (1,000 women and 1,000 men to train, 200 of each to validate); the other
           splits are kept whole (its ~5,000 test images are UTKFace's 20 % holdout)

``subset_size`` first draws that many images in proportion to ``stratify_by`` (seed 000 §6.1: 8,000) from
the split that is cut (for 'natural', from the training split). Filters (``filters.names()``) then keep
the rows of the population studied in every split alike (seed 001: no one under 16). Treatments
(``treatments.names()``) last change only the training plan, so every evaluation split keeps its natural
distribution.
Everything is a pure function of the config: each stage draws from (``seed``, stage).
"""

import dataclasses
from typing import Sequence

import ml_collections
from ml_collections import config_dict
import numpy as np
import pandas as pd

from fairjax.data import augment
from fairjax.data import datasets
from fairjax.data import describe
from fairjax.data import filters as filters_lib
from fairjax.data import plans
from fairjax.data import synthetic_faces
from fairjax.data import treatments
from fairjax.registry import Registry

# Seed stages: each random step of ``build`` draws from (config.seed, stage), independently of the others.
_SUBSET, _SPLIT, _BIAS, _TREATMENTS, _BALANCE, _GENDER_SET = range(6)
SPLIT_NAMES = ("train", "validation", "test")


@dataclasses.dataclass
class DataSplit:
  """What a run reads for one split: ``plan`` rows index the random-access ``source`` (see ``plans``).

  ``skipped`` lists the data set's unusable files ({"file", "reason"}), for reports.
  """

  source: Sequence[dict]
  plan: pd.DataFrame
  name: str
  skipped: list[dict] = dataclasses.field(default_factory=list)


def default_config() -> ml_collections.ConfigDict:
  """The data section of an experiment config; ``base_config().data``."""
  config = ml_collections.ConfigDict()
  config.name = "synthetic_faces"  # a registered data set (datasets.names())
  # Folder or archive of a manually downloaded set (utkface: UTKFace.tar.gz or the UTKFace/ folder).
  config.manual_dir = config_dict.placeholder(str)
  config.image_size = 64  # square side the host pipeline resizes to (seed 000 §6.3 used 100)
  config.grayscale = False  # one luma channel instead of RGB (seed 000 §6.3)
  # Per-channel normalisation after augmentation: (x - mean) / std with x in [0, 1]; one value for all
  # channels or one per channel. The defaults leave plain [0, 1] scaling (seed 000 §6.1.2).
  config.mean = (0.0,)
  config.std = (1.0,)
  config.augment = augment.default_config()  # on-device training and copy augmentation
  config.num_examples = ml_collections.ConfigDict(dict(train=8000, validation=1000, test=2000))  # synthetic
  # Synthetic faces: ``preset`` ('default': group 1 scarce and hard to see in training; 'balanced';
  # 'age_gender_spurious': seed 004's BD as training, its complement as test) plus any
  # SyntheticFacesConfig field (e.g. seed, difficulty) or the preset's own arguments (strength).
  config.synthetic = ml_collections.ConfigDict(dict(preset="default"))
  config.splits = "natural"  # 'natural', 'holdout' or 'bias' (see the module docstring)
  config.subset_size = 0  # 0: everything; seed 000 §6.1 drew 8000
  config.stratify_by = ("age_band", "gender")  # metadata columns, or 'age_band' (10-year bands)
  config.holdout_fractions = ml_collections.ConfigDict(dict(train=0.72, validation=0.08, test=0.2))
  # 'bias': the share of the 16-71 year-olds held out to draw EBD from, and of BD kept for validation;
  # side_size > 0 adds that many rows of a separate gender data set to training (see the docstring);
  # gender_set_size > 0 offers that many rows of the same set as the split 'gender_set' (-1: all it can).
  config.bias = ml_collections.ConfigDict(dict(ebd_fraction=0.2, validation_fraction=0.1, side_size=0,
                                               gender_set_size=0))
  # 'kfold': k folds, the one tested, and the share of the others kept for validation.
  config.kfold = ml_collections.ConfigDict(dict(k=5, fold=0, validation_fraction=0.1))
  # 'balanced': the scheme cut first, the attribute balanced and the images per class of each split.
  config.balanced = ml_collections.ConfigDict(dict(
      base="holdout", by="gender", per_class=ml_collections.ConfigDict(dict(train=1000, validation=200))))
  # Registered row filters (``filters.names()``) applied to every split, evaluation splits included, by
  # name with their options: filters.min_age = dict(age=16) drops the under-16s everywhere.
  config.filters = ml_collections.ConfigDict()
  config.treatments = ()  # registered treatments applied to the training plan in order
  # Options of each treatment, by name (the registered defaults, listed so they can be overridden).
  config.treatment_options = ml_collections.ConfigDict(
      {name: dict(treatments.get(name).defaults) for name in treatments.names()})
  config.seed = 0
  return config


# -------------------------------------------------------------------------------------------- loading

def _balanced(**kwargs) -> synthetic_faces.SyntheticFacesConfig:
  """Every split like the default test split: groups equally frequent and equally visible."""
  kwargs.setdefault("train", synthetic_faces.Sampling())
  kwargs.setdefault("difficulty", (0.0,) * synthetic_faces.NUM_GROUPS)
  return synthetic_faces.SyntheticFacesConfig(**kwargs)


SYNTHETIC_PRESETS = {
    "default": synthetic_faces.SyntheticFacesConfig,
    "balanced": _balanced,
    "age_gender_spurious": synthetic_faces.age_gender_spurious_config,
}
_SIZED_SETS = ("utkface", "fairface")  # sets decoded at ``image_size`` when loaded


def _load(config, split: str) -> datasets.Split:
  if config.name == "synthetic_faces":
    options = dict(config.synthetic)
    preset = options.pop("preset", "default")
    if preset not in SYNTHETIC_PRESETS:
      raise ValueError(f"unknown synthetic preset {preset!r}; known: {', '.join(SYNTHETIC_PRESETS)}")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    faces = SYNTHETIC_PRESETS[preset](image_size=config.image_size, **options)
    return datasets.load("synthetic_faces", split, num_examples=config.num_examples[split], config=faces)
  if config.name not in datasets.names():
    raise ValueError(f"unknown data set {config.name!r}; known: {', '.join(datasets.names())}")
  if not config.manual_dir:
    raise ValueError(f"data.name={config.name!r} cannot be downloaded: set data.manual_dir to the manually "
                     f"downloaded files (only synthetic_faces needs none)")
  options = {"manual_dir": config.manual_dir}
  if config.name in _SIZED_SETS:
    options["image_size"] = (config.image_size, config.image_size)
  return datasets.load(config.name, split, **options)


def _subset(config, plan: pd.DataFrame) -> pd.DataFrame:
  if not config.subset_size:
    return plan
  return treatments.stratified_subset(plan, config.subset_size, tuple(config.stratify_by), (config.seed, _SUBSET))


# -------------------------------------------------------------------------------------------- schemes

_SCHEMES = Registry("split scheme")


@_SCHEMES.register("natural")
def _natural(config) -> dict[str, DataSplit]:
  out = {}
  for name in SPLIT_NAMES:
    try:
      loaded = _load(config, name)
    except ValueError as e:
      if name == "train":
        raise
      raise ValueError(f"splits='natural' needs the data set's own {name!r} split: {e}; "
                       f"use splits='holdout' or 'bias' to cut one split instead") from e
    plan = plans.as_plan(loaded.metadata)
    out[name] = DataSplit(loaded.source, _subset(config, plan) if name == "train" else plan, name, loaded.skipped)
  return out


@_SCHEMES.register("holdout")
def _holdout(config) -> dict[str, DataSplit]:
  loaded = _load(config, "train")
  fractions = dict(config.holdout_fractions)
  if set(fractions) != set(SPLIT_NAMES):
    raise ValueError(f"data.holdout_fractions needs exactly {', '.join(SPLIT_NAMES)}, got {', '.join(fractions)}")
  parts = treatments.stratified_split(_subset(config, plans.as_plan(loaded.metadata)), fractions,
                                      tuple(config.stratify_by), (config.seed, _SPLIT))
  return {name: DataSplit(loaded.source, parts[name], name, loaded.skipped) for name in SPLIT_NAMES}


@_SCHEMES.register("bias")
def _bias(config) -> dict[str, DataSplit]:
  loaded = _load(config, "train")
  sets = treatments.bias_splits(_subset(config, plans.as_plan(loaded.metadata)), (config.seed, _BIAS),
                                ebd_fraction=config.bias.ebd_fraction)
  fraction = config.bias.validation_fraction
  bd = treatments.stratified_split(sets["BD"], {"train": 1.0 - fraction, "validation": fraction},
                                   tuple(config.stratify_by), (config.seed, _SPLIT))
  plans_by_name = {**bd, "test": sets["EBD"], "EBD": sets["EBD"], "BD_complement": sets["BD_complement"]}
  loaded_plan = plans.as_plan(loaded.metadata)
  if config.bias.side_size:
    # BD's training rows with gender hidden, then the gender data set's rows with age hidden.
    side = _gender_set(loaded_plan, sets["OD"], config, "side_size")
    plans_by_name["train"] = pd.concat([bd["train"].assign(gender=-1), side.assign(age=-1)], ignore_index=True)
  if config.bias.gender_set_size:
    plans_by_name["gender_set"] = _gender_set(loaded_plan, sets["OD"], config, "gender_set_size")
  return {name: DataSplit(loaded.source, plan, name, loaded.skipped) for name, plan in plans_by_name.items()}


def _gender_set(loaded: pd.DataFrame, od: pd.DataFrame, config, size_key: str) -> pd.DataFrame:
  """``config.bias[size_key]`` rows of seed 004's gender data set (``treatments.gender_set``), drawn from
  the loaded images outside the experiment (not in OD's subset)."""
  if not config.subset_size:
    raise ValueError(f"data.bias.{size_key} draws the gender data set from the images that data.subset_size "
                     "leaves out; set subset_size (with every image in OD, none is left)")
  outside = loaded[~loaded["source_index"].isin(od["source_index"])]
  return treatments.gender_set(outside, int(config.bias[size_key]), (config.seed, _GENDER_SET))


@_SCHEMES.register("kfold")
def _kfold(config) -> dict[str, DataSplit]:
  loaded = _load(config, "train")
  k, fold, fraction = int(config.kfold.k), int(config.kfold.fold), float(config.kfold.validation_fraction)
  if not 0 <= fold < k:
    raise ValueError(f"data.kfold.fold must lie in [0, {k}), got {fold}")
  if not 0 < fraction < 1:
    raise ValueError(f"data.kfold.validation_fraction must lie in (0, 1), got {fraction}")
  by = tuple(config.stratify_by)
  folds = treatments.stratified_kfold(_subset(config, plans.as_plan(loaded.metadata)), k, by, (config.seed, _SPLIT))
  parts = treatments.stratified_split(folds[fold]["train"], {"train": 1.0 - fraction, "validation": fraction},
                                      by, (config.seed, _SPLIT, fold))
  parts["test"] = folds[fold]["test"]
  return {name: DataSplit(loaded.source, parts[name], name, loaded.skipped) for name in SPLIT_NAMES}


def per_class_subset(plan: pd.DataFrame, n: int, by: str, seed: plans.Seed) -> pd.DataFrame:
  """Exactly ``n`` source images (with their rows) of every known class of ``by``, drawn at random."""
  plans.require(plan, [by], f"balancing by {by!r}")
  rng = plans.generator(seed)
  first = plan.drop_duplicates("source_index")
  keep = []
  for value in sorted(v for v in first[by].unique() if v >= 0):
    sources = first.loc[first[by] == value, "source_index"].to_numpy()
    if len(sources) < n:
      raise ValueError(f"balancing by {by}: class {value} has {len(sources)} images, fewer than {n}")
    keep.append(rng.choice(sources, n, replace=False))
  if not keep:
    raise ValueError(f"balancing by {by}: no row has a known {by}")
  return plans.nonempty(plan[plan["source_index"].isin(np.concatenate(keep))], f"balancing by {by}")


@_SCHEMES.register("balanced")
def _balanced(config) -> dict[str, DataSplit]:
  base = config.balanced.base
  if base not in ("natural", "holdout"):
    raise ValueError(f"data.balanced.base must be 'natural' or 'holdout', got {base!r}")
  splits = _SCHEMES.get(base)(config)
  for i, (name, n) in enumerate(sorted(dict(config.balanced.per_class).items())):
    if name not in splits:
      raise ValueError(f"data.balanced.per_class names {name!r}; the {base} splits are {sorted(splits)}")
    splits[name].plan = per_class_subset(splits[name].plan, int(n), config.balanced.by, (config.seed, _BALANCE, i))
  return splits


def schemes() -> tuple[str, ...]:
  return _SCHEMES.names()


def build(config) -> dict[str, DataSplit]:
  """The splits of ``config`` (a data section): 'train', 'validation', 'test', plus the scheme's extra
  evaluation splits ('bias': 'EBD', 'BD_complement', and 'gender_set' where asked for). Names are checked
  before anything is loaded."""
  scheme = _SCHEMES.get(config.splits)
  names = tuple(config.treatments)
  for name in names:
    treatments.get(name)
  row_filters = {name: options.to_dict() if isinstance(options, ml_collections.ConfigDict) else options
                 for name, options in config.get("filters", {}).items()}
  filters_lib.check(row_filters)
  splits = scheme(config)
  for name, split in splits.items():
    split.plan = filters_lib.apply(split.plan, row_filters, name)
  train = splits["train"]
  options = {name: dict(config.treatment_options.get(name, {})) for name in names}
  train.plan = treatments.apply(train.plan, names, (config.seed, _TREATMENTS), options)
  return splits


def describe_plan(split: DataSplit) -> dict:
  """The statistics of a split's plan, in the data command's format (``describe.dataset_stats``)."""
  return describe.dataset_stats(split.plan, split.skipped)
