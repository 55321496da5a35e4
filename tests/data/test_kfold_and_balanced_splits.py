"""The split schemes of seed 000 §8: stratified K-fold (§8.1.2) and per-class balanced subsets (§8.2)."""

import numpy as np
import pandas as pd
import pytest

from fairjax.data import experiment


def _kfold_config(fold, k=4):
  config = experiment.default_config()
  config.splits = "kfold"
  config.num_examples.train = 800
  config.stratify_by = ("gender", "race")
  config.kfold.k, config.kfold.fold = k, fold
  return config


def test_kfold_test_parts_partition_the_images_and_keep_the_strata():
  tests = []
  for fold in range(4):
    splits = experiment.build(_kfold_config(fold))
    train, validation, test = (set(splits[n].plan.source_index) for n in ("train", "validation", "test"))
    assert not (train & validation) and not (train & test) and not (validation & test)
    assert len(train | validation | test) == 800
    tests.append(test)
    union = pd.concat([splits[n].plan for n in ("train", "validation", "test")])
    whole = union.groupby(["gender", "race"]).size() / len(union)
    plan = splits["test"].plan
    share = plan.groupby(["gender", "race"]).size().reindex(whole.index, fill_value=0) / len(plan)
    np.testing.assert_allclose(share, whole, atol=0.02)  # each fold keeps the proportions of the whole
    assert abs(len(splits["validation"].plan) - 0.1 * 600) <= 3
  assert set.union(*tests) == set(range(800)) and sum(map(len, tests)) == 800


def test_kfold_rejects_a_fold_outside_k():
  with pytest.raises(ValueError, match=r"fold must lie in \[0, 4\)"):
    experiment.build(_kfold_config(4))


def test_balanced_draws_exactly_per_class_and_keeps_the_test_split_whole():
  config = experiment.default_config()
  config.splits = "balanced"
  config.balanced.base = "natural"
  config.balanced.per_class.train = 300
  config.balanced.per_class.validation = 50
  config.num_examples.train, config.num_examples.validation, config.num_examples.test = 1000, 200, 300
  splits = experiment.build(config)
  assert splits["train"].plan.gender.value_counts().to_dict() == {0: 300, 1: 300}
  assert splits["validation"].plan.gender.value_counts().to_dict() == {0: 50, 1: 50}
  assert len(splits["test"].plan) == 300
  again = experiment.build(config)
  assert list(again["train"].plan.source_index) == list(splits["train"].plan.source_index)
  config.balanced.per_class.train = 600
  with pytest.raises(ValueError, match="fewer than 600"):
    experiment.build(config)
  config.balanced.per_class.train = 10
  config.balanced.base = "kfold"
  with pytest.raises(ValueError, match="'natural' or 'holdout'"):
    experiment.build(config)
