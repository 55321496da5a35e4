"""The schema of an experiment config: every key a training run reads, with its default.

Configs in ``configs/`` start from ``base_config()`` and change what their experiment changes, so that a
config reads as the description of an experiment. ``check_config`` rejects keys the schema does not
know (a misspelt ``--config.optimiser.learning_rate`` in a config file would otherwise be ignored
silently); ``config_flags`` already rejects unknown keys given on the command line.
"""

import importlib.util
import json
import os
from typing import Any, Mapping

import ml_collections

from fairjax import paths
from fairjax.data import experiment as data_experiment
from fairjax.data import groups
from fairjax.train import objectives
from fairjax.train import optimizers

# Sections whose keys are free-form options passed through to a registered component.
FREE_FORM = ("model.kwargs", "objective.task_options", "objective.terms", "data.treatment_options",
             "data.filters", "data.synthetic", "evaluator_options")
# Keys that hold a user's file or folder: made absolute where the config enters a run (``resolve_paths``).
PATH_KEYS = ("data.manual_dir", "model.kwargs.checkpoint", "model.init_from")


def load_config_module(path: str):
  """The config file at ``path`` as a module, loaded from the file itself (``configs/`` is no package:
  ``config_flags`` loads configs by path, and a config that builds on another does the same)."""
  name = "_fairjax_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def utkface_dir(config_file: str) -> str:
  """``data.manual_dir`` of a UTKFace config: the folder holding UTKFace.tar.gz (or UTKFace/), where the
  loader looks. ``$FAIRJAX_UTKFACE`` may name the archive itself or its folder; unset, the shared copy
  beside the repository that holds ``config_file`` (``../shared/data/UTKFace.tar.gz``) is used."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(config_file)))
  path = os.environ.get("FAIRJAX_UTKFACE") or os.path.join(root, "..", "shared", "data", "UTKFace.tar.gz")
  path = os.path.normpath(path)
  return os.path.dirname(path) if path.endswith(".tar.gz") else path


def config_words(arg: str, known, config_file: str, exclusive=()) -> set[str]:
  """The comma-separated words of a config's argument (``configs/x.py:smoke,curated``); an unknown
  word, or two words of one group of ``exclusive`` (alternatives such as 'x2' and 'x3'), is an error
  naming the config, not a silent default run."""
  words = {w.strip() for w in arg.split(",") if w.strip()}
  unknown = sorted(words - set(known))
  name = f"configs/{os.path.basename(config_file)}"
  if unknown:
    raise ValueError(f"{name}: unknown argument(s) {unknown}; known: {', '.join(known)}")
  for group in exclusive:
    if len(words & set(group)) > 1:
      raise ValueError(f"{name}: choose one of {', '.join(map(repr, group))}")
  return words


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = data_experiment.default_config()
  # A registered model (fairjax.models); its input shape follows data.image_size / data.grayscale.
  # ``init_from``: weights to start from instead of a fresh initialisation (fairjax.train.init_from): a
  # fairjax workdir (its reported checkpoint), a Keras .h5, a torchvision-named .pt state dict or a TF.js
  # model.json; heads that do not fit keep their initialisation.
  config.model = ml_collections.ConfigDict(dict(name="utk_gender_cnn", kwargs=ml_collections.ConfigDict(),
                                                init_from=""))
  # What training minimises (fairjax.train.objectives): a registered task loss and its options, plus
  # registered terms by name, each with its options, e.g. terms.constrained.epsilon = 0.05 and
  # terms.balanced_weights.grouping = "race". No terms: the task alone.
  config.objective = ml_collections.ConfigDict(dict(
      task="standard", task_options=ml_collections.ConfigDict(), terms=ml_collections.ConfigDict()))
  config.optimizer = optimizers.default_config()
  config.train = ml_collections.ConfigDict(dict(
      batch_size=64,                # global: split over processes, then over each process's devices
      num_epochs=10,
      mapper="pmap",                # 'pmap' or 'shard_map': the same per-device step either way
      log_every_steps=50,
      checkpoint_every_steps=500,   # plus one at the end of every epoch
      keep_checkpoints=2,
      input_threads=2,              # grain reader threads (decoding, resizing) per process
  ))
  config.eval = ml_collections.ConfigDict(dict(
      batch_size=256,
      splits=("validation", "test"),  # evaluated after every epoch and at the end
      # Of those, the ones evaluated only once, at the end, on the reported checkpoint: a large test split
      # that selection never reads need not be evaluated every epoch (configs/default.py: 20,000 images).
      final_only_splits=(),
      groupings=("race", "gender", "race_x_gender"),
      primary_head="gender",          # the head and grouping the report's headline is about
      primary_grouping="gender",
      # Resamples of the count bootstrap behind the 95 % intervals of the final report's headline
      # figures (report.md, each split's summary.json); 0 turns them off. Milliseconds to draw, about a
      # second to compile once per run; the evaluations during training never bootstrap.
      num_resamples=1000,
      # The group that disparate impact is measured against, by grouping, named as
      # groups.group_labels names it ("White", "female", "Black, female"); the same for every split of
      # the run. Empty: the largest group of the training rows. Men by default (seed 000 §6.1.5).
      privileged=ml_collections.ConfigDict(
          {grouping: groups.DEFAULT_PRIVILEGED.get(grouping, "") for grouping in groups.GROUPINGS}),
  ))
  # Which checkpoint the final report evaluates: the extreme of `metric` among the checkpoints whose
  # `bound_metric` is below `bound` (seed 000 §8.2: lowest validation loss with EO gap < 0.1). An empty
  # metric means the last checkpoint.
  config.selection = ml_collections.ConfigDict(dict(
      metric="", mode="min", bound_metric="", bound=0.1, keep_best=1))
  # Post-processing after training (fairjax.postprocess): group thresholds of the primary head's scores by
  # the primary grouping, fitted on `fit_split` under `constraint` ('equalized_odds', 'equal_opportunity',
  # 'demographic_parity'; '' for none) with every gap at most `epsilon`, applied to every evaluated split.
  # The report shows each split raw and post-processed; final_metrics.json has the latter under
  # <split>/postprocessed/<head>/... Groups under `min_group_size` fitting rows get the pooled rule.
  config.postprocess = ml_collections.ConfigDict(dict(
      constraint="", epsilon=0.0, fit_split="validation", randomized=True, min_group_size=30, seed=0))
  # Registered evaluators (fairjax.train.evaluators) run on the reported checkpoint after training, in
  # this order, and their options by name (e.g. evaluator_options.eo_frontier.split = "validation").
  config.evaluators = ("leakage", "embedding_maps")
  config.evaluator_options = ml_collections.ConfigDict()
  return config


def smoke_evaluation(config) -> None:
  """The final report of a config's 'smoke' variant (a run of seconds, for tests) at a fraction of its
  cost, with every part still run: leakage probes of 50 steps (``leakage.STEPS``: 500) and 100 bootstrap
  resamples. On such runs the report's figures mean nothing anyway, and the probes alone took a quarter
  of a UTKFace smoke run (~12 of ~50 s on two busy cores). Its t-SNE maps are already small: a smoke
  split has fewer rows than ``embedding_maps``' 2,000 points."""
  if "leakage" in config.evaluators:  # options of an evaluator that does not run are a config error
    config.evaluator_options.leakage = ml_collections.ConfigDict(dict(steps=50))
  config.eval.num_resamples = 100


def resolve_paths(config) -> ml_collections.ConfigDict:
  """A copy of ``config`` whose ``PATH_KEYS`` are absolute (relative ones against the current folder),
  so that the saved config.json still names the same files when the run resumes from elsewhere."""
  resolved = config.copy_and_resolve_references()
  for key in PATH_KEYS:
    *parents, name = key.split(".")
    node = resolved
    for part in parents:
      node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    value = node.get(name) if isinstance(node, ml_collections.ConfigDict) else None
    if isinstance(value, str) and value:
      node[name] = paths.resolve_str(value)
  return resolved


def unknown_keys(config, schema, prefix: str = "") -> list[str]:
  """Dotted paths of the keys of ``config`` that ``schema`` lacks (free-form sections excepted)."""
  unknown = []
  for key, value in config.items():
    path = f"{prefix}{key}"
    if key not in schema:
      unknown.append(path)
    elif isinstance(value, ml_collections.ConfigDict) and path not in FREE_FORM:
      unknown.extend(unknown_keys(value, schema[key], f"{path}."))
  return unknown


def check_config(config) -> None:
  """Raises ``ValueError`` naming every key of ``config`` that ``base_config()`` lacks, or an objective
  task, term or option that is not registered."""
  unknown = unknown_keys(config, base_config())
  if unknown:
    raise ValueError(f"unknown config keys: {', '.join(unknown)}")
  for name, options in config.objective.terms.items():
    if not isinstance(options, (ml_collections.ConfigDict, dict)):
      raise ValueError(f"objective.terms.{name} must hold the term's options (a ConfigDict, maybe empty), "
                       f"got {options!r}")
  objectives.check_options(config.objective)
  for grouping, name in config.eval.privileged.items():
    labels = groups.group_labels(grouping)
    if name and name not in labels:
      raise ValueError(f"config.eval.privileged.{grouping}: {name!r} is not a {grouping} group; its groups: "
                       f"{', '.join(labels)} (or '' for the largest training group)")
  if config.eval.num_resamples < 0:
    raise ValueError(f"config.eval.num_resamples must be 0 (no intervals) or more, got {config.eval.num_resamples}")


def flat_values(config) -> dict[str, Any]:
  """``config`` (a ConfigDict or its JSON dict) as ``{dotted key: JSON value}``, tuples as lists, so
  that a config and its saved ``config.json`` compare value by value. A list of dicts (the JSON of a
  tuple of dataclasses: a model's ``heads``) is walked too, by position: ``model.kwargs.heads.0.kind``,
  so that a field the dataclass gained since a run compares like a schema key."""
  tree = json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else config
  flat = {}

  def walk(node, prefix):
    for key, value in node.items():
      if isinstance(value, dict) and not value:
        flat[f"{prefix}{key}"] = {}  # an empty section (a term with default options) is still there
      elif isinstance(value, dict):
        walk(value, f"{prefix}{key}.")
      elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        walk({str(i): item for i, item in enumerate(value)}, f"{prefix}{key}.")
      else:
        flat[f"{prefix}{key}"] = value

  walk(tree, "")
  return flat


def differences(saved: Mapping[str, Any], config, defaults: Mapping[str, Any] = ()) -> list[str]:
  """The keys on which the run saved as ``saved`` (its config.json) and ``config`` disagree, as
  'key: X there, Y here'.

  A key that only one side has counts only where its value differs from the default (``base_config()``'s,
  or ``defaults``', dotted keys such as the objective's option defaults): a key the schema gained since
  the run compares its default with today's value, and one it lost is ignored. So upgrading fairjax does
  not turn every finished run into "another config".
  """
  old, new = flat_values(saved), flat_values(config)
  known = {**flat_values(base_config()), **dict(defaults)}
  known = json.loads(json.dumps(known, default=list))  # tuples as lists, as in the JSON files
  missing = object()
  found = []
  for key in sorted(set(old) | set(new)):
    there, here = old.get(key, missing), new.get(key, missing)
    if there is missing:
      there = known.get(key, missing)
    if here is missing:
      here = known.get(key, missing)
    if here is missing and not any(key.startswith(f"{section}.") for section in FREE_FORM):
      continue  # a key the schema no longer has: today's code ignores it
    if there != here:
      show = lambda v: "unset" if v is missing else json.dumps(v)
      found.append(f"{key}: {show(there)} there, {show(here)} here")
  return found
