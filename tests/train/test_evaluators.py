"""Evaluators: listed in the config, options checked before training, run on the reported checkpoint."""

import json
import os

import pytest

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
])
def test_a_bad_evaluator_config_is_an_error_before_anything_is_written(change, message, tmp_path):
  config = _smoke()
  change(config)
  with pytest.raises(ValueError, match=message):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_listed_evaluators_run_in_order_with_their_options(tmp_path):
  config = _smoke()
  config.evaluators = ("leakage", "eo_frontier")
  config.evaluator_options.eo_frontier = {"split": "validation", "epsilons": (0.1, 1.0)}
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
