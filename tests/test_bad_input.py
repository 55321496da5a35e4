"""Bad input to the commands ends as one ``error:`` line: exit status 1, no traceback, nothing written.

Each case runs the command as a user types it, in a folder of the user's (relative workdir and output
folder), and checks that the folder it was asked to write is not there afterwards (or, for a workdir
that already held a run, unchanged). The commands run two at a time: each costs seconds of imports.
"""

import concurrent.futures
import json
import os
import subprocess
import sys

import pytest

from configs import default as default_config
from fairjax.train import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "default.py")

# A config file of the user's that builds on the default (as configs/default_*.py do) and adds lines.
USER_CONFIG = """
from fairjax.train import config as config_lib

def get_config(arg=""):
  config = config_lib.load_config_module({default!r}).get_config("smoke")
{lines}
  return config
"""


def _user_config(folder, name, *lines):
  path = folder / name
  path.write_text(USER_CONFIG.format(default=CONFIG, lines="\n".join(f"  {line}" for line in lines)))
  return str(path)


def _cases(tmp_path):
  """name -> (argv after 'python -m', extra environment, expected text of the error line)."""
  empty = tmp_path / "empty"
  empty.mkdir()
  main = [sys.executable, "-m", "fairjax.main"]
  smoke = f"--config={CONFIG}:smoke"
  extra_key = _user_config(tmp_path, "extra_key.py", "config.train.batch_sizes = 8")
  typo = _user_config(tmp_path, "typo.py", "config.objective.terms['constrained'] = {'epsilom': 0.1}")
  return {
      "missing config file": (main + ["--config=configs/missing.py", "--workdir=run"], {},
                              "config file configs/missing.py not found"),
      "config argument the config lacks": (main + [f"--config={CONFIG}:smok", "--workdir=run"], {},
                                           "takes '' or 'smoke', got 'smok'"),
      "key the schema lacks, in a config file": (
          main + [f"--config={extra_key}", "--workdir=run"], {}, "unknown config keys: train.batch_sizes"),
      "override of the wrong type": (main + [smoke, "--workdir=run", "--config.train.batch_size=abc"], {},
                                     "--config.train.batch_size=abc"),
      "privileged group the grouping lacks": (
          main + [smoke, "--workdir=run", "--config.eval.privileged.race=Martian"], {},
          "config.eval.privileged.race: 'Martian' is not a race group; its groups: White, Black, Asian"),
      "override of a key the config lacks": (main + [smoke, "--workdir=run", "--config.train.batch_sizes=8"], {},
                                             "--config.train.batch_sizes: the config has no key 'batch_sizes'"),
      "missing UTKFace archive": (
          main + [f"--config={os.path.join(REPO, 'configs', 'seed000_gender_cnn.py')}:smoke", "--workdir=run"],
          {"FAIRJAX_UTKFACE": str(empty)}, f"UTKFace not found: expected the archive {empty}"),
      "FairFace folder without its files": (
          main + [smoke, "--workdir=run", "--config.data.name=fairface", f"--config.data.manual_dir={empty}"], {},
          "FairFace labels not found"),
      "CelebA folder without its files": (
          main + [smoke, "--workdir=run", "--config.data.name=celeb_a", f"--config.data.manual_dir={empty}"], {},
          "CelebA files missing"),
      "init_from that is not there": (main + [smoke, "--workdir=run", "--config.model.init_from=weights/vgg.h5"], {},
                                      "weights/vgg.h5: no such file or folder"),
      "misspelt objective option": (
          main + [f"--config={typo}", "--workdir=run"], {},
          "objective.terms.constrained: objective term 'constrained' has no option 'epsilom'; its options: head, "
          "attributes, constraint, epsilon"),
      "unknown experiment model": (
          [sys.executable, "-m", "experiments.seed004_unlearning", "--models=m9", "--output_dir=run"], {},
          "--models must name some of m1"),
      "experiment without UTKFace": (
          [sys.executable, "-m", "experiments.seed004_unlearning", "--dataset=utkface", f"--manual_dir={empty}",
           "--smoke", "--models=m1", "--output_dir=run"], {}, "UTKFace not found"),
  }


def _run(argv, env, cwd):
  environment = {**os.environ, "PYTHONPATH": REPO, **env}
  environment.pop("FAIRJAX_TRACEBACK", None)
  return subprocess.run(argv, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_each_bad_input_is_one_error_line_and_leaves_nothing_behind(tmp_path):
  cases = _cases(tmp_path)
  folders = {name: tmp_path / f"case{i}" for i, name in enumerate(cases)}
  for folder in folders.values():
    folder.mkdir()
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    results = dict(zip(cases, pool.map(lambda name: _run(*cases[name][:2], cwd=folders[name]), cases)))
  for name, result in results.items():
    expected = cases[name][2]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, (name, result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, (name, result.stderr[-3000:])
    assert lines and lines[-1].startswith("error: "), (name, result.stderr[-2000:])
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]], (name, lines)
    assert expected in lines[-1], (name, lines[-1])
    assert not (folders[name] / "run").exists(), (name, "left a folder behind")
  assert "must be downloaded by hand" in [l for l in results["missing UTKFace archive"].stderr.splitlines()
                                          if l.startswith("error:")][0]


@pytest.mark.slow
def test_a_workdir_holding_another_configs_run_is_named_and_left_as_it_was(tmp_path):
  other = default_config.get_config("smoke")
  other.optimizer.learning_rate = 0.5
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(other.to_json_best_effort(indent=2))
  before = sorted(os.listdir(workdir)), (workdir / "config.json").read_text()
  result = _run([sys.executable, "-m", "fairjax.main", f"--config={CONFIG}:smoke", "--workdir=run"], {}, tmp_path)
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert lines[-1].startswith("error: ") and "holds a run of another config" in lines[-1], lines[-1]
  assert "optimizer.learning_rate: 0.5 there, 0.001 here" in lines[-1]
  assert (sorted(os.listdir(workdir)), (workdir / "config.json").read_text()) == before


def test_a_run_saved_before_the_schema_gained_a_key_is_the_same_config(tmp_path):
  """An upgrade that adds a schema key (or an objective option, or composes objectives) must not strand
  finished runs."""
  from fairjax.train import loop  # pylint: disable=g-import-not-at-top
  config = default_config.get_config("smoke")
  config.objective.terms["constrained"] = {"epsilon": 0.05}
  # A run saved before eval.num_resamples existed had the default's intervals, not the smoke's 100.
  config.eval.num_resamples = config_lib.base_config().eval.num_resamples
  saved = json.loads(config.to_json_best_effort())
  del saved["data"]["bias"]["side_size"]  # keys the schema gained since the run
  del saved["eval"]["privileged"], saved["eval"]["num_resamples"]
  saved["train"]["retired_key"] = 1  # a key the schema has lost since
  # The objective as runs saved it before terms composed, with an option at its default named then.
  saved["objective"] = {"name": "constrained", "options": {"epsilon": 0.05, "balance_groups": False}}
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert loop.check_workdir(str(tmp_path), config)
  assert not loop.finished(str(tmp_path), config)  # no report yet
  config.data.bias.side_size = 100  # a real change of what the run does
  with pytest.raises(ValueError, match=r"data.bias.side_size: 0 there, 100 here"):
    loop.check_workdir(str(tmp_path), config)


def test_a_run_saved_before_its_heads_gained_a_field_is_the_same_config(tmp_path):
  """A config that lists its heads saves each as a dict of HeadSpec's fields; a field HeadSpec gains
  later (class_groups, class_key) is, in an older run, at its default, not a change."""
  from fairjax.models import heads as heads_lib  # pylint: disable=g-import-not-at-top
  from fairjax.train import loop  # pylint: disable=g-import-not-at-top
  config = default_config.get_config("smoke")
  config.model.kwargs.heads = (heads_lib.HeadSpec("gender", "multiclass", num_outputs=2),)
  saved = json.loads(config.to_json_best_effort())
  for head in saved["model"]["kwargs"]["heads"]:
    del head["class_groups"], head["class_key"]
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert loop.check_workdir(str(tmp_path), config)
  config.model.kwargs.heads = (heads_lib.HeadSpec("gender", "multiclass", num_outputs=3),)
  with pytest.raises(ValueError, match=r"model.kwargs.heads.0.num_outputs: 2 there, 3 here"):
    loop.check_workdir(str(tmp_path), config)
