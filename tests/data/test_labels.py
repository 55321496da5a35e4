"""Derived label fields: seed 002's multi-hot Man / Woman / Boy / Girl from gender and age, and in batches."""

import numpy as np
import pandas as pd

from fairjax.data import labels
from fairjax.data import pipeline
from fairjax.data import schema

MALE, FEMALE = schema.GENDERS.index("male"), schema.GENDERS.index("female")


def _hot(*names):
  return [int(name in names) for name in labels.PEOPLE]


def test_gender_and_age_give_one_label_and_unknowns_none():
  gender = [MALE, FEMALE, MALE, FEMALE, MALE, FEMALE, -1, MALE, -1]
  age = [40, 25, 5, 17, 18, 0, 30, -1, -1]
  expected = [_hot("Man"), _hot("Woman"), _hot("Boy"), _hot("Girl"),
              _hot("Man"),   # 18 is an adult
              _hot("Girl"),  # UTKFace's babies are aged 0 or 1
              _hot(), _hot(), _hot()]  # gender or age unknown: no positive, so no loss
  got = labels.gender_age_labels(gender, age)
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, expected)
  np.testing.assert_array_equal(labels.gender_age_labels(FEMALE, 70), _hot("Woman"))  # one example


def test_gender_groups_read_man_and_boy_as_male_in_schema_order():
  by_code = [{labels.PEOPLE[i] for i in group} for group in labels.GENDER_GROUPS]
  assert by_code[MALE] == {"Man", "Boy"} and by_code[FEMALE] == {"Woman", "Girl"}
  # Every example's one label lies in the group of its own gender code.
  for gender in (MALE, FEMALE):
    for age in (3, 50):
      (index,) = np.flatnonzero(labels.gender_age_labels(gender, age))
      assert index in labels.GENDER_GROUPS[gender]


def test_the_pipeline_derives_the_field_from_the_labels_the_plan_leaves():
  images = np.zeros((6, 4, 4, 3), np.uint8)
  source = pipeline.ArraySource(images, {"age": [30, 8, 30, 8, 50, 12], "gender": [0, 1, 1, 0, 0, 1],
                                         "race": [0] * 6})
  plan = pd.DataFrame({"source_index": [0, 1, 2, 3, 4], "augment_seed": [-1] * 5,
                       "age": [30, 8, 30, -1, 50], "gender": [0, 1, 1, 0, -1], "race": [0] * 5})
  preprocess = pipeline.Preprocess(image_size=(4, 4))
  (batch,) = pipeline.train_batches(source, global_batch_size=5, seed=0, num_epochs=1, preprocess=preprocess,
                                    plan=plan, num_threads=1)
  rows = dict(zip(batch["index"].tolist(), batch[labels.GENDER_AGE_KEY].tolist()))
  assert rows == {0: _hot("Man"), 1: _hot("Girl"), 2: _hot("Woman"),
                  3: _hot(), 4: _hot()}  # row 3's age and row 4's gender hidden by the plan
  (padded,) = pipeline.eval_batches(source, global_batch_size=8, preprocess=preprocess, num_threads=1)
  assert padded[labels.GENDER_AGE_KEY].shape == (8, len(labels.PEOPLE))
  np.testing.assert_array_equal(padded[labels.GENDER_AGE_KEY][:6],
                                labels.gender_age_labels(source.labels["gender"], source.labels["age"]))
  assert not padded[labels.GENDER_AGE_KEY][~padded["mask"]].any()  # padding rows hold no label
  assert set(pipeline.BATCH_FIELDS) <= set(padded)
