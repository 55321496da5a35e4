"""Head losses against hand-computed values, masking and weighting, decoding, spec validation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fairjax.models import heads
from fairjax.models.heads import HeadSpec


def _log_sigmoid(x):
  return -np.log1p(np.exp(-x))


def test_binary_one_unit_is_bce_of_the_logit():
  spec = HeadSpec("gender", "binary")
  logits = jnp.array([2.0, -1.0, 0.5])
  labels = jnp.array([1, 0, 0])
  expected = -np.array([_log_sigmoid(2.0), _log_sigmoid(1.0), _log_sigmoid(-0.5)])
  np.testing.assert_allclose(heads.per_example_loss(spec, logits, labels), expected, rtol=1e-6)
  np.testing.assert_allclose(heads.head_loss(spec, logits, labels), expected.mean(), rtol=1e-6)


def test_binary_two_units_averages_bce_over_one_hot_units():
  # Seed 000 §6.3: Dense(2, sigmoid) with binary cross-entropy on one-hot labels (Keras averages units).
  spec = HeadSpec("gender", "binary", num_outputs=2)
  logits = jnp.array([[1.0, -2.0]])
  expected = -(_log_sigmoid(-1.0) + _log_sigmoid(-2.0)) / 2  # label 1: unit 0 -> 0, unit 1 -> 1
  np.testing.assert_allclose(heads.head_loss(spec, logits, jnp.array([1])), expected, rtol=1e-6)


def test_multiclass_integer_and_soft_targets():
  spec = HeadSpec("race", "multiclass", num_outputs=3)
  logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
  log_z = np.log(np.exp([1.0, 2.0, 3.0]).sum())
  np.testing.assert_allclose(heads.per_example_loss(spec, logits, jnp.array([0, 2])),
                             [log_z - 1.0, np.log(3.0)], rtol=1e-6)
  soft = jnp.array([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
  np.testing.assert_allclose(heads.per_example_loss(spec, logits, soft),
                             [log_z - 1.5, np.log(3.0)], rtol=1e-6)


def test_jlu_confusion_loss_is_minimal_at_a_uniform_posterior():
  spec = HeadSpec("gender", "multiclass", num_outputs=2)
  confusion = jnp.full((2, 2), 0.5)
  np.testing.assert_allclose(heads.head_loss(spec, jnp.zeros((2, 2)), confusion), np.log(2.0), rtol=1e-6)
  assert heads.head_loss(spec, jnp.array([[3.0, -3.0]] * 2), confusion) > np.log(2.0)


@pytest.mark.parametrize("loss,expected", [("mse", (1.0 + 4.0) / 2), ("l1", (1.0 + 2.0) / 2)])
def test_regression_losses(loss, expected):
  spec = HeadSpec("age", "regression", regression_loss=loss)
  value = heads.head_loss(spec, jnp.array([21.0, 28.0]), jnp.array([20.0, 30.0]))
  np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_binned_head_bins_ages_and_decodes_by_expected_value():
  spec = heads.binned_head("age", 16, 72, 4)  # seed 004: 14 bins
  assert spec.num_outputs == 14
  np.testing.assert_allclose(spec.centers, 18 + 4 * np.arange(14))
  np.testing.assert_array_equal(heads.bin_index(spec, jnp.array([16, 19, 20, 71, 72, 90, 3])),
                                [0, 0, 1, 13, 13, 13, 0])
  logits = jnp.zeros((1, 14)).at[0, 2].set(5.0)
  loss = heads.head_loss(spec, logits, jnp.array([25]))  # bin 2
  np.testing.assert_allclose(loss, np.log(np.exp(5.0) + 13) - 5.0, rtol=1e-6)
  probs = np.zeros((2, 14))
  probs[0, 2] = 1.0
  probs[1, [0, 13]] = 0.5
  np.testing.assert_allclose(heads.expected_value(jnp.asarray(probs), spec.centers), [26.0, 44.0])


def test_seed001_101_way_age_decoding_is_sum_of_probability_times_age():
  spec = HeadSpec("age", "binned", num_outputs=101, bin_low=-0.5)
  np.testing.assert_allclose(spec.centers, np.arange(101))
  logits = jax.random.normal(jax.random.key(0), (3, 101))
  probs = np.asarray(jax.nn.softmax(logits))
  expected = (probs * np.arange(101)).sum(1)  # serengil: np.sum(age_distributions * output_indexes)
  pred = heads.predict(spec, logits)
  np.testing.assert_allclose(pred["value"], expected, rtol=1e-5)
  np.testing.assert_array_equal(pred["label"], probs.argmax(1))
  np.testing.assert_array_equal(heads.bin_index(spec, jnp.array([0, 37, 100, 116])), [0, 37, 100, 100])


def test_multilabel_softmax_matches_the_seed002_loop():
  # [4]'s ModelWithLoss: for each positive p, CE(logits[[p] + negatives], 0); mean over all positives.
  spec = HeadSpec("labels", "multilabel_softmax", num_outputs=5)
  logits = np.array([[0.3, -1.0, 2.0, 0.1, 0.7], [1.0, 0.0, -0.5, 0.2, 0.4]], np.float32)
  labels = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 1, 0]])
  losses = []
  for z, y in zip(logits, labels):
    negatives = z[y == 0]
    for p in np.flatnonzero(y):
      row = np.concatenate([[z[p]], negatives])
      losses.append(np.log(np.exp(row).sum()) - z[p])
  np.testing.assert_allclose(heads.head_loss(spec, jnp.asarray(logits), jnp.asarray(labels)),
                             np.mean(losses), rtol=1e-5)


def test_weights_masks_and_unknown_labels():
  spec = HeadSpec("gender", "binary")
  logits = jnp.array([1.0, -1.0, 0.0, 3.0])
  labels = jnp.array([1, 1, -1, 0])  # -1: unknown in the data schema
  per = np.asarray(heads.per_example_loss(spec, logits, jnp.array([1, 1, 0, 0])))
  weights = jnp.array([2.0, 1.0, 5.0, 1.0])
  mask = jnp.array([True, True, True, False])
  total, count = heads.loss_terms(spec, logits, labels, weights, mask)
  np.testing.assert_allclose(total, 2 * per[0] + per[1], rtol=1e-6)
  np.testing.assert_allclose(count, 3.0)
  # Integer weights are repetition: weight 2 == the example twice.
  repeated = heads.head_loss(spec, jnp.array([1.0, 1.0, -1.0]), jnp.array([1, 1, 1]))
  np.testing.assert_allclose(heads.head_loss(spec, logits[:2], labels[:2], weights[:2]), repeated, rtol=1e-6)
  # Nothing known: zero, not NaN.
  assert heads.head_loss(spec, logits, jnp.full((4,), -1)) == 0.0


def test_multitask_loss_sums_weighted_heads_and_takes_per_head_masks():
  specs = (HeadSpec("age", "regression", loss_weight=0.5, regression_loss="l1"),
           HeadSpec("sex", "multiclass", num_outputs=2, label_key="gender"))
  outputs = {"age": jnp.array([30.0, 40.0]), "sex": jnp.array([[0.0, 0.0], [2.0, 0.0]])}
  batch = {"age": jnp.array([33, -1]), "gender": jnp.array([1, 0])}
  total, per_head = heads.multitask_loss(specs, outputs, batch, mask={"age": None, "sex": jnp.array([1, 0])})
  np.testing.assert_allclose(per_head["age"], 3.0)  # the -1 age is unknown
  np.testing.assert_allclose(per_head["sex"], np.log(2.0), rtol=1e-6)
  np.testing.assert_allclose(total, 0.5 * 3.0 + np.log(2.0), rtol=1e-6)
  with pytest.raises(KeyError, match="gender"):
    heads.multitask_loss(specs, outputs, {"age": batch["age"]})


def test_multitask_loss_mean_fn_gives_the_global_batch_mean_across_devices():
  from fairjax.train import collectives  # pylint: disable=import-outside-toplevel
  spec = HeadSpec("gender", "binary")
  logits = jax.random.normal(jax.random.key(1), (4, 3))
  labels = jnp.array([[1, 0, 0], [1, 1, 1], [0, 0, 1], [-1, -1, 1]])
  mean_fn = functools.partial(collectives.global_mean, axis_name="d")

  def loss(lg, lb):
    return heads.multitask_loss((spec,), {"gender": lg}, {"gender": lb}, mean_fn=mean_fn)[0]

  per_device = jax.pmap(loss, axis_name="d", devices=jax.devices()[:4])(logits, labels)
  pooled = heads.head_loss(spec, logits.reshape(-1), labels.reshape(-1))
  np.testing.assert_allclose(per_device, np.full(4, pooled), rtol=1e-5)


def test_predict_shapes_and_labels():
  binary = heads.predict(HeadSpec("g", "binary"), jnp.array([0.3, -0.2]))
  np.testing.assert_array_equal(binary["label"], [1, 0])
  two = heads.predict(HeadSpec("g", "binary", num_outputs=2), jnp.array([[0.1, 0.9], [2.0, -1.0]]))
  np.testing.assert_array_equal(two["label"], [1, 0])
  reg = heads.predict(HeadSpec("a", "regression"), jnp.array([3.0]))
  assert set(reg) == {"value"}


def test_class_groups_read_a_multilabel_head_as_a_classifier():
  # Seed 002: the labels (Man, Woman, Boy, Girl) read as gender, male = {Man, Boy}, female = {Woman, Girl};
  # a fifth label in no group (one of Open Images' other labels) is never read.
  spec = HeadSpec("gender", "multilabel_softmax", num_outputs=5, label_key="people",
                  class_groups=[[0, 2], [1, 3]], class_key="gender")
  assert spec.class_groups == ((0, 2), (1, 3)) and spec.class_label_key == "gender" and spec.key == "people"
  logits = jnp.array([[3.0, 0.0, 0.0, 0.0, 9.0],    # Man highest of the four -> male
                      [0.0, 0.0, 0.0, 2.0, 9.0],    # Girl -> female
                      [0.0, 1.0, 0.5, 0.0, -9.0],   # Woman -> female
                      [0.0, 1.0, 2.0, 1.5, 0.0],    # Boy -> male, above both female labels
                      [1.0, 1.0, 0.0, 0.0, 0.0]])   # a tie goes to the lower class
  np.testing.assert_array_equal(heads.class_scores(spec, logits),
                                [[3.0, 0.0], [0.0, 2.0], [0.5, 1.0], [2.0, 1.5], [1.0, 1.0]])
  predicted = heads.predict(spec, logits)
  np.testing.assert_array_equal(predicted["label"], [0, 1, 1, 0, 0])
  assert predicted["probs"].shape == (5, 5)  # the labels' softmax, as without groups
  # Training is unchanged: the multi-hot targets' loss, with or without the classes.
  plain = HeadSpec("gender", "multilabel_softmax", num_outputs=5, label_key="people")
  targets = jnp.array([[1, 0, 0, 0, 0], [0, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
  np.testing.assert_allclose(heads.head_loss(spec, logits, targets), heads.head_loss(plain, logits, targets))
  np.testing.assert_array_equal(heads.predict(plain, logits)["label"], [4, 4, 1, 2, 0])  # argmax label


@pytest.mark.parametrize("kwargs,match", [
    (dict(class_groups=((0,), (1,)), class_key="gender", kind="multiclass"), "classes of its own"),
    (dict(class_groups=((0, 2), (1, 3))), "go together"),
    (dict(class_key="gender"), "go together"),
    (dict(class_groups=((0, 2), (1, 3)), class_key="people"), "multi-hot targets"),
    (dict(class_groups=((0, 1, 2, 3),), class_key="gender"), "at least 2 non-empty"),
    (dict(class_groups=((0, 2), ()), class_key="gender"), "at least 2 non-empty"),
    (dict(class_groups=((0, 4), (1, 3)), class_key="gender"), r"distinct labels in \[0, 4\)"),
    (dict(class_groups=((0, 2), (2, 3)), class_key="gender"), "distinct labels"),
    (dict(class_groups=(0, 2), class_key="gender"), "groups of label indices"),
])
def test_invalid_class_groups_are_one_line_errors(kwargs, match):
  spec = {**dict(name="gender", kind="multilabel_softmax", num_outputs=4, label_key="people"), **kwargs}
  with pytest.raises(ValueError, match=match) as caught:
    HeadSpec(**spec)
  assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="x", kind="ordinal"), "kind"),
    (dict(name="embedding", kind="binary"), "embedding"),
    (dict(name="x", kind="multiclass", num_outputs=1), "at least 2"),
    (dict(name="x", kind="binary", activation="relu"), "regression heads only"),
    (dict(name="x", kind="regression", regression_loss="huber"), "regression_loss"),
    (dict(name="x", kind="binned", num_outputs=3, bin_width=0), "bin_width"),
])
def test_invalid_specs_are_rejected(kwargs, match):
  with pytest.raises(ValueError, match=match):
    HeadSpec(**kwargs)


def test_specs_are_hashable_and_need_whole_bins():
  assert hash(HeadSpec("a", "regression", hidden=[8, 4])) == hash(HeadSpec("a", "regression", hidden=(8, 4)))
  with pytest.raises(ValueError, match="whole number"):
    heads.binned_head("age", 0, 10, 3)
