"""Group DRO (``fairjax.train.example_weights.GroupDRO``): its row weights and its update of the group
distribution against hand values, and what a config says of it. One step on 1 and 4 devices under pmap
and shard_map is ``test_constrained.py``'s (``COMBINATIONS``)."""

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from fairjax.train import config as config_lib
from tests.train.test_constrained import BATCH
from tests.train.test_constrained import LOGITS
from tests.train.test_constrained import _objective
from tests.train.test_constrained import _term
from tests.train.test_constrained import sigmoid

PLAN = pd.DataFrame({"race": [0, 0, 0, 1, -1, 1], "gender": [1, 1, 0, 0, 1, 1], "age": [30] * 6})


def _group_dro(**options):
  _, term = _objective("group_dro", grouping="race", **options)
  term.set_training_rows(PLAN)
  return term


def test_rows_weigh_the_balanced_weights_times_g_q():
  """Race 0 has 3 of the 5 known training rows, race 1 has 2 (balanced: 5/6, 5/4); five races, so a
  row's factor is 5 q_g; a row of unknown race keeps its weight."""
  term = _group_dro()
  uniform = term.init_state()
  np.testing.assert_allclose(np.exp(uniform["log_q"]), np.full(5, 0.2), rtol=1e-6)
  batch = {**BATCH, "race": np.array([0, 0, 1, 1, -1, 0], np.int32)}
  _, balanced = _objective("balanced_weights", grouping="race")
  balanced.set_training_rows(PLAN)
  np.testing.assert_allclose(term.task_rows(batch, uniform)["weight"], balanced.task_rows(batch, {})["weight"],
                             rtol=1e-6)  # q uniform: exactly the balanced weights
  q = np.array([0.5, 0.1, 0.2, 0.1, 0.1], np.float32)
  np.testing.assert_allclose(term.task_rows(batch, {"log_q": jnp.log(q)})["weight"],
                             [5 / 6 * 2.5, 5 / 6 * 2.5, 5 / 4 * 0.5, 5 / 4 * 0.5, 1.0, 5 / 6 * 2.5], rtol=1e-6)


def test_q_follows_the_groups_losses_by_exponentiated_gradient():
  """BATCH: race 0 rows 0-2, race 1 rows 3-5, gender labels 1, 1, 0 | 1, 0, 0. Each group's mean
  binary cross-entropy, then q <- softmax(log q + step_size * loss) over the groups present."""
  term = _group_dro(step_size=0.5)
  p = sigmoid(LOGITS)
  y = BATCH["gender"]
  ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
  loss = np.array([ce[:3].mean(), ce[3:].mean()])
  value, state, metrics = _term(term, LOGITS, BATCH, term.init_state())
  q = np.exp(state["log_q"])
  log_q = np.log(np.full(5, 0.2)) + np.r_[0.5 * loss, 0, 0, 0]
  expected = np.exp(log_q) / np.exp(log_q).sum()
  assert float(value) == 0.0
  np.testing.assert_allclose(q, expected, rtol=1e-5)
  assert float(metrics["dro/q_max"]) == pytest.approx(expected.max(), rel=1e-5)
  assert float(metrics["dro/worst_group_loss"]) == pytest.approx(loss.max(), rel=1e-5)
  # The group with the larger loss gains weight; groups absent from the batch only renormalise.
  assert (q[1] > q[0]) == (loss[1] > loss[0])
  np.testing.assert_allclose(q[2:], q[2], rtol=1e-6)
  # Masked rows and unknown races do not count: race 1's loss from row 3 alone.
  masked = {**BATCH, "mask": np.array([True, True, True, True, False, False]),
            "race": np.array([0, 0, 0, 1, -1, 1], np.int32)}
  _, state, _ = _term(term, LOGITS, masked, term.init_state())
  log_q = np.log(np.full(5, 0.2)) + np.r_[0.5 * loss[0], 0.5 * ce[3], 0, 0, 0]
  np.testing.assert_allclose(np.exp(state["log_q"]), np.exp(log_q) / np.exp(log_q).sum(), rtol=1e-5)


def test_step_size_zero_keeps_q_and_bad_options_are_one_line_errors():
  term = _group_dro(step_size=0.0)
  _, state, _ = _term(term, LOGITS, BATCH, term.init_state())
  np.testing.assert_allclose(np.exp(state["log_q"]), np.full(5, 0.2), rtol=1e-6)
  with pytest.raises(ValueError, match="step_size must be a number >= 0"):
    _group_dro(step_size=-0.1)
  with pytest.raises(ValueError, match="unknown grouping"):
    _objective("group_dro", grouping="age")
  config = config_lib.load_config_module("configs/default.py").get_config("smoke")
  config.objective.terms["group_dro"] = {"stepsize": 0.1}
  with pytest.raises(ValueError, match=r"objective.terms.group_dro: .*'stepsize'.*step_size"):
    config_lib.check_config(config)
