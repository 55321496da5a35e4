"""The CLIP configs: what each variant sets, and their smoke runs end to end (train, report, export, and
the export audited zero-shot by ``fairjax.clip.audit`` and fine-tuned by ``seed000_clip_finetune``)."""

import json
import math
import os

import pytest

from fairjax import clip
from fairjax.clip import audit
from fairjax.train import config as config_lib
from fairjax.train import loop
from tests import test_configs

load = test_configs.load


def test_clip_synthetic_trains_a_fresh_clip_contrastively():
  config = load("clip_synthetic").get_config("")
  assert (config.model.name, config.objective.name) == ("clip_zero_shot", "clip_contrastive")
  assert config.model.kwargs.tokenizer == "captions" and "checkpoint" not in config.model.kwargs
  assert config.data.name == "synthetic_faces" and config.data.synthetic.preset == "default"
  assert tuple(config.model.kwargs.heads) == ("gender", "race")
  with pytest.raises(ValueError, match="unknown argument"):
    load("clip_synthetic").get_config("smoke,typo")


def test_seed000_clip_finetune_variants_follow_section_8():
  module = load("seed000_clip_finetune")
  base = module.get_config("")
  assert base.objective.name == "standard" and tuple(base.model.kwargs.heads) == ("gender",)
  assert base.data.splits == "balanced" and base.data.balanced.by == "gender"
  assert (base.data.balanced.per_class.train, base.data.balanced.per_class.validation) == (1000, 200)
  assert base.train.num_epochs == 10
  assert (base.selection.metric, base.selection.mode, base.selection.bound) == ("validation/loss", "min", 0.1)
  assert base.selection.bound_metric == "validation/gender/gender/accuracy_gap"
  contrastive = module.get_config("contrastive")
  assert contrastive.objective.name == "clip_contrastive" and contrastive.data.splits == "kfold"
  assert (contrastive.data.kfold.k, contrastive.optimizer.learning_rate, contrastive.train.batch_size,
          contrastive.train.num_epochs) == (5, 1e-5, 32, 30)
  assert tuple(contrastive.data.stratify_by) == ("gender", "race")
  constrained = module.get_config("constrained")
  assert constrained.objective.name == "constrained" and constrained.objective.options.head == "gender"
  utk = module.get_config("utkface")
  assert utk.data.name == "utkface" and utk.data.balanced.base == "holdout" and utk.data.manual_dir
  for arg in ("", "contrastive", "constrained", "utkface", "contrastive,utkface,smoke"):
    config_lib.check_config(module.get_config(arg))
  with pytest.raises(ValueError, match="choose one"):
    module.get_config("contrastive,constrained")
  with pytest.raises(ValueError, match="unknown argument"):
    module.get_config("8.2")


def test_finetune_checkpoint_comes_from_the_environment(monkeypatch, tmp_path):
  module = load("seed000_clip_finetune")
  monkeypatch.setenv("FAIRJAX_CLIP_CHECKPOINT", str(tmp_path))
  assert module.get_config("").model.kwargs.checkpoint == str(tmp_path)
  monkeypatch.delenv("FAIRJAX_CLIP_CHECKPOINT")
  assert module.get_config("").model.kwargs.checkpoint.endswith(os.path.join("out", "clip_synthetic",
                                                                             "clip_checkpoint"))
  missing = module.get_config("")
  missing.model.kwargs.checkpoint = str(tmp_path / "nothing")
  with pytest.raises(FileNotFoundError, match="configs/clip_synthetic.py"):
    loop.build_model(missing)


def _check_run(config, workdir, final):
  report = workdir / "report"
  assert (report / "report.md").exists()
  assert json.loads((report / "final_metrics.json").read_text())["selected_step"] == final["selected_step"]
  for split in config.eval.splits:
    assert (report / split / "by_group.csv").exists()
    assert math.isfinite(final[f"{split}/gender/accuracy"])
  assert "clip_checkpoint" in (report / "report.md").read_text()
  model, params = clip.from_pretrained(str(workdir / "clip_checkpoint"))
  assert model.config.vision.image_size == config.data.image_size
  return model, params


@pytest.mark.slow
def test_clip_synthetic_smoke_exports_a_checkpoint_the_audit_and_the_finetune_read(tmp_path):
  config = load("clip_synthetic").get_config("smoke")
  final = loop.train_and_evaluate(config, str(tmp_path / "scratch"))
  assert math.isfinite(final["test/race/accuracy"])
  _check_run(config, tmp_path / "scratch", final)
  exported = str(tmp_path / "scratch" / "clip_checkpoint")
  summary = audit.run(audit.Options(checkpoint=exported, output_dir=str(tmp_path / "audit"), num_examples=48,
                                    methods=("none",), plots=False, retrieval_k=(5,)), log=lambda *_: None)
  assert summary["num_examples"] == 48
  # §8.2's fine-tune starts from the export.
  tune = load("seed000_clip_finetune").get_config("smoke")
  tune.model.kwargs.checkpoint = exported
  tune.data.image_size = config.data.image_size
  final = loop.train_and_evaluate(tune, str(tmp_path / "tuned"))
  _check_run(tune, tmp_path / "tuned", final)


@pytest.mark.slow
@pytest.mark.parametrize("arg", ["contrastive,smoke", "constrained,smoke"])
def test_finetune_smoke_runs_from_the_tiny_checkpoint(arg, tmp_path):
  config = load("seed000_clip_finetune").get_config(arg)
  final = loop.train_and_evaluate(config, str(tmp_path))
  _check_run(config, tmp_path, final)
