"""Label fields derived from a record's own labels, for heads whose targets are none of them as they are.

A head reads its targets from the batch key it names (``HeadSpec.label_key``). Most read a schema label
(``age``, ``gender``, ``race``) as it is, or bin it themselves (a binned age head). A target that is a
function of several labels is derived here, once, and the input pipeline adds every field of
``DERIVED`` to every example from the labels the plan leaves it (a label that a plan row hides is
unknown here too), so it reaches training, evaluation and every mapping like the labels it comes from.

  gender_age_labels  int32 [4], multi-hot over ``PEOPLE`` (Open Images' "Man", "Woman", "Boy",
                     "Girl"), the labels seed 002 reads its ADS's gender from. Open Images gives "Boy"
                     and "Girl" to children and "Man" and "Woman" to adults, so an example holds the one
                     label of its gender and of whether it is under ``ADULT_AGE``. A row whose gender or
                     age is unknown holds none: a multi-label softmax head trains only on positives,
                     so such a row counts nowhere in its loss, as an unknown label is masked elsewhere.
"""

from typing import Callable

import numpy as np

from fairjax.data import schema

PEOPLE = ("Man", "Woman", "Boy", "Girl")
# Open Images has no age threshold of its own; 18 is the usual age of majority.
ADULT_AGE = 18
# (adult, child) label of each gender, in ``schema.GENDERS`` order (male, female).
PEOPLE_BY_GENDER = {"male": ("Man", "Boy"), "female": ("Woman", "Girl")}
# PEOPLE's index of each [schema gender code, is a child]: the one table both readings below come from.
_LABEL_INDEX = np.array([[PEOPLE.index(label) for label in PEOPLE_BY_GENDER[g]] for g in schema.GENDERS])
# ``HeadSpec.class_groups`` that read a head over PEOPLE as a gender classifier (class = schema gender
# code): seed 002 §3.1 combines "Man" and "Boy" into male, "Woman" and "Girl" into female.
GENDER_GROUPS = tuple(tuple(int(i) for i in row) for row in _LABEL_INDEX)


def gender_age_labels(gender, age) -> np.ndarray:
  """Multi-hot ``[..., len(PEOPLE)]`` int32 of schema genders and ages (see the module docstring);
  all zeros where either is unknown (below zero)."""
  gender, age = np.asarray(gender), np.asarray(age)
  known = (gender >= 0) & (age >= 0)
  index = _LABEL_INDEX[np.where(known, gender, 0), (age < ADULT_AGE).astype(np.int64)]
  return ((np.arange(len(PEOPLE)) == index[..., None]) & known[..., None]).astype(np.int32)


GENDER_AGE_KEY = "gender_age_labels"
# Batch key -> the field of one example, from its (possibly hidden) labels.
DERIVED: dict[str, Callable[[dict], np.ndarray]] = {
    GENDER_AGE_KEY: lambda example: gender_age_labels(example["gender"], example["age"]),
}
