"""The main job end to end in this process: files written, NaN fail-fast, config errors (runs as separate
processes, killed or several at once: test_processes.py)."""

import glob
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import default as default_config
from fairjax.data import experiment as data_experiment
from fairjax.data import groups
from fairjax.train import config as config_lib
from fairjax.train import evaluate
from fairjax.train import loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tiny(config):
  """The smoke config, smaller still: seconds per run on two cores."""
  config.data.num_examples.train = 192
  config.data.num_examples.validation = 32
  config.data.num_examples.test = 64
  return config


def _flat(tree, prefix=""):
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f"{prefix}{k}/"))
    return out
  if isinstance(tree, (list, tuple)):
    return _flat({str(i): v for i, v in enumerate(tree)}, prefix)
  return {prefix: tree}


def test_smoke_run_writes_config_checkpoints_events_and_report(tmp_path):
  config = _tiny(default_config.get_config("smoke"))
  config.eval.privileged.race_x_gender = "Black, female"
  final = loop.train_and_evaluate(config, str(tmp_path))
  assert os.path.exists(tmp_path / "config.json")
  assert glob.glob(str(tmp_path / "events.out.tfevents.*")), "no TensorBoard events"
  assert os.path.exists(tmp_path / "report" / "report.md")
  # One privileged group per grouping for the whole run: the configured one, else the training split's
  # largest, although the test split's own largest race is another.
  splits = data_experiment.build(config.data)
  largest = lambda split: groups.group_labels("race")[int(np.argmax(groups.group_counts(splits[split].plan, "race")))]
  assert largest("test") != largest("train")
  expected = {"race": {"group": largest("train"), "reason": "largest training group"},
              "gender": {"group": "male", "reason": "config"},
              "race_x_gender": {"group": "Black, female", "reason": "config"}}
  for split in ("validation", "test"):
    assert os.path.exists(tmp_path / "report" / split / "by_group.csv")
    summary = json.loads((tmp_path / "report" / split / "summary.json").read_text())
    assert summary["privileged_groups"] == expected
    assert summary["privileged_group"] == f"race={largest('train')}"  # the headline's, gender by race
    assert summary["reports"]["gender"]["race_x_gender"]["privileged_group"] == "race=Black, gender=female"
    assert summary["reports"]["gender"]["gender"]["privileged_group"] == "gender=male"
    low, high = summary["intervals"]["gender/race/worst_group_accuracy"]
    assert low <= summary["metrics"]["gender/race/worst_group_accuracy"] <= high
    assert {f"gender/race/{name}" for name in evaluate.CLASSIFICATION_DISPARITIES} <= set(summary["intervals"])
  report = (tmp_path / "report" / "report.md").read_text()
  assert f"race: {largest('train')} (largest training group); gender: male (config)" in report
  assert f"{final['test/gender/accuracy']:.3f} [" in report
  history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
  assert any("train/loss" in r for r in history) and any("validation/loss" in r for r in history)
  # The default evaluates its test split once, at the end (eval.final_only_splits): never in the history.
  assert tuple(config.eval.final_only_splits) == ("test",)
  assert not any(key.startswith("test/") for r in history for key in r)
  assert 0.0 <= final["test/gender/accuracy"] <= 1.0
  assert final["selected_step"] in (6, 12)  # the end of epoch 1 or 2 (192 rows / batch 32)


@pytest.mark.parametrize("final_only,selection,message", [
    (("train",), "validation/loss", "final_only_splits names \\['train'\\]"),
    (("test",), "test/loss", "selection rule reads 'test/loss'"),
])
def test_final_only_splits_are_checked_before_anything_is_written(final_only, selection, message, tmp_path):
  config = _tiny(default_config.get_config("smoke"))
  config.eval.final_only_splits = final_only
  config.selection.metric = selection
  with pytest.raises(ValueError, match=message):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def _event_scalars(workdir):
  """``{(step, tag): value}`` of every scalar in the run's TensorBoard event files."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only to read the events back)
  scalars = {}
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        scalars[(event.step, value.tag)] = float(tf.make_ndarray(value.tensor))
  return scalars


def test_tensorboard_events_hold_the_history(tmp_path):
  """What TensorBoard shows is what history.jsonl (and so the report's curves) holds, step by step."""
  config = _tiny(default_config.get_config("smoke"))
  config.train.num_epochs = 1
  config.eval.final_only_splits = ()  # every split evaluated at every epoch end, so in the history
  loop.train_and_evaluate(config, str(tmp_path))
  scalars = _event_scalars(str(tmp_path))
  history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
  compared = 0
  for record in history:
    for name, value in record.items():
      if name in ("step", "epoch") or value is None:
        continue
      assert (record["step"], name) in scalars, (record["step"], name)
      np.testing.assert_allclose(scalars[(record["step"], name)], value, rtol=1e-6, err_msg=name)
      compared += 1
  assert compared > 20 and any(r["step"] == 6 and "test/gender/accuracy" in r for r in history)


@pytest.mark.parametrize("config_name", ["default", "default_constrained", "default_grl", "default_jlu", "default_fair"])
def test_loss_falls_on_a_learnable_batch(config_name):
  """Forty steps of each default objective on one repeated batch: the task loss falls by a fifth (it
  reaches about two thirds of its start with the default's Adam 1e-3; dropout keeps it noisy)."""
  config = config_lib.load_config_module(os.path.join(REPO, "configs", f"{config_name}.py")).get_config("smoke")
  config.data.num_examples.train = 64
  config.data.augment.flip, config.data.augment.shift = False, 0.0
  config.train.num_epochs = 50  # the learning-rate schedule spans the run: keep it near its peak
  run = loop._Run(config, "unused")  # pylint: disable=protected-access  (the run's parts, no workdir)
  batch = next(iter(loop.pipeline.train_batches(
      run.train_split.source, global_batch_size=run.batch_size, seed=0, num_epochs=1,
      preprocess=run.preprocess, plan=run.train_split.plan, num_threads=1)))
  state = run.runner.put_state(run.host_state)
  losses = []
  for _ in range(40):
    state, metrics = run.runner.train_step(state, batch)
    losses.append(float(run.runner.fetch(metrics)["loss/gender"]))
  assert np.all(np.isfinite(losses)), losses
  assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), (config_name, losses)


def test_no_checkpoint_holds_the_state_of_a_non_finite_step(tmp_path):
  """Checkpoint and log intervals that are not multiples of each other: a periodic save between two
  logged steps must still come after that step's finiteness check."""
  config = _tiny(default_config.get_config("smoke"))
  config.optimizer.learning_rate = 1e30
  config.train.log_every_steps = 3
  config.train.checkpoint_every_steps = 2
  with pytest.raises(FloatingPointError, match=r"non-finite training step (\d+)") as raised:
    loop.train_and_evaluate(config, str(tmp_path))
  failed = int(raised.value.args[0].split("step ")[1].split(":")[0])
  checkpoints = glob.glob(str(tmp_path / "checkpoints" / "[0-9]*"))
  assert all(int(os.path.basename(p)) < failed for p in checkpoints), (failed, checkpoints)
  for path in checkpoints:
    restored = ocp.PyTreeCheckpointer().restore(os.path.join(path, "state"))
    for key, value in _flat(restored["params"]).items():
      assert np.all(np.isfinite(np.asarray(value))), (path, key)


def test_pmap_and_shard_map_runs_agree(tmp_path):
  results = {}
  for mapper in ("pmap", "shard_map"):
    config = _tiny(default_config.get_config("smoke"))
    config.train.num_epochs = 1
    config.train.mapper = mapper
    results[mapper] = loop.train_and_evaluate(config, str(tmp_path / mapper))
  for key, value in results["pmap"].items():
    np.testing.assert_allclose(results["shard_map"][key], value, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("mapper", ["pmap", "shard_map"])
def test_the_final_evaluation_gives_the_evaluators_embeddings_from_its_own_pass(mapper, tmp_path):
  """One forward pass per split gives the report's sums and the leakage probes' embeddings: the same
  sums as the plain evaluation, the same rows as the evaluators' own pass."""
  config = _tiny(default_config.get_config("smoke"))
  config.train.update(num_epochs=1, mapper=mapper)
  final = loop.train_and_evaluate(config, str(tmp_path))
  run = loop._Run(config_lib.resolve_paths(config), str(tmp_path))  # pylint: disable=protected-access
  run.open_checkpoints()
  state = run.runner.put_state(run.restore(final["selected_step"]))
  embeddings = {}
  merged = run.evaluate(state, list(run.eval_splits), embeddings)
  plain = run.evaluate(state, list(run.eval_splits))
  for split in run.eval_splits:
    for a, b in zip(jax.tree.leaves(merged[split]), jax.tree.leaves(plain[split])):
      np.testing.assert_allclose(a, b, rtol=1e-6)
    separate = run.context(state, final["selected_step"]).embeddings(split)
    assert set(embeddings[split]) == set(separate) == {"embedding", *groups.ATTRIBUTES}
    for key, value in separate.items():
      np.testing.assert_allclose(embeddings[split][key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    assert len(embeddings[split]["embedding"]) == len(run.eval_splits[split].plan)


def test_non_finite_loss_stops_the_run_naming_the_step(tmp_path):
  config = _tiny(default_config.get_config("smoke"))
  config.optimizer.learning_rate = 1e30
  with pytest.raises(FloatingPointError, match=r"non-finite training step \d+"):
    loop.train_and_evaluate(config, str(tmp_path))


def test_unknown_config_keys_are_named():
  config = default_config.get_config("smoke")
  with config.unlocked():
    config.optimizer.learnin_rate = 1e-3
    config.trian = 3
  with pytest.raises(ValueError, match="optimizer.learnin_rate, trian|trian, optimizer.learnin_rate"):
    config_lib.check_config(config)


def test_a_privileged_group_the_grouping_lacks_is_one_error_naming_the_groups():
  config = default_config.get_config("smoke")
  config.eval.privileged.race = "Martian"
  with pytest.raises(ValueError) as raised:
    config_lib.check_config(config)
  message = str(raised.value)
  assert "\n" not in message
  assert message.startswith("config.eval.privileged.race: 'Martian' is not a race group; its groups: White, Black")
  config.eval.privileged.race = "Black"
  config_lib.check_config(config)
  with config.unlocked():
    config.eval.privileged.age = "old"
  with pytest.raises(ValueError, match="unknown config keys: eval.privileged.age"):
    config_lib.check_config(config)
