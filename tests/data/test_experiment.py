"""The data section of experiment configs: its fields, and the splits and plans ``build`` makes of it."""

import jax
import numpy as np
import pandas as pd
import pytest

from fairjax.data import augment
from fairjax.data import experiment
from fairjax.data import pipeline
from fairjax.data import plans
from fairjax.data import treatments


def _config(**changes):
  config = experiment.default_config()
  config.image_size = 32
  config.num_examples.update(dict(train=400, validation=60, test=80))
  config.update(changes)
  return config


def _labels_match_source(split):
  meta = split.source.metadata
  np.testing.assert_array_equal(meta[["age", "gender", "race"]].to_numpy()[split.plan.source_index],
                                split.plan[["age", "gender", "race"]].to_numpy())


def test_default_config_documents_every_field():
  config = experiment.default_config()
  assert config.name == "synthetic_faces" and config.manual_dir is None and config.splits == "natural"
  assert tuple(config.mean) == (0.0,) and tuple(config.std) == (1.0,) and config.augment.flip
  assert config.holdout_fractions.to_dict() == {"train": 0.72, "validation": 0.08, "test": 0.2}
  assert set(config.treatment_options) == set(treatments.names())
  assert config.treatment_options.oversample_old.factor == 2
  config.manual_dir = "/somewhere"  # the placeholder takes a string


def test_natural_splits_are_the_data_sets_own():
  splits = experiment.build(_config())
  assert set(splits) == {"train", "validation", "test"}
  for name, size in (("train", 400), ("validation", 60), ("test", 80)):
    split = splits[name]
    assert isinstance(split, experiment.DataSplit) and split.name == name and len(split.plan) == size
    assert list(split.plan.columns) == list(plans.PLAN_COLUMNS) and len(split.source) == size
    _labels_match_source(split)
  assert splits["train"].source is not splits["test"].source


def test_holdout_cuts_one_split_in_stratified_parts():
  splits = experiment.build(_config(splits="holdout", subset_size=300))
  sizes = {name: len(split.plan) for name, split in splits.items()}
  assert sizes == {"train": 216, "validation": 24, "test": 60}
  sources = [set(split.plan.source_index) for split in splits.values()]
  assert sum(len(s) for s in sources) == len(set().union(*sources)) == 300
  assert all(split.source is splits["train"].source for split in splits.values())
  _labels_match_source(splits["test"])
  women = {name: split.plan.gender.mean() for name, split in splits.items()}
  assert max(women.values()) - min(women.values()) < 0.05


def test_bias_scheme_trains_on_bd_and_tests_on_held_out_ebd():
  config = _config(splits="bias")
  config.synthetic.preset = "balanced"
  config.num_examples.train = 1500
  splits = experiment.build(config)
  assert set(splits) == {"train", "validation", "test", "EBD", "BD_complement"}
  assert splits["test"].plan.equals(splits["EBD"].plan)
  train = pd.concat([splits["train"].plan, splits["validation"].plan])
  assert train[train.gender == 1].age.between(16, 35).all() and train[train.gender == 0].age.between(40, 70).all()
  assert 0.05 < len(splits["validation"].plan) / len(train) < 0.15
  ebd = splits["EBD"].plan
  assert set(ebd.source_index).isdisjoint(train.source_index)
  assert set(splits["BD_complement"].plan.source_index).isdisjoint(train.source_index)
  counts = pd.crosstab((ebd.age - 16) // 4, ebd.gender)
  assert (counts[0] == counts[1]).all() and len(counts) >= 12


def test_bias_scheme_adds_a_gender_set_from_images_outside_the_subset():
  config = _config(splits="bias", subset_size=1500)
  config.synthetic.preset = "balanced"
  config.num_examples.train = 2500
  config.bias.side_size = 300
  splits = experiment.build(config)
  train = splits["train"].plan
  bd, side = train[train.age >= 0], train[train.age < 0]
  assert (bd.gender == -1).all() and len(side) > 280 and (side.gender >= 0).all()
  assert side.gender.value_counts()[0] == side.gender.value_counts()[1]
  meta = splits["train"].source.metadata
  side_ages = meta.age.to_numpy()[side.source_index]
  assert ((side_ages >= 16) & (side_ages < 72)).all()
  evaluated = set().union(*(splits[k].plan.source_index for k in ("validation", "EBD", "BD_complement")))
  assert set(side.source_index).isdisjoint(evaluated | set(bd.source_index))
  plain = _config(splits="bias", subset_size=1500)
  plain.synthetic.preset = "balanced"
  plain.num_examples.train = 2500
  np.testing.assert_array_equal(experiment.build(plain)["train"].plan.source_index, bd.source_index)
  config.subset_size = 0
  with pytest.raises(ValueError, match="side_size draws the gender data set"):
    experiment.build(config)


def test_bias_scheme_offers_the_gender_set_as_a_split_of_its_own():
  config = _config(splits="bias", subset_size=1500)
  config.synthetic.preset = "balanced"
  config.num_examples.train = 2500
  assert "gender_set" not in experiment.build(config)  # only where asked for
  config.bias.gender_set_size = 300
  splits = experiment.build(config)
  gender_set = splits["gender_set"].plan
  assert len(gender_set) > 280 and (gender_set.age >= 16).all() and (gender_set.age < 72).all()
  counts = pd.crosstab((gender_set.age - 16) // 4, gender_set.gender)
  assert (counts[0] == counts[1]).all()  # age says nothing of gender in it
  used = set().union(*(splits[k].plan.source_index for k in ("train", "validation", "EBD", "BD_complement")))
  assert set(gender_set.source_index).isdisjoint(used)
  # The same draw as the gender data set that side_size adds to training.
  config.bias.side_size = 300
  train = experiment.build(config)["train"].plan
  np.testing.assert_array_equal(np.sort(train[train.age < 0].source_index), np.sort(gender_set.source_index))
  config.subset_size = 0
  config.bias.side_size = 0
  with pytest.raises(ValueError, match="gender_set_size draws the gender data set"):
    experiment.build(config)


def test_treatments_change_only_the_training_plan():
  config = _config(treatments=("min_age", "oversample_old"))
  config.treatment_options.oversample_old.factor = 3
  config.treatment_options.oversample_old.copies = "augment"
  config.treatment_options.min_age.age = 30  # the synthetic faces are 16 to 80
  plain, treated = experiment.build(_config()), experiment.build(config)
  train, plan = plain["train"].plan, treated["train"].plan
  adults, old = (train.age >= 30).sum(), (train.age >= 60).sum()
  assert plan.age.min() == 30
  assert len(plan) == adults + 2 * old and (plan.augment_seed >= 0).sum() == 2 * old
  for name in ("validation", "test"):
    pd.testing.assert_frame_equal(plain[name].plan, treated[name].plan)
  again = experiment.build(config)
  pd.testing.assert_frame_equal(again["train"].plan, plan)
  config.treatments = ("rebalance_race_first",)
  first = experiment.build(config)["train"].plan
  config.seed = 1
  assert not experiment.build(config)["train"].plan.equals(first)


def test_filters_narrow_every_split_before_the_treatments():
  config = _config(treatments=("oversample_old",))
  config.filters.min_age = dict(age=30)  # the synthetic faces are 16 to 80
  plain, filtered = experiment.build(_config()), experiment.build(config)
  for name in ("validation", "test"):  # evaluation splits: exactly the rows of 30 or more
    pd.testing.assert_frame_equal(filtered[name].plan,
                                  plain[name].plan[plain[name].plan.age >= 30].reset_index(drop=True))
  train = plain["train"].plan
  assert len(filtered["train"].plan) == (train.age >= 30).sum() + (train.age >= 60).sum()
  config.treatments = ()
  config.filters.max_age = dict(age=40)
  both = experiment.build(config)
  assert all(split.plan.age.between(30, 40).all() for split in both.values())
  config.filters.min_age = dict(age=200)
  with pytest.raises(ValueError, match=r"data.filters \(max_age, min_age\) on the 'train' split left no examples"):
    experiment.build(config)
  config.filters.min_age = dict(years=30)
  with pytest.raises(ValueError, match="data.filters.min_age has no option 'years'; its options: age"):
    experiment.build(config)
  config.filters = {"youngest": {}}
  with pytest.raises(ValueError, match="unknown data filter 'youngest'; known: known, max_age, min_age"):
    experiment.build(config)


def test_synthetic_presets_and_overrides():
  config = _config()
  config.synthetic.preset = "age_gender_spurious"
  train = experiment.build(config)["train"].plan
  assert train[train.gender == 1].age.max() <= 35 and train[train.gender == 0].age.min() >= 40
  config.synthetic = experiment.default_config().synthetic
  config.synthetic.seed = 3
  assert not experiment.build(config)["train"].plan.equals(experiment.build(_config())["train"].plan)
  config.synthetic.preset = "photoreal"
  with pytest.raises(ValueError, match="unknown synthetic preset 'photoreal'; known: default, balanced"):
    experiment.build(config)


def test_bad_names_and_missing_files_are_clear_errors(tmp_path, image_bytes):
  with pytest.raises(ValueError,
                     match="unknown split scheme 'bootstrap'; known: balanced, bias, holdout, kfold, natural"):
    experiment.build(_config(splits="bootstrap"))
  with pytest.raises(ValueError, match="unknown treatment 'balance'; known: min_age"):
    experiment.build(_config(treatments=("min_age", "balance")))
  with pytest.raises(ValueError, match="unknown data set 'mnist'; known: .*utkface"):
    experiment.build(_config(name="mnist"))
  with pytest.raises(ValueError, match="data.name='utkface' cannot be downloaded: set data.manual_dir"):
    experiment.build(_config(name="utkface", splits="holdout"))
  folder = tmp_path / "UTKFace"
  folder.mkdir()
  for i in range(40):
    (folder / f"{20 + i}_{i % 2}_{i % 5}_2017010100000{i:04d}.jpg.chip.jpg").write_bytes(image_bytes(i))
  with pytest.raises(ValueError, match="splits='natural' needs the data set's own 'validation' split"):
    experiment.build(_config(name="utkface", manual_dir=str(tmp_path)))
  splits = experiment.build(_config(name="utkface", manual_dir=str(tmp_path), splits="holdout"))
  assert sum(len(s.plan) for s in splits.values()) == 40 and splits["train"].source[0]["image"].shape == (32, 32, 3)


def test_describe_plan_counts_rows_copies_and_images():
  config = _config(treatments=("oversample_old",))
  split = experiment.build(config)["train"]
  stats = experiment.describe_plan(split)
  old = (split.source.metadata.age >= 60).sum()
  assert stats["num_examples"] == 400 + old and stats["distinct_images"] == 400 and stats["augmented_copies"] == 0
  assert sum(stats["gender"].values()) == stats["num_examples"] and stats["skipped"] == []
  assert sum(stats["age_band"][band] for band in ("60-69", "70-79", "80-89") if band in stats["age_band"]) == 2 * old


def test_a_built_training_split_feeds_the_pipeline_and_the_augmentation():
  config = _config(treatments=("rebalance_race_first",))
  config.num_examples.train = 120
  split = experiment.build(config)["train"]
  batch = next(pipeline.train_batches(split.source, global_batch_size=16, seed=0, num_epochs=1, plan=split.plan,
                                      preprocess=pipeline.Preprocess((32, 32)), num_threads=1))
  images = jax.jit(lambda b, k: augment.train_images(b, k, config))(batch, jax.random.key(0))
  assert images.shape == (16, 32, 32, 3) and images.dtype == "float32"
  rows = split.plan.set_index(["source_index", "augment_seed"])
  assert all((i, s) in rows.index for i, s in zip(batch["index"], batch["augment_seed"]))
