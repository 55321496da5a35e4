"""The CLIP audit command: image processing in JAX, encoding, caching, debiasing fits, errors, end to end."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import transformers

from fairjax import clip
from fairjax.clip import checkpoint_audit
from fairjax.clip import images as images_lib
from fairjax.data import datasets
from fairjax.data import plans

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")
CHECKPOINT = os.path.join(TESTDATA, "eos_gelu")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _faces(n, split="test"):
  loaded = datasets.load("synthetic_faces", split, num_examples=n)
  return np.stack([loaded.source[i]["image"] for i in range(n)])


def _level(transform):
  """One grey level after normalisation: the most the JAX resize may differ from PIL's."""
  return 1.0 * (transform.rescale or 1.0) / min(transform.std or (1.0,)) + 1e-5


# ------------------------------------------------------------------------------ image processing


@pytest.mark.parametrize("name", ["eos_gelu", "legacy_quick_gelu"])
def test_image_transform_matches_the_processor(name):
  processor = clip.load_processor(os.path.join(TESTDATA, name))
  transform = images_lib.ImageTransform.from_processor(processor.image_processor)
  raw = np.load(os.path.join(TESTDATA, name, "reference.npz"))["raw_images"]  # 40x48: resized then cropped
  for batch in (raw, _faces(6)):
    expected = processor.images(list(batch))
    ours = np.asarray(transform(batch))
    assert ours.shape == expected.shape
    difference = np.abs(ours - expected)
    assert difference.max() <= _level(transform)
    assert difference.mean() < 0.05 * _level(transform)  # almost every pixel identical


def test_image_transform_other_settings():
  faces = _faces(4)
  exact = transformers.CLIPImageProcessorPil(size={"height": 40, "width": 24}, do_center_crop=False,
                                             resample=2, image_mean=0.5, image_std=0.25)
  transform = images_lib.ImageTransform.from_processor(exact)
  assert transform.size == (40, 24) and transform.method == "linear" and transform.crop is None
  expected = np.asarray(exact(images=list(faces), return_tensors="np")["pixel_values"]).transpose(0, 2, 3, 1)
  assert np.abs(np.asarray(transform(faces)) - expected).max() <= 1 / 255 / 0.25 + 1e-5
  # The shorter side takes shortest_edge and the longer one is truncated, as transformers computes it.
  assert images_lib.ImageTransform(shortest_edge=32).resized_shape(40, 48) == (32, 38)
  with pytest.raises(ValueError, match="nearest"):
    images_lib.ImageTransform.from_processor(transformers.CLIPImageProcessorPil(resample=0))
  with pytest.raises(ValueError, match="larger than the resized image"):
    images_lib.ImageTransform(shortest_edge=16, crop=(32, 32))(faces)
  with pytest.raises(ValueError, match="uint8"):
    images_lib.ImageTransform(shortest_edge=16)(faces.astype(np.float32))


def test_encoded_rows_match_the_processor_path():
  model, params = clip.from_pretrained(CHECKPOINT)
  processor = clip.load_processor(CHECKPOINT)
  transform = images_lib.ImageTransform.from_processor(processor.image_processor)
  loaded = datasets.load("synthetic_faces", "test", num_examples=7)
  rows = checkpoint_audit.Rows("test", loaded.source, plans.as_plan(loaded.metadata).iloc[[5, 0, 3, 6, 1]], [])
  embedded = checkpoint_audit.encode_rows(rows, images_lib.image_encoder(model, params, transform), batch_size=2)
  faces = np.stack([loaded.source[i]["image"] for i in (5, 0, 3, 6, 1)])
  reference = np.asarray(model.apply({"params": params}, processor.images(list(faces)), method=model.encode_image))
  cosine = np.sum(embedded.embeddings * reference, 1) / np.linalg.norm(embedded.embeddings, axis=1) / \
      np.linalg.norm(reference, axis=1)
  assert embedded.embeddings.shape == reference.shape
  assert cosine.min() > 0.9999
  np.testing.assert_array_equal(embedded.source_index, [5, 0, 3, 6, 1])
  np.testing.assert_array_equal(embedded.gender, loaded.metadata["gender"].to_numpy()[[5, 0, 3, 6, 1]])


def test_embedding_cache_is_keyed(tmp_path):
  embedded = checkpoint_audit.Embedded(np.ones((3, 4), np.float32), np.array([0, 1, 0]), np.array([1, 2, 3]), np.arange(3))
  path = str(tmp_path / "embeddings" / "test.npz")
  assert checkpoint_audit.read_cache(path, {"split": "test"}) is None
  checkpoint_audit.write_cache(path, {"split": "test"}, embedded)
  again = checkpoint_audit.read_cache(path, {"split": "test"})
  assert again.from_cache and not embedded.from_cache
  np.testing.assert_array_equal(again.embeddings, embedded.embeddings)
  np.testing.assert_array_equal(again.race, embedded.race)
  assert checkpoint_audit.read_cache(path, {"split": "test", "num_examples": 2}) is None  # another key: encode again
  with open(path, "wb") as f:  # a torn file is encoded again, not an error
    f.write(b"not npz")
  assert checkpoint_audit.read_cache(path, {"split": "test"}) is None


# ------------------------------------------------------------------------------------- debiasing


def _planted_texts(rng, dim, gender_axis):
  """Texts whose gender pairs differ only along ``gender_axis``."""
  base = rng.normal(size=(26, dim))
  gendered = np.stack([base + gender_axis, base - gender_axis], 1)
  unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
  classes = {"set": unit(np.stack([rng.normal(size=dim) + 3 * gender_axis, rng.normal(size=dim) - 3 * gender_axis]))}
  return checkpoint_audit.Texts(classes, unit(rng.normal(size=(4, dim))), unit(rng.normal(size=(6, dim))),
                     unit(rng.normal(size=(5, 2, dim))), unit(gendered))


def test_defining_sets_find_the_gender_direction_and_the_seeds_sets_do_not():
  rng = np.random.default_rng(0)
  dim, axis = 16, np.eye(16)[0] * 2.0
  gender = np.repeat([0, 1], 100)
  x = rng.normal(size=(200, dim)) + np.where(gender[:, None] == 0, axis, -axis)
  fit = checkpoint_audit.Embedded(x.astype(np.float32), gender, np.zeros(200, np.int64), np.arange(200))
  texts = _planted_texts(rng, dim, axis)
  options = checkpoint_audit.Options(checkpoint="", output_dir="", subspace_k=1, alpha=1.0)
  defining = checkpoint_audit.fit_subspace("subspace", fit, texts, options)
  seed_sets = checkpoint_audit.fit_subspace("subspace_seed", fit, texts, options)
  assert abs(defining.basis[0, 0]) > 0.9
  assert abs(seed_sets.basis[0, 0]) < 0.5
  # Applied with alpha 1, the defining-set subspace leaves images and classes without the gender axis.
  debiased, classes, _, info, left_out = checkpoint_audit.apply_method("subspace", x, texts, fit, options)
  assert np.abs(np.corrcoef(debiased[:, 0], gender)[0, 1]) < 0.2
  assert info["k"] == 1 and info["fit_images_by_gender"] == {"male": 100, "female": 100} and not left_out
  assert np.abs(classes["set"][:, 0]).max() < 0.1


def test_projection_leaves_out_sets_it_annihilates():
  rng = np.random.default_rng(1)
  texts = _planted_texts(rng, 16, np.eye(16)[0])
  texts.classes["in the span"] = texts.biased[:2]
  options = checkpoint_audit.Options(checkpoint="", output_dir="")
  x = rng.normal(size=(5, 16))
  same_x, classes, queries, info, left_out = checkpoint_audit.apply_method("prompt_projection", x, texts, None, options)
  assert same_x is x and set(classes) == {"set"} and "in the span" in left_out and info["pairs"] == 0
  np.testing.assert_allclose(queries @ texts.biased.T, 0.0, atol=1e-4)
  # The calibrated P0 (I + λM)⁻¹ moves a biased prompt out of the span before projecting: nothing is lost.
  _, classes, queries, info, left_out = checkpoint_audit.apply_method("calibrated", x, texts, None, options)
  assert set(classes) == {"set", "in the span"} and not left_out and info["pairs"] == 5
  np.testing.assert_allclose(queries @ texts.biased.T, 0.0, atol=1e-4)


def test_fit_rows_balance_genders_and_need_both():
  plan = pd.DataFrame({"source_index": np.arange(10), "gender": [0] * 7 + [1] * 3, "race": [0] * 10,
                       "age": [30] * 10})
  rows = checkpoint_audit.fit_rows(checkpoint_audit.Rows("validation", None, plan, []), per_group=4, seed=0)
  assert rows.plan["gender"].value_counts().to_dict() == {0: 4, 1: 3}
  with pytest.raises(checkpoint_audit.CLIPAuditError, match="1 female image"):
    checkpoint_audit.fit_rows(checkpoint_audit.Rows("validation", None, plan.iloc[:8], []), per_group=4, seed=0)


def test_gendered_text_pairs_are_no_zero_shot_prompt():
  pairs = checkpoint_audit.gendered_text_pairs()
  used = {t for s in checkpoint_audit.prompt_sets(checkpoint_audit.PROMPT_GROUPS).values() for c in s.texts for t in c}
  assert len(pairs) >= 20 and not used & {t for p in pairs for t in p}
  assert all(m != f for m, f in pairs)


# ----------------------------------------------------------------------------------------- errors


class _Records:
  def __init__(self, n, gender, race):
    self.gender, self.race, self.n = gender, race, n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {"image": np.full((32, 32, 3), 100, np.uint8), "gender": self.gender[i], "race": self.race[i], "age": 30}


def _register(name, sizes, gender_of, race_of=lambda i: i % 5):
  if name in datasets.names():
    return

  @datasets.register(name)
  def _load(split, manual_dir=None):
    del manual_dir
    n = sizes.get(split, 0)
    gender = np.asarray([gender_of(split, i) for i in range(n)], np.int32)
    race = np.asarray([race_of(i) for i in range(n)], np.int32)
    metadata = pd.DataFrame({"file_name": [f"{split}{i}" for i in range(n)], "age": np.full(n, 30, np.int32),
                             "gender": gender, "race": race})
    return datasets.Split(name, split, metadata, _Records(n, gender, race))


_register("_audit_no_gender", {"test": 6, "validation": 6}, lambda split, i: -1)
_register("_audit_empty", {"test": 0, "validation": 6}, lambda split, i: i % 2)
_register("_audit_one_gender_fit", {"test": 6, "validation": 6}, lambda split, i: i % 2 if split == "test" else 0)


@pytest.mark.parametrize("change, message", [
    (dict(checkpoint="/nonexistent/clip"), "no such checkpoint folder"),
    (dict(dataset="_audit_no_gender"), "no gender labels"),
    (dict(dataset="_audit_empty"), "has no images"),
    (dict(dataset="_audit_one_gender_fit", methods=("none", "subspace")), "0 female image"),
    (dict(fit_split="test"), "must be fitted on images the audit does not score"),
    (dict(prompt_sets=("race",)), "needs seed003 or templated"),
    (dict(methods=("none", "whitening")), "--debias must name"),
    (dict(retrieval_k=("ten",)), "--retrieval_k must be integers"),
    (dict(dataset="celeb_b"), "unknown data set"),
    (dict(groupings=("gender",)), "include race"),
    (dict(headline="woman/man"), "no gender set of the audit"),
])
def test_bad_input_is_one_error(tmp_path, change, message):
  options = checkpoint_audit.Options(**{"checkpoint": CHECKPOINT, "output_dir": str(tmp_path / "out"), **change})
  with pytest.raises(checkpoint_audit.CLIPAuditError, match=message):
    checkpoint_audit.run(options, log=lambda _: None)


def test_checkpoint_without_processor_is_one_error(tmp_path):
  folder = tmp_path / "ckpt"
  shutil.copytree(CHECKPOINT, folder)
  os.remove(folder / "preprocessor_config.json")
  with pytest.raises(checkpoint_audit.CLIPAuditError, match="preprocessor_config.json"):
    checkpoint_audit.run(checkpoint_audit.Options(checkpoint=str(folder), output_dir=str(tmp_path / "out")), log=lambda _: None)
  os.remove(folder / "model.safetensors")
  with pytest.raises(checkpoint_audit.CLIPAuditError, match="model.safetensors"):
    checkpoint_audit.run(checkpoint_audit.Options(checkpoint=str(folder), output_dir=str(tmp_path / "out")), log=lambda _: None)


# ------------------------------------------------------------------------------------ end to end


def _command(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "fairjax.clip", *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)


@pytest.mark.slow
def test_command_end_to_end(tmp_path):
  out = tmp_path / "audit"
  args = [f"--checkpoint={CHECKPOINT}", "--num_examples=24", "--fit_per_group=8", "--prompt_sets=seed003,race",
          "--debias=none,subspace,calibrated", "--retrieval_k=5,50", "--noplots", "--groupings=race",
          f"--output_dir={out}"]
  done = _command(*args)
  assert done.returncode == 0, done.stderr
  summary = json.loads((out / "summary.json").read_text())
  assert summary["num_examples"] == 24 and summary["fit_images"] == 16 and summary["headline_set"] == "ensemble"
  assert list(summary["methods"]) == ["none", "subspace", "calibrated"]
  for method in summary["methods"]:
    assert (out / method / "summary.json").exists() and (out / method / "retrieval.json").exists()
    assert (out / method / "boy_girl" / "by_group.csv").exists()
    figures = summary["methods"][method]
    assert 0 <= figures["at_0.5"]["accuracy"] <= 1 and figures["retrieval"]["gender"]["5"]["max_skew"] >= 0
    assert "skipped" in figures["retrieval"]["gender"]["50"]  # k above the 24 images
  assert summary["methods"]["subspace"]["fit"]["fit_images_by_gender"] == {"male": 8, "female": 8}
  report = (out / "report.md").read_text()
  assert "seed 000 §8.3" in report and "calibrated projection" in report and "MaxSkew" in report
  # Each method's audit is the zero-shot audit of its own embeddings: 'none' matches a direct audit.
  none = json.loads((out / "none" / "summary.json").read_text())
  assert none["gender"]["ensemble"]["at_0.5"]["accuracy"] == summary["methods"]["none"]["at_0.5"]["accuracy"]
  assert "accuracy" in done.stdout and "report:" in done.stdout

  # A rerun with other prompt sets and methods, into another folder, reads the cached embeddings back.
  options = checkpoint_audit.Options(checkpoint=CHECKPOINT, output_dir=str(tmp_path / "again"), num_examples=24,
                          fit_per_group=8, prompt_sets=("seed003",), methods=("none",), retrieval_k=(5, 50),
                          plots=False, embeddings_dir=str(out / "embeddings"))
  again = checkpoint_audit.run(options, log=lambda _: None)
  assert again["embeddings_from_cache"]
  assert again["methods"]["none"]["sets"] == summary["methods"]["none"]["sets"]

  failed = _command("--checkpoint=/nonexistent/clip", f"--output_dir={tmp_path / 'bad'}")
  assert failed.returncode == 1
  assert failed.stderr.strip().startswith("error: ") and len(failed.stderr.strip().splitlines()) == 1
