"""The input pipeline: deterministic, exactly resumable, host-count invariant, padded for eval."""

import numpy as np
import pandas as pd
import pytest

from fairjax.data import pipeline


def _source(n=37, size=8):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
  return pipeline.ArraySource(images, {"age": np.arange(n), "gender": np.arange(n) % 2, "race": np.arange(n) % 5})


PRE = pipeline.Preprocess(image_size=(8, 8))


def _train(source, **kw):
  args = dict(global_batch_size=8, seed=3, num_epochs=3, preprocess=PRE, num_threads=2)
  args.update(kw)
  return list(pipeline.train_batches(source, **args))


def test_batches_are_deterministic_and_reshuffled_each_epoch():
  source = _source()
  a, b = _train(source), _train(source)
  assert len(a) == pipeline.num_train_batches(37, 8, 3) == 13
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["index"], y["index"])
    np.testing.assert_array_equal(x["image"], y["image"])
  seen = np.concatenate([x["index"] for x in a])
  first, second = seen[:37], seen[37:74]
  assert sorted(first) == list(range(37)) and sorted(second) == list(range(37))  # each epoch a permutation
  assert list(first) != list(second)
  assert a[0]["image"].shape == (8, 8, 8, 3) and a[0]["image"].dtype == np.uint8
  np.testing.assert_array_equal(a[0]["age"], a[0]["index"])  # labels travel with their image
  np.testing.assert_array_equal(a[0]["image"][0], source.images[a[0]["index"][0]])


def test_resuming_at_a_batch_gives_the_rest_of_the_same_run():
  source = _source()
  full = _train(source)
  resumed = _train(source, start_batch=5)
  assert len(resumed) == len(full) - 5
  for x, y in zip(full[5:], resumed):
    np.testing.assert_array_equal(x["index"], y["index"])


def test_hosts_split_each_global_batch():
  source = _source()
  single = _train(source)
  hosts = [_train(source, process_index=p, process_count=2) for p in range(2)]
  for b, batch in enumerate(single):
    joined = np.concatenate([hosts[0][b]["index"], hosts[1][b]["index"]])
    np.testing.assert_array_equal(joined, batch["index"])
  with pytest.raises(ValueError, match="does not split"):
    _train(source, process_count=3)


def test_plan_repeats_rows_and_carries_augment_seeds():
  source = _source(10)
  plan = pd.DataFrame({"source_index": [0, 0, 0, 5, 9, 9], "augment_seed": [-1, 11, 12, -1, -1, 13]})
  batches = _train(source, plan=plan, global_batch_size=6, num_epochs=1)
  (batch,) = batches
  got = sorted(zip(batch["index"].tolist(), batch["augment_seed"].tolist()))
  assert got == sorted(zip(plan["source_index"], plan["augment_seed"]))
  with pytest.raises(ValueError, match="outside"):
    _train(source, plan=pd.DataFrame({"source_index": [10]}), num_epochs=1)


def test_a_plan_label_of_minus_one_hides_the_records_label():
  source = _source(10)
  plan = pd.DataFrame({"source_index": [2, 3, 4, 5], "augment_seed": [-1] * 4, "age": [2, -1, 4, -1],
                       "gender": [-1, 1, 0, 1], "race": [2, 3, 4, 0]})
  for batch in (_train(source, plan=plan, global_batch_size=4, num_epochs=1)[0],
                next(pipeline.eval_batches(source, global_batch_size=4, plan=plan, preprocess=PRE, num_threads=1))):
    rows = {i: (a, g, r) for i, a, g, r in zip(batch["index"], batch["age"], batch["gender"], batch["race"])}
    assert rows == {2: (2, -1, 2), 3: (-1, 1, 3), 4: (4, 0, 4), 5: (-1, 1, 0)}  # the record's labels shown


def test_eval_covers_every_row_once_with_a_masked_pad():
  source = _source(19)
  batches = list(pipeline.eval_batches(source, global_batch_size=8, preprocess=PRE, num_threads=2))
  assert len(batches) == 3 and all(b["image"].shape[0] == 8 for b in batches)
  mask = np.concatenate([b["mask"] for b in batches])
  index = np.concatenate([b["index"] for b in batches])
  assert mask.sum() == 19
  np.testing.assert_array_equal(index[mask], np.arange(19))
  two_hosts = [list(pipeline.eval_batches(source, global_batch_size=8, preprocess=PRE, process_index=p,
                                          process_count=2, num_threads=2)) for p in range(2)]
  union = np.concatenate([b["index"][b["mask"]] for host in two_hosts for b in host])
  np.testing.assert_array_equal(np.sort(union), np.arange(19))


def test_preprocess_resizes_and_converts_gray():
  rgb = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
  assert pipeline.Preprocess((10, 12))(rgb).shape == (10, 12, 3)
  gray = pipeline.Preprocess((100, 100), grayscale=True)(rgb)
  assert gray.shape == (100, 100, 1) and gray.dtype == np.uint8
  assert pipeline.Preprocess((20, 30))(rgb[..., 0]).shape == (20, 30, 3)  # gray source → RGB


def _label_text(record, index):
  """A stand-in text stage: the fields' values say which record and index they came from."""
  code = int(record["age"]) * 10 + int(record["race"])
  return {"input_ids": np.full(4, code, np.int32), "attention_mask": np.full(4, index % 2, np.int32),
          "ignored": np.zeros(1)}


def test_text_fields_only_with_a_text_stage():
  source = _source()
  plain = _train(source)[0]
  assert not set(pipeline.TEXT_FIELDS) & set(plain)
  for batch in _train(source, text=_label_text):
    assert set(batch) == set(plain) | set(pipeline.TEXT_FIELDS)
    np.testing.assert_array_equal(batch["input_ids"][:, 0], batch["age"] * 10 + batch["race"])
    np.testing.assert_array_equal(batch["attention_mask"][:, 0], batch["index"] % 2)
  last = list(pipeline.eval_batches(source, global_batch_size=8, preprocess=PRE, text=_label_text))[-1]
  assert last["input_ids"].shape == (8, 4) and not last["mask"][-3:].any()
  assert (last["attention_mask"][~last["mask"]] == 0).all()  # padding rows attend to nothing


def test_captions_from_labels_for_a_source_without_them():
  import os  # pylint: disable=g-import-not-at-top
  from fairjax.data import captions  # pylint: disable=g-import-not-at-top
  tokens = captions.CaptionTokens(os.path.join(os.path.dirname(os.path.dirname(__file__)), "clip", "testdata",
                                               "eos_gelu"))
  source = _source()
  batch = next(pipeline.eval_batches(source, global_batch_size=8, preprocess=PRE, text=tokens))
  for i, ids in zip(batch["index"], batch["input_ids"]):
    expected = captions.caption(int(i), int(i) % 2, int(i) % 5, captions.template_of(int(i)))
    np.testing.assert_array_equal(ids, tokens.tokenize(expected)["input_ids"])
