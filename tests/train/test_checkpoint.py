"""Checkpoints: round trip, last N + best kept, and the equalized-odds selection rule of seed 000 §8.2."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fairjax.train import checkpoint
from fairjax.train.state import TrainState


def _state(value):
  params = {"model": {"w": jnp.full((3,), value, jnp.float32)}}
  return TrainState.create(params=params, model_state={}, tx=optax.adam(1e-3), objective_state={},
                           rng=jax.random.PRNGKey(0))


def test_round_trip_restores_state_and_data_position(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), every_steps=1)
  state = _state(1.5).replace(step=jnp.int32(7))
  assert ckpt.save(7, state, {"batches": 7, "epoch": 0})
  ckpt.wait()
  restored, position = ckpt.restore(ckpt.latest_step(), _state(0.0))
  assert int(restored.step) == 7 and position == {"batches": 7, "epoch": 0}
  np.testing.assert_array_equal(restored.params["model"]["w"], state.params["model"]["w"])
  jax.tree.map(np.testing.assert_array_equal, restored.opt_state, state.opt_state)
  ckpt.close()


def test_keeps_last_n_and_the_best_admissible(tmp_path):
  rule = checkpoint.SelectionRule("val/loss", "min", {"val/equalized_odds_difference": 0.1})
  ckpt = checkpoint.Checkpointer(str(tmp_path), every_steps=1, keep_last=2, keep_best=1, selection=rule,
                                 async_save=False)
  history = {  # step: (val loss, EO gap)
      1: (0.90, 0.05),
      2: (0.40, 0.30),  # lowest loss, but breaks the fairness bound: never best
      3: (0.60, 0.08),  # best admissible
      4: (0.70, 0.02),
      5: (0.80, 0.20),
      6: (0.85, 0.04),
  }
  for step, (loss, gap) in history.items():
    ckpt.save(step, _state(step), {"batches": step},
              metrics={"val/loss": loss, "val/equalized_odds_difference": gap})
  assert ckpt.best_step() == 3
  assert set(ckpt.all_steps()) == {3, 5, 6}
  restored, _ = ckpt.restore(3, _state(0.0))
  assert float(restored.params["model"]["w"][0]) == 3.0
  ckpt.close()
  # A restarted run reads the metrics back from disk: the same checkpoint is still the best, and the
  # next saves keep it.
  reopened = checkpoint.Checkpointer(str(tmp_path), every_steps=1, keep_last=2, keep_best=1,
                                     selection=rule, async_save=False)
  assert reopened.best_step() == 3
  reopened.save(7, _state(7), {"batches": 7}, metrics={"val/loss": 0.95, "val/equalized_odds_difference": 0.0})
  assert set(reopened.all_steps()) == {3, 6, 7}
  reopened.close()


def test_selection_rule_checks_its_mode():
  with pytest.raises(ValueError, match="mode"):
    checkpoint.SelectionRule("val/loss", "lowest")
  rule = checkpoint.SelectionRule("val/accuracy", "max")
  assert rule.score({"val/accuracy": 0.9}) > rule.score({"val/accuracy": 0.8})
  assert rule.score({"val/accuracy": float("nan")}) == float("-inf")
