"""Synthetic faces: deterministic per (seed, split, index), biases planted as configured, labels visible."""

import numpy as np
import pytest

from fairjax.data import captions
from fairjax.data import schema
from fairjax.data import synthetic_faces as sf

FACES = sf.SyntheticFaces()


def test_same_seed_and_index_give_the_same_pixels_however_drawn():
  meta = FACES.metadata("train", 40)
  images = FACES.images(meta)
  again = sf.SyntheticFaces(sf.SyntheticFacesConfig()).images(FACES.metadata("train", 40))
  np.testing.assert_array_equal(images, again)
  # A shard regenerated alone, in another order and batch, gives the same examples; so does drawing
  # one at a time (the renderer treats rare features, beards, occluders, hard groups, batch-wise).
  shard = FACES.metadata("train", 7, start=30)
  np.testing.assert_array_equal(FACES.images(shard.iloc[::-1]), images[30:37][::-1])
  assert shard.file_name.tolist() == [f"synthetic/0/train/{i}" for i in range(30, 37)]
  test = FACES.metadata("test", 40)
  assert (test.race == 1).any() and (test.beard > 0).any() and (test.occluder > 0).any()
  alone = np.concatenate([FACES.images(test.iloc[i:i + 1]) for i in range(40)])
  np.testing.assert_array_equal(alone, FACES.images(test))
  # metadata(split, n) is a prefix of metadata(split, m).
  longer = FACES.metadata("train", 500)
  assert longer.iloc[:40].reset_index(drop=True).equals(meta)


def test_splits_and_seeds_are_independent_streams():
  images = {split: FACES.images(FACES.metadata(split, 16)) for split in sf.SPLITS}
  other_seed = sf.SyntheticFaces(sf.SyntheticFacesConfig(seed=1)).images(FACES.metadata("train", 16))
  assert not np.array_equal(images["train"], images["validation"])
  assert not np.array_equal(images["train"], images["test"])
  assert not np.array_equal(images["train"], other_seed)  # seed changes the noise textures too
  ages = {split: FACES.metadata(split, 200).age.to_numpy() for split in sf.SPLITS}
  assert not np.array_equal(ages["train"], ages["validation"])


def test_shapes_dtypes_records_and_source():
  faces = sf.SyntheticFaces(sf.SyntheticFacesConfig(image_size=32))
  records = list(faces.records("test", 5, start=3, batch_size=2))
  assert len(records) == 5
  for i, record in enumerate(records, start=3):
    assert set(record) == {"image", "age", "gender", "race", "file_name", "caption"}
    assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
    assert record["age"].dtype == record["gender"].dtype == record["race"].dtype == np.int32
    assert record["file_name"] == f"synthetic/0/test/{i}"
  source = faces.source("test", 10, chunk_size=4)
  assert len(source) == 10
  np.testing.assert_array_equal(source[3]["image"], records[0]["image"])
  assert source[-1]["file_name"] == "synthetic/0/test/9"
  meta = FACES.metadata("train", 3)
  assert list(meta.columns[:4]) == list(schema.METADATA_COLUMNS)
  assert FACES.images(meta).shape == (3, 64, 64, 3)
  with pytest.raises(ValueError, match="missing columns"):
    FACES.images(meta[list(schema.METADATA_COLUMNS)])


def test_default_config_under_represents_group_1_in_training_only():
  train, test = FACES.metadata("train", 20000), FACES.metadata("test", 20000)
  share = np.bincount(train.race, minlength=5) / len(train)
  np.testing.assert_allclose(share, [0.35, 0.05, 0.2, 0.2, 0.2], atol=0.012)
  np.testing.assert_allclose(np.bincount(test.race, minlength=5) / len(test), 0.2, atol=0.012)
  assert FACES.config.sampling("validation") == FACES.config.train
  assert abs(test.gender.mean() - 0.5) < 0.012 and (test.gender == test.true_gender).all()
  assert train.age.min() == 16 and train.age.max() == 80


def test_group_proportions_and_female_fraction_per_group():
  sampling = sf.Sampling(group_proportions=(2, 0, 1, 1, 0), female_fraction=(0.2, 0.5, 0.9, 0.5, 0.5),
                         age_range=(1, 90))
  meta = sf.SyntheticFaces(sf.SyntheticFacesConfig(train=sampling)).metadata("train", 20000)
  share = np.bincount(meta.race, minlength=5) / len(meta)
  np.testing.assert_allclose(share, [0.5, 0, 0.25, 0.25, 0], atol=0.012)
  for group, fraction in [(0, 0.2), (2, 0.9), (3, 0.5)]:
    assert abs(meta.gender[meta.race == group].mean() - fraction) < 0.02
  assert meta.age.min() == 1 and meta.age.max() == 90


def test_spurious_age_gender_split_holds_exactly_and_its_strength_is_a_knob():
  faces = sf.SyntheticFaces(sf.age_gender_spurious_config(1.0))
  train, test = faces.metadata("train", 5000), faces.metadata("test", 5000)
  women, men = train[train.gender == 1], train[train.gender == 0]
  assert women.age.between(16, 35).all() and men.age.between(40, 70).all()  # BD: young women, old men
  assert test[test.gender == 1].age.between(40, 70).all() and test[test.gender == 0].age.between(16, 35).all()
  half = sf.SyntheticFaces(sf.age_gender_spurious_config(0.5)).metadata("train", 20000)
  young_women = half[half.gender == 1].age.between(16, 35).mean()
  # Half the women from the band, half from 16..80 uniformly (20 of 65 ages in the band).
  assert abs(young_women - (0.5 + 0.5 * 20 / 65)) < 0.02


def test_captions_follow_the_labels():
  meta = sf.SyntheticFaces(sf.SyntheticFacesConfig(test=sf.Sampling(age_range=(1, 90)))).metadata("test", 400)
  for row in meta.itertuples():
    caption = row.caption
    assert sf.CAPTION_RACE_WORDS[row.race] in caption
    noun = ("boy", "girl") if row.age <= 19 else ("man", "woman")
    gender_words = {f" {noun[row.gender]}", f" {noun[row.gender]}.", f" {('male', 'female')[row.gender]}.",
                    f" {('male', 'female')[row.gender]} person."}
    assert any(caption.endswith(w) for w in gender_words), caption
    bands = [(13, 19, "teenage"), (20, 35, "young"), (36, 55, "middle-aged"), (56, 90, "old")]
    for low, high, word in bands:
      assert (f" {word} " in caption) == (low <= row.age <= high)
    article, description = caption.rsplit(" of ", 1)[1].split(" ", 1)
    assert article == ("an" if description[0] in "aeiouAEIOU" else "a")
  # Every template is drawn, and each example keeps its caption (a function of its index alone).
  used = {next(t for t in range(len(sf.CAPTION_TEMPLATES))
               if captions.caption(row.age, row.gender, row.race, t) == row.caption) for row in meta.itertuples()}
  assert used == set(range(len(sf.CAPTION_TEMPLATES)))
  again = sf.SyntheticFaces(sf.SyntheticFacesConfig(test=sf.Sampling(age_range=(1, 90)))).metadata("test", 50, 350)
  assert list(again.caption) == list(meta.caption[350:])


def test_label_noise_flips_about_the_configured_fraction_per_group():
  meta = sf.SyntheticFaces(sf.SyntheticFacesConfig(train=sf.Sampling(label_noise=0.1))).metadata("train", 20000)
  assert abs((meta.gender != meta.true_gender).mean() - 0.1) < 0.01
  noisy = sf.Sampling(label_noise=(0, 0.3, 0, 0, 0))
  meta = sf.SyntheticFaces(sf.SyntheticFacesConfig(train=noisy)).metadata("train", 20000)
  flipped = meta.gender != meta.true_gender
  assert not flipped[meta.race != 1].any() and abs(flipped[meta.race == 1].mean() - 0.3) < 0.03
  # The picture keeps the true gender: same latents and pixels as without noise.
  clean = sf.SyntheticFaces().metadata("train", 50)
  noisy_meta = sf.SyntheticFaces(sf.SyntheticFacesConfig(train=sf.Sampling(
      group_proportions=(0.35, 0.05, 0.2, 0.2, 0.2), label_noise=0.5))).metadata("train", 50)
  np.testing.assert_array_equal(FACES.images(clean), FACES.images(noisy_meta))


@pytest.mark.parametrize("kwargs, message", [
    (dict(group_proportions=(1, -1, 1, 1, 1)), "non-negative"),
    (dict(group_proportions=(0, 0, 0, 0, 0)), "sum to a positive"),
    (dict(group_proportions=(1, 1)), "5 values"),
    (dict(age_range=(60, 20)), "age_range"),
    (dict(age_range=(0, 50)), "age_range"),
    (dict(female_fraction=1.5), "female_fraction"),
    (dict(label_noise=(0.1, 0.2)), "label_noise"),
    (dict(age_gender_correlation=2.0), r"\[-1, 1\]"),
    (dict(age_gender_correlation=1.0, age_range=(20, 80)), "inside age_range"),
])
def test_bad_sampling_values_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    sf.Sampling(**kwargs)


def test_bad_config_values_raise():
  with pytest.raises(ValueError, match="difficulty"):
    sf.SyntheticFacesConfig(difficulty=(0, 2, 0, 0, 0))
  with pytest.raises(ValueError, match="image_size"):
    sf.SyntheticFacesConfig(image_size=8)
  with pytest.raises(ValueError, match="split"):
    FACES.metadata("dev", 3)


def test_the_labels_are_in_the_pixels():
  """A linear model on 16x16 thumbnails of a few hundred faces beats chance clearly on every label."""
  from sklearn.linear_model import LogisticRegression

  faces = sf.SyntheticFaces(sf.SyntheticFacesConfig(difficulty=(0.0,) * 5))
  meta = faces.metadata("test", 800)
  x = faces.images(meta).reshape(800, 16, 4, 16, 4, 3).mean((2, 4)).reshape(800, -1) / 255.0
  x -= x[:600].mean(0)
  old = (meta.age >= 48).to_numpy()
  for name, y, chance in [("gender", meta.gender.to_numpy(), 0.5), ("race", meta.race.to_numpy(), 0.2),
                          ("age >= 48", old, 0.5)]:
    model = LogisticRegression(C=0.3, max_iter=3000).fit(x[:600], y[:600])
    accuracy = model.score(x[600:], y[600:])
    assert accuracy > chance + 0.15, (name, accuracy)


def test_balanced_validation_is_drawn_as_the_test_split():
  """The default config's validation: balanced by race where training is not (what a post-processing fit
  needs of the scarce group); a validation Sampling and the flag together are an error."""
  faces = sf.SyntheticFacesConfig(balanced_validation=True)
  assert faces.sampling("validation") == sf.Sampling()
  assert faces.sampling("train").group_proportions[1] == 0.05
  with pytest.raises(ValueError, match="not both"):
    sf.SyntheticFacesConfig(balanced_validation=True,
                                         validation=sf.Sampling()).sampling("validation")
