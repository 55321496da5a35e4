"""Every experiment config in ``configs/`` builds, passes the schema, and its model fits its data.

Configs are loaded by path, as ``config_flags`` loads them, so a config that only works when imported
as a package module fails here. The fast tests check what can go wrong without training: unknown keys,
argument handling, a model whose input shape does not fit the configured image size, a primary head
the model lacks. The slow tests run each UTKFace config's 'smoke' variant end to end, when UTKFace is
at hand (``$FAIRJAX_UTKFACE`` or ``../shared/data/UTKFace.tar.gz``), and skip with the reason otherwise.
"""

import glob
import importlib.util
import json
import math
import os
import time

import jax
import numpy as np
import pytest

from fairjax.data import labels
from fairjax.data import utkface
from fairjax.models import registry as model_registry
from fairjax.train import config as config_lib
from fairjax.train import evaluate
from fairjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
CONFIG_NAMES = [os.path.splitext(os.path.basename(p))[0] for p in CONFIG_FILES]
# Where configs/clip_synthetic.py's run (--workdir=out/clip_synthetic) exports the CLIP that
# seed000_clip_finetune starts from unless $FAIRJAX_CLIP_CHECKPOINT says otherwise.
CLIP_SYNTHETIC_EXPORT = os.path.join(ROOT, "out", "clip_synthetic", loop.EXPORT_DIR)

# Variants of the seed configs beyond '' and 'smoke' (each is also checked with ',smoke' appended).
VARIANTS = {
    "seed000_gender_cnn": ("curated", "curated_age_first"),
    "seed000_aghav": ("curated", "curated_age_first"),
    "seed001_vgg_face_age": ("x2", "x3"),
}
SEED_CONFIGS = ("seed000_gender_cnn", "seed000_demographic", "seed000_tripathi", "seed000_aghav",
                "seed001_vgg_face_age", "seed002_resnet18", "seed002_se_resnet101")
# End-to-end runs beyond each UTKFace config's plain 'smoke': the data treatments on real data.
EXTRA_SMOKE_RUNS = (("seed000_gender_cnn", "curated,smoke"), ("seed001_vgg_face_age", "x3,smoke"))
# UTKFace smoke runs that an experiment's smoke test makes (and checks with ``check_smoke_report``), so
# that the suite trains each once.
# The two seed 002 configs differ only in network and head (seed002_resnet18.seed002_config): the ADS's
# smoke run in the experiment's test covers what they share and the multi-label head; the ResNet-18 is
# tested in tests/models/test_resnet.py.
SMOKE_RUN_ELSEWHERE = {"clip_utkface": "tests/experiments/test_clip_utkface.py",
                       "seed002_se_resnet101": "tests/experiments/test_seed002.py",
                       "seed002_resnet18": "tests/experiments/test_seed002.py"}


def load(name: str):
  """The config module ``configs/<name>.py``, loaded from its file."""
  path = os.path.join(ROOT, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"_test_configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _args(name: str) -> list[str]:
  variants = VARIANTS.get(name, ())
  return ["", "smoke", *variants, *(f"{v},smoke" for v in variants)]


def test_seed_configs_are_all_present():
  assert set(SEED_CONFIGS) <= set(CONFIG_NAMES)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_config_has_a_docstring_and_passes_the_schema(name):
  module = load(name)
  assert (module.__doc__ or "").strip(), f"configs/{name}.py needs a module docstring saying what it runs"
  for arg in _args(name):
    config = module.get_config(arg)
    config_lib.check_config(config)


@pytest.fixture(scope="session")
def clip_synthetic_export(tmp_path_factory):
  """A stand-in for ``out/clip_synthetic/clip_checkpoint``, the folder configs/clip_synthetic.py's run
  exports and seed000_clip_finetune starts from by default: its model (architecture, caption tokenizer)
  exported as the run does, with its normalisation. The weights are zeros: nothing trains in seconds
  here, and the tests that read it look at shapes."""
  config = load("clip_synthetic").get_config("")
  model = loop.build_model(config)
  abstract = model_registry.abstract_variables(model)["params"]
  params = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), abstract)
  folder = tmp_path_factory.mktemp("clip_synthetic") / loop.EXPORT_DIR
  return model.export(params, str(folder), config.data.mean, config.data.std)


@pytest.mark.parametrize("name,arg", [(name, arg) for name in CONFIG_NAMES for arg in ("", "smoke")])
def test_model_fits_the_data_and_has_the_primary_head(name, arg, request):
  """The model initialises at the configured image size (shapes only, nothing computed)."""
  config = load(name).get_config(arg)
  checkpoint = config.model.kwargs.get("checkpoint")
  if checkpoint and not os.path.isdir(checkpoint):
    if os.path.normpath(checkpoint) != CLIP_SYNTHETIC_EXPORT:
      pytest.skip(f"{name}:{arg} starts from the checkpoint {checkpoint}, which is not there")
    # The default, clip_synthetic's export, is made by a run of its own; build from the stand-in.
    config.model.kwargs.checkpoint = request.getfixturevalue("clip_synthetic_export")
  model = loop.build_model(config)
  model_registry.abstract_variables(model)
  assert config.eval.primary_head in [h.name for h in model.heads], (name, arg)


@pytest.mark.parametrize("name", SEED_CONFIGS)
def test_seed_config_rejects_unknown_arguments(name):
  with pytest.raises(ValueError, match="unknown argument"):
    load(name).get_config("smoke,typo")


@pytest.mark.parametrize("name", SEED_CONFIGS)
def test_seed_config_reads_utkface_from_the_environment_or_the_shared_copy(name, monkeypatch):
  module = load(name)
  monkeypatch.delenv("FAIRJAX_UTKFACE", raising=False)
  assert module.get_config("").data.manual_dir == os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
  monkeypatch.setenv("FAIRJAX_UTKFACE", "/data/faces/UTKFace.tar.gz")
  assert module.get_config("smoke").data.manual_dir == "/data/faces"
  monkeypatch.setenv("FAIRJAX_UTKFACE", "/data/faces")
  assert module.get_config("").data.manual_dir == "/data/faces"


@pytest.mark.parametrize("name", SEED_CONFIGS)
def test_smoke_variant_is_small(name):
  config = load(name).get_config("smoke")
  assert config.data.name == "utkface"
  assert 0 < config.data.subset_size <= 256
  assert config.data.image_size <= 48
  assert config.train.num_epochs == 1


def test_seed000_gender_cnn_follows_section_6_1():
  config = load("seed000_gender_cnn").get_config("")
  assert config.model.name == "utk_gender_cnn"
  assert (config.optimizer.name, config.optimizer.learning_rate) == ("adam", 1e-4)
  assert config.train.num_epochs == 50
  assert config.data.subset_size == 8000 and config.data.splits == "holdout"
  assert tuple(config.data.stratify_by) == ("age_band", "gender")
  assert config.data.treatments == ()
  assert (config.eval.primary_head, config.eval.primary_grouping) == ("gender", "gender")
  curated = load("seed000_gender_cnn").get_config("curated,smoke")
  assert curated.data.treatments == ("rebalance_race_first",)
  age_first = load("seed000_gender_cnn").get_config("curated_age_first")
  assert age_first.data.treatments == ("rebalance_age_first",)


def test_seed000_grayscale_models_read_grayscale():
  assert load("seed000_tripathi").get_config("").data.grayscale
  assert load("seed000_tripathi").get_config("").data.image_size == 100
  assert load("seed000_aghav").get_config("smoke").data.grayscale


def test_seed001_drops_children_copies_the_old_and_retrains_the_fc_layers():
  module = load("seed001_vgg_face_age")
  base = module.get_config("")
  assert base.data.treatments == () and base.data.filters.min_age.age == 16  # every split, not training only
  assert base.optimizer.trainable == "fc:2" and base.optimizer.name == "adam"
  assert (base.selection.metric, base.selection.mode) == ("validation/loss", "min")
  assert base.eval.primary_head == "age"
  for arg, factor in (("x2", 2), ("x3,smoke", 3)):
    config = module.get_config(arg)
    assert config.data.treatments == ("oversample_old",) and config.data.filters.min_age.age == 16
    assert config.data.treatment_options.oversample_old.factor == factor
    assert config.data.treatment_options.oversample_old.min_age == 60
  with pytest.raises(ValueError):
    module.get_config("x2,x3")


def test_seed002_models_train_on_the_same_faces_and_differ_in_network_and_head():
  baseline, ads = (load(name).get_config("") for name in ("seed002_resnet18", "seed002_se_resnet101"))
  # One data section: 64x64 faces normalised per channel by the training split, flips and crops (§4.1).
  assert baseline.data.to_json_best_effort() == ads.data.to_json_best_effort()
  assert baseline.data.image_size == 64 and len(baseline.data.mean) == len(baseline.data.std) == 3
  assert baseline.data.augment.flip and baseline.data.augment.shift > 0
  for config in (baseline, ads):
    assert tuple(config.eval.groupings) == ("race", "gender", "race_x_gender")
    assert (config.eval.primary_head, config.eval.primary_grouping) == ("gender", "gender")
  (softmax,) = loop.build_model(baseline).heads
  assert (softmax.kind, softmax.num_outputs, softmax.key) == ("multiclass", 2, "gender")
  model = loop.build_model(ads)
  assert model.final_pool is None and model.stage_sizes == (3, 4, 23, 3) and model.se_reduction == 16
  (people,) = model.heads
  assert (people.kind, people.key, people.class_label_key) == ("multilabel_softmax", labels.GENDER_AGE_KEY,
                                                                "gender")
  read_as = [[labels.PEOPLE[i] for i in group] for group in people.class_groups]
  assert read_as == [["Man", "Boy"], ["Woman", "Girl"]]  # in schema.GENDERS order: male, female
  assert evaluate.is_classifier(people) and evaluate.class_names(people) == ["male", "female"]


# ------------------------------------------------------------------------------------------ end to end

def _utkface_smoke_runs():
  runs = []
  for name in CONFIG_NAMES:
    try:
      config = load(name).get_config("smoke")
    except Exception:  # pylint: disable=broad-except  # reported by the fast tests above
      continue
    if config.data.name == "utkface" and name not in SMOKE_RUN_ELSEWHERE:
      runs.append((name, "smoke"))
  return runs + [run for run in EXTRA_SMOKE_RUNS if run[0] in CONFIG_NAMES]


@pytest.mark.slow
@pytest.mark.parametrize("name,arg", _utkface_smoke_runs())
def test_utkface_smoke_run_writes_the_report(name, arg, tmp_path):
  config = load(name).get_config(arg)
  try:
    utkface.find_source(config.data.manual_dir)
  except FileNotFoundError as e:
    pytest.skip(f"UTKFace is not at hand (set FAIRJAX_UTKFACE to the downloaded archive): {e}")
  start = time.perf_counter()
  final = loop.train_and_evaluate(config, str(tmp_path))
  print(f"{name}:{arg} smoke run: {time.perf_counter() - start:.1f} s")
  assert check_smoke_report(config, tmp_path)["selected_step"] == final["selected_step"]


def check_smoke_report(config, workdir) -> dict:
  """Asserts that ``workdir`` (a pathlib.Path) holds ``config``'s finished run and its report; returns
  its final metrics (``final_metrics.json``, as ``train_and_evaluate`` returned them)."""
  report = workdir / "report"
  assert (workdir / "config.json").exists()
  assert (report / "report.md").exists()
  final = json.loads((report / "final_metrics.json").read_text())
  for split in config.eval.splits:
    assert (report / split / "by_group.csv").exists()
    summary = json.loads((report / split / "summary.json").read_text())
    assert summary["primary"] == {"head": config.eval.primary_head, "grouping": config.eval.primary_grouping}
    assert math.isfinite(final[f"{split}/loss"])
    assert f"{split}/{config.eval.primary_head}/loss" in final
  return final
