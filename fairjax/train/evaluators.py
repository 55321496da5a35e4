"""Evaluators: what is computed on a trained model once training ends, each a registered entry.

After training, ``train_and_evaluate`` evaluates every split of ``config.eval.splits`` by group (one
``EvalResult`` each), then runs the evaluators that ``config.evaluators`` lists, in order, on a
``RunContext``: the model, the reported checkpoint's device state, the runner that maps per-row
functions over the devices, the evaluated splits, the workdir and whether this process writes. An
evaluator returns ``Findings``: figures that join a split's metrics (so that ``summary.json``,
``report.md`` and ``final_metrics.json`` carry them) and notes for ``report.md``. What it writes goes
under ``workdir/report/`` through ``fairjax.report``, on the writing process only.

The same evaluators run on a finished run after the fact (``loop.reported_context`` and
``run_evaluators``: ``experiments/eo_frontier.py``), on the checkpoint its report describes.

A new evaluator is a function ``fn(context, *, option=default, ...) -> Findings`` registered here with
``@register("name")``. Its options come from ``config.evaluator_options.<name>``; a misspelt one is an
error naming the valid ones, raised before training starts (``check_config``).
"""

import dataclasses
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np

from fairjax import registry as registry_lib
from fairjax.data import augment
from fairjax.data import groups
from fairjax.data import pipeline
from fairjax.metrics import frontier
from fairjax.models import forward as forward_lib
from fairjax.postprocess import thresholds
from fairjax.report import embeddings as embeddings_lib
from fairjax.report import frontier_report
from fairjax.report import run_report
from fairjax.train import leakage as leakage_lib

_REGISTRY = registry_lib.Registry("evaluator")
register = _REGISTRY.register
# What a run computes after training unless its config says otherwise.
DEFAULT = ("leakage", "embedding_maps")
# Arguments every evaluator takes before its options.
_POSITIONAL = ("context",)


def names() -> tuple[str, ...]:
  return _REGISTRY.names()


@dataclasses.dataclass
class Findings:
  """An evaluator's result: ``metrics`` ``{split: {name: value}}`` joining each split's metrics, and
  ``notes`` (lines for ``report.md``)."""
  metrics: dict = dataclasses.field(default_factory=dict)
  notes: list = dataclasses.field(default_factory=list)


def split_batches(config, preprocess, split) -> Iterator[dict]:
  """This process's evaluation batches of ``split`` (every row once, padded to whole global batches;
  padding rows have ``mask`` False): the one evaluation-batch loop of a run."""
  return pipeline.eval_batches(
      split.source, global_batch_size=config.eval.batch_size, preprocess=preprocess, plan=split.plan,
      process_index=jax.process_index(), process_count=jax.process_count(),
      num_threads=config.train.input_threads)


@dataclasses.dataclass
class RunContext:
  """A trained run, as evaluators see it.

  ``model`` is the registered Flax module (its ``heads`` and ``apply``), ``state`` the evaluated
  checkpoint's device state (``state.params["model"]``, ``state.model_state``), ``runner`` the run's
  pmap / shard_map ``Runner``, ``splits`` the evaluated ``Split``s by name, ``step`` the evaluated
  checkpoint's step, ``writes`` whether this process writes files (process 0).
  """
  config: Any
  model: Any
  state: Any
  runner: Any
  splits: Mapping[str, Any]
  preprocess: Callable
  workdir: str
  writes: bool
  step: int
  # The run's privileged group by grouping (``evaluate.run_privileged``), for figures measured against
  # it; a grouping missing takes ``evaluate.summarise``'s default.
  privileged: Mapping[str, str] = dataclasses.field(default_factory=dict)
  # Split name -> ``embeddings(split)``'s rows, where already computed (by the final evaluation's pass).
  computed_embeddings: dict = dataclasses.field(default_factory=dict, repr=False)

  @property
  def primary(self) -> tuple[str, str]:
    """The report's headline head and grouping."""
    return self.config.eval.primary_head, self.config.eval.primary_grouping

  def outputs(self, state, batch) -> dict:
    """The model's evaluation outputs for a device batch (inside a mapped function)."""
    outputs, _ = forward_lib.forward(self.model.apply, state.params["model"], state.model_state,
                                     augment.eval_images(batch, self.config.data), jax.random.key(0),
                                     train=False)
    return outputs

  def rows(self, fn: Callable, split_name: str) -> dict:
    """``fn(state, batch) -> {name: per-row array, 'mask': ...}`` over every row of a split, as host
    numpy with the padding dropped; on several processes every process gets every row."""
    row_fn = self.runner.row_function(fn)
    return gather_rows([row_fn(self.state, batch)
                        for batch in split_batches(self.config, self.preprocess, self.splits[split_name])],
                       split_name)

  def embeddings(self, split_name: str) -> dict:
    """``{embedding, race, gender}`` of every row of a split (computed once, shared by evaluators; the
    training loop hands over those its final evaluation computed, ``step.make_eval_rows_step``)."""
    if split_name not in self.computed_embeddings:

      def embed(state, batch):
        return {"embedding": self.outputs(state, batch)["embedding"],
                **{key: batch[key] for key in EMBEDDING_ROW_KEYS}}

      self.computed_embeddings[split_name] = self.rows(embed, split_name)
    return self.computed_embeddings[split_name]


# What ``RunContext.embeddings`` keeps of a batch beside the embedding (the mask is dropped with padding).
EMBEDDING_ROW_KEYS = ("mask", *groups.ATTRIBUTES)
# The evaluators that read ``RunContext.embeddings``: the final evaluation computes them when one is listed.
USES_EMBEDDINGS = frozenset({"leakage", "embedding_maps"})


def gather_rows(parts: Sequence[dict], split_name: str) -> dict:
  """A split's per-row outputs from its batches' (``Runner.row_function``'s, each with ``mask``), as
  host numpy with the padding dropped; on several processes every process gets every row."""
  if not parts:
    raise ValueError(f"evaluation split {split_name!r} is empty")
  rows = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
  if jax.process_count() > 1:  # each process holds its slices of the batches; every process needs all
    rows = {key: np.asarray(multihost_utils.process_allgather(value, tiled=True))
            for key, value in rows.items()}
  keep = rows.pop("mask").astype(bool)
  return {key: value[keep] for key, value in rows.items()}


def check_config(config) -> None:
  """Raises ``ValueError`` for an unknown evaluator, options for one that is not listed, or an option
  an evaluator does not take (naming the ones it does)."""
  listed = tuple(config.evaluators)
  for name in listed:
    _REGISTRY.get(name)
  for name, options in config.evaluator_options.items():
    if name not in listed:
      raise ValueError(f"config.evaluator_options.{name}: {name!r} is not in config.evaluators {list(listed)}")
    known = [o for o in _REGISTRY.options(name) if o not in _POSITIONAL]
    unknown = sorted(set(options) - set(known))
    if unknown:
      raise ValueError(f"evaluator {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                       f"{', '.join(known) or 'none'}")


def run_evaluators(context: RunContext, evaluator_names: Sequence[str],
                   options: Optional[Mapping[str, Mapping]] = None) -> Findings:
  """Runs each named evaluator on ``context`` and gathers their findings, in order."""
  options = options or {}
  gathered = Findings()
  for name in evaluator_names:
    found = _REGISTRY.build(name, context, **dict(options.get(name, {})))
    for split, metrics in found.metrics.items():
      gathered.metrics.setdefault(split, {}).update(metrics)
    gathered.notes.extend(found.notes)
  return gathered


# ------------------------------------------------------------------------------------------ evaluators

@register("leakage")
def leakage(context: RunContext, *, hidden: Sequence[int] = leakage_lib.HIDDEN, steps: int = leakage_lib.STEPS,
            l2: float = leakage_lib.L2) -> Findings:
  """``leakage_<attribute>`` of race and gender on every evaluated split: how well a fresh probe reads
  the attribute from the model's embedding, above the majority rate (``fairjax.train.leakage``)."""
  found = Findings()
  for name in context.splits:
    rows = context.embeddings(name)
    for attribute, classes in groups.ATTRIBUTES.items():
      labels = rows[attribute]
      known = labels >= 0
      figures = leakage_lib.probe_leakage(rows["embedding"][known], labels[known], len(classes),
                                          seed=context.config.seed, hidden=tuple(hidden), steps=steps, l2=l2)
      found.metrics.setdefault(name, {})[leakage_lib.metric_name(attribute)] = figures["leakage"]
  return found


@register("embedding_maps")
def embedding_maps(context: RunContext, *, max_points: int = embeddings_lib.MAX_POINTS) -> Findings:
  """``report/<split>/embedding_<attribute>.png``: t-SNE maps of the embedding coloured by race and by
  gender (one subsample of at most ``max_points`` rows serves every map)."""
  if context.writes:
    for name in context.splits:
      rows = context.embeddings(name)
      if len(rows["embedding"]) >= 3:
        embeddings_lib.write_embedding_plots(
            run_report.split_dir(context.workdir, name), rows["embedding"],
            {attribute: (rows[attribute], classes) for attribute, classes in groups.ATTRIBUTES.items()},
            title=name, seed=context.config.seed, max_points=max_points)
  return Findings()


def primary_scores(context: RunContext, split_name: str) -> dict:
  """``{score, label, group}`` of every row of a split: the primary head's class-1 logit (or logit
  margin), its label and the primary grouping's code. For a two-class head only."""
  head, grouping = context.primary
  spec = next(s for s in context.model.heads if s.name == head)
  if spec.kind != "binary" and not (spec.kind == "multiclass" and spec.num_outputs == 2):
    raise ValueError(f"the frontier is for a two-class head; {head!r} is {spec.kind} with {spec.num_outputs} outputs")

  def score(state, batch):
    out = context.outputs(state, batch)[head]
    margin = out.reshape(-1) if out.ndim == 1 or out.shape[-1] == 1 else out[:, 1] - out[:, 0]
    return {"score": margin, "label": batch[spec.key], "group": groups.group_codes(batch, grouping),
            "mask": batch["mask"]}

  return context.rows(score, split_name)


@register("eo_frontier")
def eo_frontier(context: RunContext, *, split: str = "test",
                epsilons: Sequence[float] = (0.02, 0.03, 0.05, 0.075, 0.1, 1.0), fit_split: str = "",
                num_resamples: int = 1000, min_group_size: int = thresholds.DEFAULT_MIN_GROUP_SIZE) -> Findings:
  """``report/<split>/eo_frontier.{md,csv}``: the best accuracy of any group-threshold predictor of the
  primary head's scores with every pair of groups' TPRs and FPRs within each epsilon (Hardt et al.
  2016, solved on the split's own labels: an oracle bound, not a deployable rule), beside the model as
  it is. With ``fit_split`` (e.g. 'validation') also the deployable frontier: the rule fitted there at
  each epsilon and judged on ``split``, with ``num_resamples`` bootstrap intervals, groups of fewer than
  ``min_group_size`` faces given the pooled rule (``fairjax.postprocess.thresholds.frontier``;
  ``eo_frontier_fitted.csv``). On the default task its gap on test exceeds the fitted epsilon by
  0.01-0.02, test's own sampling noise, which is why a config's epsilon sits below the gap it is meant
  to keep."""
  for name in (split, fit_split or split):
    if name not in context.splits:
      raise ValueError(f"eo_frontier: split {name!r} is not evaluated; the run evaluates {sorted(context.splits)}")
  head, grouping = context.primary
  labels = groups.group_labels(grouping)
  rows = _known_primary_scores(context, split)
  epsilons = [float(e) for e in epsilons]
  results = frontier.equalized_odds_frontier(rows["score"], rows["label"], rows["group"], epsilons,
                                             num_groups=len(labels))
  fitted = None
  if fit_split:
    fit_rows = _known_primary_scores(context, fit_split)
    fitted = thresholds.frontier(*((r["score"], r["label"], r["group"]) for r in (fit_rows, rows)), epsilons,
                                 num_groups=len(labels), num_resamples=num_resamples, seed=context.config.seed,
                                 min_group_size=min_group_size)
  found = Findings()
  if context.writes:
    title = f"Equalized-odds frontier of {head} by {grouping} on {split} (checkpoint {context.step})"
    frontier_report.write_tables(run_report.split_dir(context.workdir, split), results, labels,
                                 frontier.model_as_is(rows["score"], rows["label"], rows["group"], len(labels)),
                                 title, fitted=fitted, fit_split=fit_split)
    found.notes.append(f"Equalized-odds frontier of {head} by {grouping}: [{split}/eo_frontier.md]"
                       f"({split}/eo_frontier.md).")
  return found


def _known_primary_scores(context: RunContext, split: str) -> dict:
  """``primary_scores`` of the rows whose label and group are known."""
  rows = primary_scores(context, split)
  known = (rows["label"] >= 0) & (rows["group"] >= 0)
  return {k: v[known] for k, v in rows.items()}
