"""The CLIP configs: what each variant sets, and ``check_clip_run``, the check of a finished CLIP run (its
report and its export) that the smoke runs here and in tests/experiments/test_clip_synthetic.py share."""

import math
import os

import pytest

from fairjax import clip
from fairjax.train import config as config_lib
from fairjax.train import loop
from tests import test_configs

load = test_configs.load


def test_clip_synthetic_trains_a_fresh_clip_contrastively():
  config = load("clip_synthetic").get_config("")
  assert (config.model.name, config.objective.task) == ("clip_zero_shot", "clip_contrastive")
  assert config.model.kwargs.tokenizer == "captions" and "checkpoint" not in config.model.kwargs
  assert config.data.name == "synthetic_faces" and config.data.synthetic.preset == "default"
  assert tuple(config.model.kwargs.heads) == ("gender", "race")
  with pytest.raises(ValueError, match="unknown argument"):
    load("clip_synthetic").get_config("smoke,typo")


def test_seed000_clip_finetune_variants_follow_section_8():
  module = load("seed000_clip_finetune")
  base = module.get_config("")
  assert (base.objective.task, list(base.objective.terms)) == ("standard", []) and tuple(base.model.kwargs.heads) == ("gender",)
  assert base.data.splits == "balanced" and base.data.balanced.by == "gender"
  assert (base.data.balanced.per_class.train, base.data.balanced.per_class.validation) == (1000, 200)
  assert base.train.num_epochs == 10
  assert (base.selection.metric, base.selection.mode, base.selection.bound) == ("validation/loss", "min", 0.1)
  assert base.selection.bound_metric == "validation/gender/gender/accuracy_gap"
  contrastive = module.get_config("contrastive")
  assert contrastive.objective.task == "clip_contrastive" and contrastive.data.splits == "kfold"
  assert (contrastive.data.kfold.k, contrastive.optimizer.learning_rate, contrastive.train.batch_size,
          contrastive.train.num_epochs) == (5, 1e-5, 32, 30)
  assert tuple(contrastive.data.stratify_by) == ("gender", "race")
  constrained = module.get_config("constrained")
  assert list(constrained.objective.terms) == ["constrained"] and constrained.objective.terms.constrained.head == "gender"
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


def check_clip_run(config, workdir):
  """Asserts that ``workdir`` holds ``config``'s finished CLIP run: its report, and an export that loads
  at the trained image size. Returns the export's ``(model, params)``."""
  final = test_configs.check_smoke_report(config, workdir)
  for split in config.eval.splits:
    assert math.isfinite(final[f"{split}/gender/accuracy"])
  assert "clip_checkpoint" in (workdir / "report" / "report.md").read_text()
  model, params = clip.from_pretrained(str(workdir / "clip_checkpoint"))
  assert model.config.vision.image_size == config.data.image_size
  return model, params


# configs/clip_synthetic.py:smoke, its export audited, and seed000_clip_finetune's '' and 'constrained'
# variants fine-tuned from that export, run end to end by tests/experiments/test_clip_synthetic.py (which
# checks each run with check_clip_run); the tiny checkpoint's run here covers the contrastive variant.
@pytest.mark.slow
def test_contrastive_finetune_smoke_runs_from_the_tiny_checkpoint(tmp_path):
  config = load("seed000_clip_finetune").get_config("contrastive,smoke")
  loop.train_and_evaluate(config, str(tmp_path))
  check_clip_run(config, tmp_path)
