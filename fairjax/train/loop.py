"""``train_and_evaluate(config, workdir)``: train a model, evaluate it by group, resume if interrupted.

The run is a pure function of its config: the data splits and plans (``fairjax.data.experiment``), the
batch sequence (``pipeline.train_batches``: a function of the seed and the batch index), the step's
randomness (``fold_in(rng, step)``) and the optimiser state are all determined by it, and a checkpoint
holds the state and the batch index. So a run killed at any moment and restarted with the same workdir
resumes from its last checkpoint and ends with the parameters an uninterrupted run would have.

Each epoch ends with an evaluation of ``config.eval.splits`` (task metrics and group metrics by race,
gender and race x gender; less ``config.eval.final_only_splits``, evaluated once at the end) and a
checkpoint that carries those metrics, from which the selection rule picks the checkpoint the final
report describes (seed 000 §8.2: the lowest validation loss among the checkpoints whose equalized-odds
gap is below 0.1). A non-finite loss or gradient stops the run at once, naming the step; the last
checkpoint before it is intact.
"""

import functools
import json
import os
import tempfile
import warnings
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from fairjax import paths
from fairjax.data import augment
from fairjax.data import experiment as data_experiment
from fairjax.data import pipeline
from fairjax.metrics import group_report as report_lib
from fairjax.models import heads as heads_lib
from fairjax.models import protocols as model_protocols
from fairjax.models import registry as model_registry
from fairjax.report import run_report
from fairjax.train import age_correction  # pylint: disable=unused-import  (registers its evaluator)
from fairjax.train import checkpoint as checkpoint_lib
from fairjax.train import config as config_lib
from fairjax.train import distributed
from fairjax.train import evaluate
from fairjax.train import evaluators as evaluators_lib
from fairjax.train import events
from fairjax.train import init_from
from fairjax.train import objectives
from fairjax.train import postprocessing
from fairjax.train import optimizers
from fairjax.train import progress
from fairjax.train import runner as runner_lib
from fairjax.train import step as step_lib
from fairjax.train.state import TrainState


# Where a model with an ``export`` (CLIP) writes itself at the end of a run, under the workdir.
EXPORT_DIR = "clip_checkpoint"


def build_model(config):
  """The configured model, its input shape taken from the data's image size and colour."""
  kwargs = dict(config.model.kwargs)
  channels = 1 if config.data.grayscale else 3
  kwargs.setdefault("input_shape", (config.data.image_size, config.data.image_size, channels))
  return optimizers.frozen_model(config.optimizer, model_registry.get_model(config.model.name, **kwargs))


def initial_state(config, model, objective, total_steps: int):
  """The step-0 train state on the host, its optimiser, and notes on where the model's weights come from
  (``config.model.init_from``: what loaded, what kept its fresh initialisation)."""
  init_rng, objective_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed), 3)
  variables, notes = init_from.load(config.model.get("init_from", ""), model,
                                    model_registry.init_variables(model, init_rng))
  params = {"model": variables.pop("params")}
  params.update(objective.init_params(objective_rng, params["model"]))  # e.g. an adversary head
  tx = optimizers.make_optimizer(config.optimizer, total_steps, params, model)
  state = TrainState.create(params=params, model_state=variables, tx=tx,
                            objective_state=objective.init_state(params), rng=train_rng)
  return jax.device_get(state), tx, notes


def selection_rule(config):
  sel = config.selection
  if not sel.metric:
    return None
  bounds = {sel.bound_metric: sel.bound} if sel.bound_metric else {}
  return checkpoint_lib.SelectionRule(sel.metric, sel.mode, bounds)


def _epoch_end_steps(num_rows: int, batch_size: int, num_epochs: int, total_steps: int) -> list[int]:
  return sorted({min(total_steps, num_rows * (e + 1) // batch_size) for e in range(num_epochs)} - {0})


def _flatten(results: dict) -> dict:
  return {f"{split}/{name}": value for split, result in results.items()
          for name, value in result.metrics.items()}


class _Run:
  """One training run's parts, built from the config (see ``train_and_evaluate``)."""

  def __init__(self, config, workdir):
    # Everything that can be wrong with the config is checked before the data is read (UTKFace takes
    # seconds to decode) and before anything is written.
    config_lib.check_config(config)
    evaluators_lib.check_config(config)
    postprocessing.check_config(config)
    self.config, self.workdir = config, paths.resolve_str(workdir)
    self.chief = distributed.is_chief()
    self.model = build_model(config)
    head_names = [h.name for h in self.model.heads]
    if config.eval.primary_head not in head_names:
      raise ValueError(f"config.eval.primary_head {config.eval.primary_head!r} is not a head of "
                       f"{config.model.name} ({head_names})")
    self.primary = (config.eval.primary_head, config.eval.primary_grouping)
    objective = objectives.build(config.objective, self.model)
    if isinstance(self.model, model_protocols.ChecksData):  # e.g. a checkpoint's own normalisation
      self.model.check_data(config.data)
    # Objectives that read captions (CLIP's contrastive loss) get their token ids from the pipeline.
    self.text = None
    if objective.reads_text:
      if not isinstance(self.model, model_protocols.ReadsCaptions):
        raise ValueError(f"objective task {config.objective.task!r} reads captions, and model "
                         f"{config.model.name!r} has no text tower to read them with")
      self.text = self.model.text_inputs()

    splits = data_experiment.build(config.data)
    missing = [name for name in config.eval.splits if name not in splits]
    if missing:
      raise ValueError(f"config.eval.splits names {missing}; this data scheme has {sorted(splits)}")
    self.train_split = splits["train"]
    self.eval_splits = {name: splits[name] for name in config.eval.splits}
    # One privileged group per grouping for every split and every evaluation of the run: the configured
    # one, else the largest group of the rows it trains on.
    self.privileged = evaluate.run_privileged(config.eval.privileged, self.train_split.plan,
                                              tuple(config.eval.groupings))
    self.epoch_splits = _epoch_splits(config)
    self.preprocess = pipeline.Preprocess((config.data.image_size,) * 2, config.data.grayscale)

    self.batch_size = config.train.batch_size
    self.num_rows = len(self.train_split.plan)
    self.total_steps = pipeline.num_train_batches(self.num_rows, self.batch_size, config.train.num_epochs)
    if config.train.num_epochs < 0:
      raise ValueError(f"config.train.num_epochs must be 0 or more, got {config.train.num_epochs}")
    # num_epochs = 0 trains nothing: the report audits the starting weights (a pretrained model, or the
    # weights model.init_from names), as fairjax.main audits any trained model.
    self.evaluate_only = config.train.num_epochs == 0
    if self.total_steps == 0 and not self.evaluate_only:
      raise ValueError(f"{self.num_rows} training rows make no batch of {self.batch_size}")
    self.epoch_ends = _epoch_end_steps(self.num_rows, self.batch_size, config.train.num_epochs,
                                       self.total_steps)
    steps = max(self.total_steps, 1)  # schedules need a length even where nothing trains
    objective.set_total_steps(steps)  # a weight scheduled over the run (gradient reversal)
    objective.set_training_rows(self.train_split.plan)  # example weights from the training rows
    self.host_state, tx, self.init_notes = initial_state(config, self.model, objective, steps)

    train_step = step_lib.make_train_step(
        objective, tx, self.model.apply,
        prepare=functools.partial(augment.train_images, data_config=config.data))
    self.evaluator = evaluate.make_evaluator(
        self.model, images_fn=functools.partial(augment.eval_images, data_config=config.data),
        groupings=tuple(config.eval.groupings))
    self.runner = runner_lib.Runner(config.train.mapper, train_step,
                                    step_lib.make_eval_step(self.evaluator, self.model.apply))
    self._eval_rows = None  # the final evaluation's step, with embeddings (built when first used)
    self.runner.check_batch_size(self.batch_size, "config.train.batch_size")
    self.runner.check_batch_size(config.eval.batch_size, "config.eval.batch_size")
    self.rule = selection_rule(config)
    self.checkpointer = None  # opened by open_checkpoints(), once the run may write

  def open_checkpoints(self) -> None:
    """Opens (and so creates) ``workdir/checkpoints``."""
    self.checkpointer = checkpoint_lib.Checkpointer(
        paths.resolve(self.workdir) / "checkpoints", every_steps=self.config.train.checkpoint_every_steps,
        keep_last=self.config.train.keep_checkpoints, keep_best=self.config.selection.keep_best,
        selection=self.rule)

  def evaluate(self, state, names, embeddings: Optional[dict] = None) -> dict:
    """The evaluator's sums (host arrays, added over every batch) of each split in ``names`` for the
    device state ``state``; ``summarise`` turns them into figures. ``embeddings``: a dict that receives
    each split's rows as ``RunContext.embeddings`` gives them, from the same forward pass."""
    if embeddings is not None and self._eval_rows is None:
      self._eval_rows = self.runner.sums_and_rows_function(step_lib.make_eval_rows_step(
          self.evaluator, self.model.apply, evaluators_lib.EMBEDDING_ROW_KEYS))
    found = {}
    for name in names:
      total, parts = None, []
      for batch in evaluators_lib.split_batches(self.config, self.preprocess, self.eval_splits[name]):
        if embeddings is None:
          sums = self.runner.eval_step(state, batch)
        else:
          sums, rows = self._eval_rows(state, batch)
          parts.append(rows)
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
      if total is None:
        raise ValueError(f"evaluation split {name!r} is empty")
      found[name] = self.runner.fetch(total)
      if embeddings is not None:
        embeddings[name] = evaluators_lib.gather_rows(parts, name)
    return found

  def summarise(self, sums: dict, intervals: bool = False) -> dict:
    """EvalResult of each split's ``sums``, against the run's privileged groups; ``intervals``: with
    ``config.eval.num_resamples`` intervals of the headline (primary head and grouping) figures."""
    results = {}
    for name, split_sums in sums.items():
      with warnings.catch_warnings():  # undefined figures are collected in the result, and reported
        warnings.simplefilter("ignore", report_lib.FairnessWarning)
        results[name] = evaluate.summarise(
            self.model, split_sums, privileged={g: v["group"] for g, v in self.privileged.items()},
            num_resamples=self.config.eval.num_resamples if intervals else 0, seed=self.config.seed,
            intervals_of={self.primary}, report_intervals=False)
    return results

  def context(self, state, step: int, embeddings: Optional[dict] = None) -> evaluators_lib.RunContext:
    """The evaluators' view of this run at the device state ``state`` of checkpoint ``step``, with the
    ``embeddings`` already computed for it (``evaluate``)."""
    return evaluators_lib.RunContext(
        config=self.config, model=self.model, state=state, runner=self.runner, splits=self.eval_splits,
        preprocess=self.preprocess, workdir=self.workdir, writes=self.chief, step=step,
        privileged={g: v["group"] for g, v in self.privileged.items()}, computed_embeddings=embeddings or {})

  def restore(self, step: int):
    state, position = self.checkpointer.restore(step, self.host_state)
    if position.get("batch") != step:
      raise ValueError(f"checkpoint {step} holds data position {position}, expected batch {step}")
    return state


def _epoch_splits(config) -> tuple[str, ...]:
  """The evaluated splits that are evaluated after every epoch (all but ``eval.final_only_splits``); the
  selection rule may read only these."""
  final_only = tuple(config.eval.final_only_splits)
  stray = [name for name in final_only if name not in config.eval.splits]
  if stray:
    raise ValueError(f"config.eval.final_only_splits names {stray}, which config.eval.splits "
                     f"({list(config.eval.splits)}) does not evaluate")
  epoch = tuple(name for name in config.eval.splits if name not in final_only)
  for key in (config.selection.metric, config.selection.bound_metric):
    if key and key.split("/")[0] in final_only:
      raise ValueError(f"the selection rule reads {key!r}, but {key.split('/')[0]!r} is in "
                       "config.eval.final_only_splits: it is evaluated only at the end")
  return epoch


def _headline(flat: dict, primary: tuple[str, str], splits) -> str:
  """The figures worth a console line after an evaluation: loss, accuracy and the primary gaps."""
  head, grouping = primary
  names = ("loss", f"{head}/accuracy", f"{head}/{grouping}/equalized_odds_difference",
           f"{head}/{grouping}/accuracy_gap")
  return ", ".join(f"{split}/{name}={flat[f'{split}/{name}']:.4f}" for split in splits for name in names
                   if f"{split}/{name}" in flat)


def _check_finite(step: int, metrics: dict) -> None:
  if not bool(metrics["finite"]):
    raise FloatingPointError(f"non-finite training step {step}: loss={float(metrics['loss'])}, "
                             f"grad_norm={float(metrics['grad_norm'])}; the last checkpoint before it "
                             "is intact")


def check_workdir(workdir, config) -> bool:
  """Whether ``workdir`` already holds a run of ``config`` (to resume or report); a workdir holding a run
  of another config is an error naming what differs, so that a rerun after a config changed never
  resumes or reports a stale run. Keys the schema gained or lost since the run count only where they
  change a value (``config_lib.differences``)."""
  saved = paths.resolve(workdir) / "config.json"
  if not saved.exists():
    return False
  try:
    previous = json.loads(saved.read_text())
  except ValueError as error:
    raise ValueError(f"{saved} is not a readable config ({error}); remove the folder or choose another") from error
  previous["objective"] = objectives.migrate_config(previous.get("objective", {}))  # a run of older fairjax
  defaults = objectives.option_defaults(config.objective)
  # The fields of the heads a config lists, at their defaults: HeadSpec gains fields (class_groups).
  for i in range(len(config.model.kwargs.get("heads") or ())):
    defaults.update({f"model.kwargs.heads.{i}.{k}": v for k, v in heads_lib.field_defaults().items()})
  found = config_lib.differences(previous, config_lib.resolve_paths(config), defaults)
  if found:
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    raise ValueError(f"{workdir} holds a run of another config ({'; '.join(found[:3])}{more}); remove it "
                     "or choose another folder")
  return True


def finished(workdir, config) -> bool:
  """Whether ``workdir`` holds a finished run of ``config``: its report written (see ``check_workdir``
  for a workdir of another config)."""
  return check_workdir(workdir, config) and (paths.resolve(workdir) / "report" / "final_metrics.json").exists()


def ensure_trained(config, workdir, name: str = "", log=print) -> bool:
  """Trains ``config`` in ``workdir`` unless a finished run of it is there (an interrupted one resumes):
  what every experiment does for each of its runs. Returns whether it trained; ``log`` says which."""
  label = f"{name}: " if name else ""
  if finished(workdir, config):
    log(f"{label}finished run in {workdir}, not trained again")
    return False
  log(f"{label}training in {workdir}")
  train_and_evaluate(config, workdir)
  return True


def train_and_evaluate(config, workdir) -> dict:
  """Trains ``config``'s model in ``workdir`` (resuming from its last checkpoint) and writes the report.

  ``workdir`` may be relative (to the current folder) or remote (``gs://...``). The config, the data
  and the workdir are checked before anything is written, so bad input leaves no folder behind.
  Returns the selected checkpoint's step and its metrics on every evaluated split
  (``'<split>/<metric>'``), as written to ``workdir/report/``.
  """
  workdir = paths.resolve(workdir)
  config = config_lib.resolve_paths(config)
  check_workdir(workdir, config)
  run = _Run(config, workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if run.chief:
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
  run.open_checkpoints()
  writer = events.EventWriter(run.workdir, write=run.chief)
  start = run.checkpointer.latest_step() or 0
  state = run.runner.put_state(run.restore(start) if start else run.host_state)
  history = progress.History(run.workdir, start, write=run.chief)
  bar = progress.ProgressBar(run.total_steps, start, run.batch_size, show=run.chief)
  if start:  # a restart after a kill or a preemption says where it picks up
    bar.write(f"resuming from the checkpoint of step {start} of {run.total_steps}")
  else:
    for note in run.init_notes:
      bar.write(f"model.init_from: {note}")
  log_every = config.train.log_every_steps
  last_sums, window, pending = None, [], None
  try:
    step = start
    batches = () if run.evaluate_only else pipeline.train_batches(
        run.train_split.source, global_batch_size=run.batch_size, seed=config.seed,
        num_epochs=config.train.num_epochs, preprocess=run.preprocess, plan=run.train_split.plan,
        start_batch=start, process_index=jax.process_index(), process_count=jax.process_count(),
        num_threads=config.train.input_threads, text=run.text)
    for batch in batches:
      state, metrics = run.runner.train_step(state, batch)
      step += 1
      # Read the previous step's metrics while this one runs: the check costs no pipeline stall.
      if pending is not None:
        window.append(run.runner.fetch(pending[1]))
        _check_finite(pending[0], window[-1])
      pending = (step, metrics)
      epoch_end = step in run.epoch_ends
      if step % log_every == 0 or epoch_end:
        window.append(run.runner.fetch(metrics))
        _check_finite(step, window[-1])
        pending = None
        means = {f"train/{k}": float(np.mean([m[k] for m in window])) for k in window[0] if k != "finite"}
        writer.write_scalars(step, means)
        history.add(step, step * run.batch_size / run.num_rows, means)
        bar.update(step, means["train/loss"])
        window = []
      else:
        bar.update(step)
      if epoch_end:
        last_sums = run.evaluate(state, run.epoch_splits)
        flat = _flatten(run.summarise(last_sums))
        writer.write_scalars(step, flat)
        history.add(step, step * run.batch_size / run.num_rows, flat)
        run.checkpointer.save(step, run.runner.get_state(state), {"batch": step}, metrics=flat, force=True)
        bar.write(f"step {step}: " + _headline(flat, run.primary, run.epoch_splits))
      elif step % config.train.checkpoint_every_steps == 0:
        if pending is not None:  # a checkpoint never holds the state of an unchecked step
          window.append(run.runner.fetch(pending[1]))
          _check_finite(pending[0], window[-1])
          pending = None
        run.checkpointer.save(step, run.runner.get_state(state), {"batch": step})
    if pending is not None:
      _check_finite(pending[0], run.runner.fetch(pending[1]))
    if run.evaluate_only:  # the audited weights, kept as the run's one checkpoint for later evaluators
      run.checkpointer.save(0, run.runner.get_state(state), {"batch": 0}, force=True)
    run.checkpointer.wait()
    return _final_report(run, state, last_sums, history, writer)
  finally:
    bar.close()
    writer.close()
    run.checkpointer.close()


def reported_context(config, workdir, with_train: bool = False) -> evaluators_lib.RunContext:
  """The ``RunContext`` of the checkpoint that a finished run's report describes (the selection rule's
  best, else the last), for evaluators run after the fact (``experiments/eo_frontier.py``). ``config``
  must be the run's own: its state is restored into it. ``with_train``: its splits include the training
  split as ``'train'`` (its rows as the run trained on them, read without augmentation), for what is
  fitted on a model's training representations (a concept eraser, a refitted head)."""
  config = config_lib.resolve_paths(config)
  if not check_workdir(workdir, config):
    raise ValueError(f"{workdir} holds no run (no config.json): train it first (python -m fairjax.main)")
  run = _Run(config, workdir)
  run.open_checkpoints()
  step = (run.checkpointer.best_step() if run.rule is not None else None) or run.checkpointer.latest_step()
  if step is None:
    raise ValueError(f"{workdir} holds no checkpoint: train it first (python -m fairjax.main)")
  context = run.context(run.runner.put_state(run.restore(step)), step)
  if with_train:
    context.splits = {**context.splits, "train": run.train_split}
  return context


def _export(run, params) -> str:
  """``run.model.export`` into ``workdir/clip_checkpoint``. The Hugging Face writers (safetensors,
  transformers' configs, the tokenizer files) write local files only, so a remote workdir gets the
  folder written locally first and then copied file by file."""
  target = os.path.join(run.workdir, EXPORT_DIR)
  if not paths.is_remote(target):
    return run.model.export(params, target, run.config.data.mean, run.config.data.std)
  with tempfile.TemporaryDirectory(prefix="fairjax-export-") as local:
    run.model.export(params, local, run.config.data.mean, run.config.data.std)
    paths.copy_tree(local, target)
  return target


def _final_report(run, state, last_sums, history, writer) -> dict:
  """Evaluates the selected checkpoint (or the last) and writes ``workdir/report/``. ``last_sums``: the
  last epoch's evaluation sums, reused when that epoch's checkpoint is the selected one."""
  notes = [f"model.init_from: {note}" for note in run.init_notes]
  selected = run.total_steps
  if run.evaluate_only:
    notes.append("Not trained (train.num_epochs = 0): the report audits the starting weights.")
  elif run.rule is not None:
    best = run.checkpointer.best_step()
    if best is None:
      notes.append(f"No checkpoint met the selection rule ({run.rule}); the report describes the last.")
    elif best != run.total_steps:
      selected, last_sums = best, None
      state = run.runner.put_state(run.restore(best))
  # Where an evaluator reads the embeddings, one forward pass over each split gives them and the sums
  # (the last epoch's sums are not reused then: the embeddings would cost that pass anyway).
  embeddings = {} if evaluators_lib.USES_EMBEDDINGS & set(run.config.evaluators) else None
  sums = dict(last_sums or {}) if embeddings is None else {}
  sums.update(run.evaluate(state, [name for name in run.eval_splits if name not in sums], embeddings))
  # in the config's order, with the headline's intervals
  results = run.summarise({name: sums[name] for name in run.eval_splits}, intervals=True)
  context = run.context(state, selected, embeddings)
  found = evaluators_lib.run_evaluators(context, run.config.evaluators, run.config.evaluator_options)
  for name, metrics in found.metrics.items():
    results[name].metrics.update(metrics)
  notes.extend(found.notes)
  sections = {}
  if run.config.postprocess.constraint:  # group thresholds fitted on validation, applied to every split
    found = postprocessing.postprocess(context, **run.config.postprocess)
    for name, metrics in found.metrics.items():
      results[name].metrics.update(metrics)
    sections["Post-processing"] = found.notes + [""] + postprocessing.raw_beside_postprocessed(
        results, *run.primary, run.config.postprocess.fit_split)
  if run.chief and isinstance(run.model, model_protocols.Exports):  # CLIP: a Hugging Face folder
    path = _export(run, run.runner.get_state(state).params["model"])
    notes.append(f"The reported model is exported to `{path}` (config.json, model.safetensors, tokenizer, "
                 "image processor): `python -m fairjax.clip --checkpoint=...` audits it zero-shot.")
  if run.chief:
    for name, result in results.items():
      run_report.write_split(run.workdir, name, result, primary=run.primary, privileged=run.privileged)
  if run.train_split.skipped:
    notes.append(f"{len(run.train_split.skipped)} files of the data set were skipped as unusable "
                 f"(first: {run.train_split.skipped[0]['file']}: {run.train_split.skipped[0]['reason']})")
  flat = _flatten(results)
  if run.chief:
    run_report.write_markdown(
        run.workdir, config_summary=_config_summary(run.config),
        history=history.records, split_results=results, primary=run.primary, selected_step=selected,
        notes=notes, sections=sections, privileged=run.privileged)
    (paths.resolve(run.workdir) / "report" / "final_metrics.json").write_text(json.dumps(
        {"selected_step": selected, **{k: v if np.isfinite(v) else None for k, v in flat.items()}}, indent=2))
  writer.write_scalars(run.total_steps, {f"final/{k}": v for k, v in flat.items()})
  return {"selected_step": selected, **flat}


def objective_summary(config_objective) -> str:
  """``standard``, or ``standard + constrained + balanced_weights``: the task and its terms."""
  return " + ".join([config_objective.task, *config_objective.terms])


def _config_summary(config) -> dict:
  return {
      "data": config.data.name, "splits": config.data.splits, "treatments": list(config.data.treatments),
      "model": config.model.name, "objective": objective_summary(config.objective),
      "optimizer": f"{config.optimizer.name} lr={config.optimizer.learning_rate} ({config.optimizer.schedule})",
      "batch_size": config.train.batch_size, "epochs": config.train.num_epochs,
      "selection": (f"{config.selection.mode} {config.selection.metric}"
                    + (f" with {config.selection.bound_metric} < {config.selection.bound}"
                       if config.selection.bound_metric else "")) if config.selection.metric else "last",
      "seed": config.seed,
      "bootstrap_resamples": config.eval.num_resamples,
  }
