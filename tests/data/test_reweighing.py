"""Reweighing (Kamiran & Calders): the weights by hand, independence, the registered treatment, and the
weights' way through the pipeline into the standard objective's loss."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from fairjax.data import pipeline
from fairjax.data import plans
from fairjax.data import reweighing
from fairjax.data import treatments
from fairjax.models import forward as forward_lib
from fairjax.models import heads as heads_lib
from fairjax.train import objectives
from fairjax.train import step as step_lib


def _plan(race, gender, age=None):
  n = len(race)
  return plans.as_plan(pd.DataFrame({"age": np.full(n, 30) if age is None else age, "gender": gender,
                                     "race": race}))


def test_weights_by_hand():
  # Five rows: race 0 x3, race 1 x2; men x3, women x2. Cells: (0, m) x2, (0, w), (1, m), (1, w).
  plan = reweighing.reweigh(_plan([0, 0, 0, 1, 1], [0, 0, 1, 0, 1]))
  # w = P(race) P(gender) / P(race, gender): (3/5 * 3/5) / (2/5) = 0.9, (3/5 * 2/5) / (1/5) = 1.2,
  # (2/5 * 3/5) / (1/5) = 1.2, (2/5 * 2/5) / (1/5) = 0.8.
  np.testing.assert_allclose(plan["weight"], [0.9, 0.9, 1.2, 1.2, 0.8])
  assert plan["weight"].sum() == pytest.approx(5)
  assert list(plan.columns) == list(plans.PLAN_COLUMNS) + ["weight"]


def _weighted_table(plan, columns, label):
  table = plan.groupby(columns + [label])["weight"].sum().unstack(fill_value=0.0).to_numpy()
  return table / table.sum()


@pytest.mark.parametrize("attributes", [("race",), ("race", "gender")])
def test_weighted_label_and_group_are_independent(attributes):
  rng = np.random.default_rng(0)
  n = 2000
  race = rng.choice(5, n, p=[0.5, 0.05, 0.2, 0.15, 0.1])
  gender = (rng.random(n) < np.where(race == 1, 0.8, 0.3)).astype(int)  # group 1 mostly women
  age = rng.choice([20, 40, 60], n, p=[0.5, 0.3, 0.2])
  label = "age" if "gender" in attributes else "gender"
  plan = reweighing.reweigh(_plan(race, gender, age), attributes=attributes, label=label)
  joint = _weighted_table(plan, list(attributes), label)
  np.testing.assert_allclose(joint, np.outer(joint.sum(1), joint.sum(0)), atol=1e-12)
  # The marginals are the unweighted ones, and the total weight is the number of rows.
  np.testing.assert_allclose(joint.sum(0), plan.groupby(label).size() / n, atol=1e-12)
  assert plan["weight"].sum() == pytest.approx(n)
  # Reweighing a reweighed plan changes nothing: its weighted frequencies are already independent.
  again = reweighing.reweigh(plan, attributes=attributes, label=label)
  np.testing.assert_allclose(again["weight"], plan["weight"], rtol=1e-10)


def test_unknown_rows_keep_their_weight_and_count_nowhere():
  plan = reweighing.reweigh(_plan([0, 0, 0, 1, 1, -1, 1], [0, 0, 1, 0, 1, 1, -1]))
  np.testing.assert_allclose(plan["weight"], [0.9, 0.9, 1.2, 1.2, 0.8, 1.0, 1.0])


def test_an_empty_cell_is_an_error_naming_it():
  with pytest.raises(ValueError, match=r"1 \(group, gender\) cell.*race=1, gender=0"):
    reweighing.reweigh(_plan([0, 0, 1, 1], [0, 1, 1, 1]))
  with pytest.raises(ValueError, match="cannot also be a sensitive attribute"):
    reweighing.reweigh(_plan([0, 1], [0, 1]), attributes=("gender",))
  with pytest.raises(ValueError, match="no row has a known"):
    reweighing.reweigh(_plan([-1, -1], [0, 1]))


def test_registered_treatment_and_later_treatments_keep_the_weights():
  rng = np.random.default_rng(1)
  n = 300
  frame = pd.DataFrame({"age": rng.integers(5, 80, n), "gender": rng.integers(0, 2, n),
                        "race": rng.integers(0, 5, n)})
  plan = treatments.apply(frame, ["reweigh"], seed=0, options={"reweigh": {"attributes": ["race"]}})
  np.testing.assert_allclose(plan["weight"], reweighing.reweigh(frame)["weight"])
  older = treatments.get("min_age")(plan, age=16)
  kept = plan[plan["age"] >= 16]
  np.testing.assert_allclose(older["weight"], kept["weight"])


def _source(n=12):
  images = np.zeros((n, 4, 4, 3), np.uint8)
  labels = {"age": np.full(n, 30), "gender": np.arange(n) % 2, "race": np.arange(n) % 3}
  return pipeline.ArraySource(images, labels)


def test_batches_carry_the_plan_weights():
  source = _source()
  plan = plans.as_plan(pd.DataFrame({"age": np.full(12, 30), "gender": np.arange(12) % 2,
                                     "race": np.arange(12) % 3})).assign(weight=np.arange(12) / 4.0)
  batches = list(pipeline.train_batches(source, global_batch_size=4, seed=0, num_epochs=1, plan=plan,
                                        preprocess=pipeline.Preprocess((4, 4)), num_threads=1))
  for batch in batches:
    assert batch["weight"].dtype == np.float32
    np.testing.assert_allclose(batch["weight"], batch["index"] / 4.0)
  plain = next(iter(pipeline.train_batches(source, global_batch_size=4, seed=0, num_epochs=1,
                                           preprocess=pipeline.Preprocess((4, 4)), num_threads=1)))
  np.testing.assert_array_equal(plain["weight"], np.ones(4, np.float32))
  padded = list(pipeline.eval_batches(source, global_batch_size=8, preprocess=pipeline.Preprocess((4, 4)),
                                      num_threads=1))[-1]
  np.testing.assert_array_equal(padded["weight"], [1, 1, 1, 1, 0, 0, 0, 0])


class _Logistic(nn.Module):
  heads: tuple = (heads_lib.HeadSpec("gender", "binary"),)

  @nn.compact
  def __call__(self, x, train=False):
    return {"embedding": x.reshape(x.shape[0], -1), "gender": nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]}


def test_the_standard_objective_weighs_examples_as_repeats():
  """Integer weights are repeats: weights (2, 1, 0) give the loss of the batch (a, a, b)."""
  model = _Logistic()
  params = {"model": model.init(jax.random.key(0), jnp.zeros((1, 2, 2, 1)))["params"]}
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (3, 2, 2, 1), dtype=np.uint8)
  objective = objectives.get_objective("standard", model).task

  def loss(batch):
    def fn(b):
      outputs = model.apply({"params": params["model"]}, forward_lib.model_images(b))
      return objective.loss(params["model"], outputs, b, step_lib.AXIS)[0]

    return jax.vmap(fn, axis_name=step_lib.AXIS)(jax.tree.map(lambda a: a[None], batch))[0]

  weighted = loss({"image": images, "gender": np.array([1, 0, 1], np.int32),
                   "weight": np.array([2.0, 1.0, 0.0], np.float32)})
  repeated = loss({"image": images[[0, 0, 1]], "gender": np.array([1, 1, 0], np.int32)})
  np.testing.assert_allclose(weighted, repeated, rtol=1e-6)
