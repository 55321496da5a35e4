"""Evaluators: listed in the config, options checked before training, run on the reported checkpoint."""

import csv
import json
import os

import numpy as np
import pytest

from fairjax.postprocess import thresholds
from fairjax.train import config as config_lib
from fairjax.train import evaluators
from fairjax.train import leakage
from fairjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _smoke():
  config = config_lib.load_config_module(os.path.join(ROOT, "configs", "default.py")).get_config("smoke")
  config.data.num_examples.train = 128
  config.train.num_epochs = 1
  return config


def test_the_default_evaluators_are_registered_and_listed():
  assert tuple(config_lib.base_config().evaluators) == evaluators.DEFAULT
  assert set(evaluators.DEFAULT) | {"eo_frontier"} <= set(evaluators.names())


@pytest.mark.parametrize("change,message", [
    (lambda c: setattr(c, "evaluators", ("leakage", "leakge")), "unknown evaluator 'leakge'; known: "),
    (lambda c: c.evaluator_options.update({"eo_frontier": {"split": "test"}}),
     "'eo_frontier' is not in config.evaluators"),
    (lambda c: c.evaluator_options.update({"leakage": {"stesp": 3}}),
     "evaluator 'leakage' has no option 'stesp'; its options: hidden, steps, l2"),
    (lambda c: c.postprocess.update(constraint="equalised_odds"), "config.postprocess.constraint must be one of"),
    (lambda c: c.postprocess.update(constraint="equalized_odds", fit_split="EBD"),
     "config.postprocess.fit_split 'EBD' is not evaluated"),
])
def test_a_bad_evaluator_config_is_an_error_before_anything_is_written(change, message, tmp_path):
  config = _smoke()
  change(config)
  with pytest.raises(ValueError, match=message):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def predictor_pools_a_group(workdir) -> bool:
  """Whether the run's saved post-processing rule gave some group the pooled rule (too few faces)."""
  return bool(thresholds.GroupThresholds.load(str(workdir / "report" / "postprocess" / "thresholds.json")).pooled.any())


def test_listed_evaluators_and_post_processing_run_on_the_reported_checkpoint(tmp_path):
  config = _smoke()
  config.evaluators = ("leakage", "eo_frontier")
  config.evaluator_options.eo_frontier = {"split": "validation", "epsilons": (0.1, 1.0)}
  config.postprocess.update(constraint="equalized_odds", epsilon=0.0, min_group_size=5)
  final = loop.train_and_evaluate(config, str(tmp_path))
  # leakage in every split's figures; no t-SNE maps (embedding_maps is not listed); the frontier's tables.
  for split in config.eval.splits:
    assert leakage.metric_name("race") in json.loads((tmp_path / "report" / split / "summary.json").read_text())
    assert f"{split}/{leakage.metric_name('gender')}" in final
    assert not list((tmp_path / "report" / split).glob("embedding_*.png"))
  table = (tmp_path / "report" / "validation" / "eo_frontier.csv").read_text().splitlines()
  assert table[0].startswith("epsilon,accuracy,accuracy_White") and len(table) == 3
  assert "(validation/eo_frontier.md)" in (tmp_path / "report" / "report.md").read_text()
  # The same evaluator after the fact, on the same checkpoint, writes the same table.
  context = loop.reported_context(config, str(tmp_path))
  assert context.step == final["selected_step"] and context.writes
  (tmp_path / "report" / "validation" / "eo_frontier.csv").unlink()
  evaluators.run_evaluators(context, ["eo_frontier"], config.evaluator_options)
  assert (tmp_path / "report" / "validation" / "eo_frontier.csv").read_text().splitlines() == table
  # With fit_split, the deployable frontier beside the oracle: the rule fitted on validation at epsilon 0
  # is the run's own post-processing, judged on test.
  evaluators.run_evaluators(context, ["eo_frontier"], {"eo_frontier": {
      "split": "test", "fit_split": "validation", "epsilons": (0.0, 1.0), "num_resamples": 50,
      "min_group_size": 5}})
  with open(tmp_path / "report" / "test" / "eo_frontier_fitted.csv") as f:
    fitted = list(csv.DictReader(f))
  assert [float(r["epsilon"]) for r in fitted] == [0.0, 1.0]
  assert float(fitted[0]["accuracy"]) == pytest.approx(final["test/postprocessed/gender/accuracy"], rel=1e-4)
  assert float(fitted[0]["accuracy_lo"]) <= float(fitted[0]["accuracy"]) <= float(fitted[0]["accuracy_hi"])
  assert float(fitted[0]["fit_gap"]) < 1e-4 or predictor_pools_a_group(tmp_path)
  frontier_md = (tmp_path / "report" / "test" / "eo_frontier.md").read_text()
  assert "## The rule fitted on validation, judged here" in frontier_md

  # Post-processing: fitted on validation, where every fitted group's rates meet (gap 0 up to rounding);
  # its figures on test, beside the raw ones, are the saved rule's expected figures on test's scores.
  predictor = thresholds.GroupThresholds.load(str(tmp_path / "report" / "postprocess" / "thresholds.json"))
  assert predictor.constraint == "equalized_odds" and predictor.source["fit_split"] == "validation"
  if not predictor.pooled.any():
    assert final["validation/postprocessed/gender/race/equalized_odds_difference"] < 1e-5
  rows = evaluators.primary_scores(context, "test")
  p_post = np.asarray(predictor.probabilities(rows["score"], rows["group"]))
  y = rows["label"]
  np.testing.assert_allclose(final["test/postprocessed/gender/accuracy"],
                             np.mean(np.where(y == 1, p_post, 1 - p_post)), rtol=1e-5)
  tpr = [p_post[(rows["group"] == g) & (y == 1)].mean() for g in range(5) if ((rows["group"] == g) & (y == 1)).any()]
  fpr = [p_post[(rows["group"] == g) & (y == 0)].mean() for g in range(5) if ((rows["group"] == g) & (y == 0)).any()]
  np.testing.assert_allclose(final["test/postprocessed/gender/race/equalized_odds_difference"],
                             max(np.ptp(tpr), np.ptp(fpr)), rtol=1e-5, atol=1e-6)
  report = (tmp_path / "report" / "report.md").read_text()
  assert "## Post-processing" in report and "| equalized-odds gap |" in report
  assert "validation (fit) raw" in report and "(postprocess/thresholds.json)" in report
