"""Checkpoints with orbax: periodic and atomic, keeping the last N and the best by a selection rule.

A checkpoint holds the train state and the input pipeline's position (a small JSON), so a restarted run
continues with exactly the batches an uninterrupted run would have seen. Orbax writes each step to a
temporary folder and renames it when complete, so a run killed mid-save leaves the previous checkpoint
intact and the half-written one is ignored.

Model selection (which checkpoint is "best") is a rule, not just a metric: seed 000 §8.2 keeps the
lowest validation loss among the checkpoints whose equalized-odds gap is below 0.1. ``SelectionRule``
expresses that as a metric, a direction and optional upper bounds on other metrics; a checkpoint that
breaks a bound never counts as best.
"""

import dataclasses
import logging
import math
from typing import Any, Mapping, Optional

from etils import epath
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers


class _NoMetricsNotice(logging.Filter):
  """Drops orbax's warning for a save without metrics under a best-checkpoint rule: the periodic saves
  between evaluations carry none by design (they are kept as the latest, never ranked as best)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "did not provide metrics" not in str(record.msg)


logging.getLogger("absl").addFilter(_NoMetricsNotice())


@dataclasses.dataclass(frozen=True)
class SelectionRule:
  """Best checkpoint = extreme of ``metric`` (``mode`` 'min' or 'max') among those within ``bounds``.

  ``bounds`` maps metric names to upper limits, e.g. {'val/equalized_odds_difference': 0.1}.
  """

  metric: str = "val/loss"
  mode: str = "min"
  bounds: Mapping[str, float] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.mode not in ("min", "max"):
      raise ValueError(f"selection mode must be 'min' or 'max', got {self.mode!r}")

  def admissible(self, metrics: Mapping[str, float]) -> bool:
    for name, limit in self.bounds.items():
      value = metrics.get(name)
      if value is None or not math.isfinite(value) or value >= limit:
        return False
    value = metrics.get(self.metric)
    return value is not None and math.isfinite(value)

  def score(self, metrics: Mapping[str, float]) -> float:
    """Higher is better; inadmissible checkpoints score -inf."""
    if not self.admissible(metrics):
      return -math.inf
    value = float(metrics[self.metric])
    return value if self.mode == "max" else -value


class Checkpointer:
  """Saves ``(state, data position)`` every ``every_steps`` and keeps the last N plus the best."""

  def __init__(self, directory: str, *, every_steps: int, keep_last: int = 2, keep_best: int = 1,
               selection: Optional[SelectionRule] = None, async_save: bool = True):
    self.selection = selection
    policies = [checkpoint_managers.LatestN(n=keep_last)]
    if selection is not None and keep_best:
      policies.append(checkpoint_managers.BestN(
          get_metric_fn=selection.score, reverse=False, n=keep_best,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=every_steps,
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
        # Setting best_fn is what makes orbax write the metrics to disk, so that a restarted run still
        # knows which checkpoint is best; which ones are kept is the preservation policy's business.
        best_fn=selection.score if selection is not None else None,
        best_mode="max",
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True,
    )
    self._manager = ocp.CheckpointManager(epath.Path(directory), options=options)

  def save(self, step: int, state: Any, data_position: Mapping[str, Any], *,
           metrics: Optional[Mapping[str, float]] = None, force: bool = False) -> bool:
    """Saves if ``step`` is due (or ``force``); returns whether it did."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(dict(data_position)))
    clean = None if metrics is None else {k: float(v) for k, v in metrics.items()}
    return self._manager.save(step, args=args, metrics=clean, force=force)

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def best_step(self) -> Optional[int]:
    """The kept checkpoint that scores highest under the selection rule, if any is admissible."""
    if self.selection is None:
      return None
    scored = []
    for step in self._manager.all_steps():
      metrics = self._manager.metrics(step)
      if metrics and self.selection.admissible(metrics):
        scored.append((self.selection.score(metrics), -step, step))
    return max(scored)[2] if scored else None

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """The state (shaped like ``abstract_state``) and data position saved at ``step``."""
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["data"])

  def wait(self) -> None:
    """Blocks until asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
