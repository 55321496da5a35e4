"""The README as a new user types it: its commands, verbatim, in a fresh copy of the repository.

Each command runs with its working folder at the root of a copy holding what a clone of this checkout
would (the files git tracks or would track, uncommitted edits included, nothing it ignores such as out/
or *.egg-info), at ``TMP/x/<repo name>`` beside a ``TMP/x/shared`` that links to the real ``../shared``
when there is one; relative paths (``--workdir=out/default``, ``../shared/data``) mean there what they
mean to a user. ``pip install -e .`` runs in a throwaway virtual environment that sees the installed
dependencies (``--system-site-packages``) and comes first on PATH, so the README's ``python`` is that
environment's and the developer's own editable install keeps pointing at their checkout.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.train.test_progress import CPP_NOISE
from tests.train.test_progress import user_environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def _bash_blocks(text):
  return re.findall(r"```bash\n(.*?)```", text, re.S)


def _lines(block):
  """A block's commands: ``\\`` continuations joined, ``# comments`` and blank lines dropped."""
  joined = re.sub(r"\\\n\s*", "", block)
  return [line.split("  #", 1)[0].strip() for line in joined.splitlines() if line.strip()]


def quick_start():
  return _lines(_bash_blocks(README.split("## Quick start", 1)[1])[0])


def readme_commands():
  """Every ``python -m ...`` and ``python benchmarks/...`` command the README gives, but the quick
  start's: in its bash blocks (``&&`` chains split) and in its inline code that passes flags."""
  rest = README.split("## Quick start", 1)[1].split("\n## ", 1)[1]
  found = [part.strip() for block in _bash_blocks(rest) for line in _lines(block) for part in line.split("&&")]
  found += re.findall(r"`(python -m [\w.]+ --[^`]*)`", rest)
  commands = []
  for command in found:
    if re.match(r"python (-m (?!pip\b)|benchmarks/)", command) and command not in commands:
      commands.append(command)
  return commands


def is_template(command: str) -> bool:
  """Whether the command shows a form rather than a command to type: ``[optional]`` parts, ``a|b``
  alternatives, ``...`` or a placeholder in capitals (NAME, DIR, OUT, CONFIG)."""
  return bool(re.search(r"\[|\||\.\.\.|\b[A-Z][A-Z_]+\b", command))


# Concrete commands that have a cheaper form, what it adds (later flags win), and why. Each module's own
# defaults are what the README promises; these only shrink the work.
SMOKE_FLAGS = {
    "python -m fairjax.data --dataset=synthetic_faces --output_dir=out/data/synthetic":
        ["--num_examples=64"],  # draws 64 faces instead of the training split's 8,000
    "python benchmarks/metrics_vs_fairlearn.py":
        ["--rows=20000", "--n_boot=20", "--fairlearn_boot=2", "--repeats=1"],
    "python benchmarks/train_throughput.py": ["--rounds=1", "--steps=1", "--batch_size=8"],
    # One setting's subprocess instead of two: the stock flags, what fairjax commands run with.
    "python benchmarks/clip_throughput.py": ["--rounds=1", "--steps=1", "--batch_size=1", "--peak_size=64",
                                             "--variants=stock"],
    # One measured process instead of 1, 2 and 4 (test_processes.py runs real multi-process jobs), and the
    # small CNN's projection only.
    "python benchmarks/scaling.py": ["--processes=1", "--steps=1", "--global_batch=8", "--models=cnn",
                                     "--devices=64"],
    # GEAR on a 256-face subset's splits (about 70 faces evaluated) instead of §6.1's 8,000 (2,240).
    "python -m fairjax.main --config=configs/seed000_gender_cnn.py --workdir=out/gear --config.model.name=gear "
    "--config.train.num_epochs=0 --config.data.image_size=200": ["--config.data.subset_size=256"],
}
# Concrete commands whose every form does the full work: their flags are checked with --help only.
HELP_ONLY = {
    "python benchmarks/input_pipeline.py": "decodes the whole UTKFace archive whatever --batches says",
}


def command_args(command: str):
  """(argv, how) for one README command: its --help, its smoke form, or itself."""
  args = shlex.split(command)
  program = args[:3] if args[1] == "-m" else args[:2]
  if is_template(command) or command in HELP_ONLY:
    return program + ["--help"], "--help"
  extra = SMOKE_FLAGS.get(command, [])
  return args + extra, "smoke" if extra else "as written"


def _copy_checkout(dest):
  """The files a clone of this checkout would have, as they are in the working tree, into ``dest``."""
  listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                          check=True, capture_output=True).stdout.decode().split("\0")
  for name in filter(None, listed):
    source = os.path.join(ROOT, name)
    if not os.path.lexists(source):  # deleted in the working tree, not yet in the index
      continue
    os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
    shutil.copy2(source, os.path.join(dest, name), follow_symlinks=False)


def fresh_clone(tmp):
  """``tmp/x/<repo name>`` (a copy of the checkout, see ``_copy_checkout``), ``tmp/x/shared`` and an
  environment whose PATH starts with a new virtual environment's bin folder."""
  clone = os.path.join(tmp, "x", os.path.basename(ROOT))
  _copy_checkout(clone)
  if os.path.isdir(SHARED):
    os.symlink(os.path.realpath(SHARED), os.path.join(tmp, "x", "shared"))
  venv = os.path.join(tmp, "venv")
  subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True, timeout=300)
  # A user's shell: none of the test session's device-count flags, nor the variables fairjax sets for
  # itself (so that it is fairjax that sets them); the caches stay the test session's own.
  env = user_environment(PATH=os.path.join(venv, "bin") + os.pathsep + os.environ.get("PATH", ""),
                         VIRTUAL_ENV=venv)
  env.pop("XLA_FLAGS", None)
  env.pop("PYTHONPATH", None)
  return clone, env


def installed_fairjax(cwd):
  """Where this interpreter imports fairjax from, seen from a neutral folder."""
  return subprocess.run([sys.executable, "-c", "import fairjax; print(fairjax.__file__)"], cwd=cwd,
                        check=True, capture_output=True, text=True, env=user_environment()).stdout.strip()


def test_quick_start_is_two_commands_and_ci_runs_the_test_one_verbatim():
  commands = quick_start()
  assert len(commands) == 2
  ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
  assert commands[1] in ci.splitlines()
  assert "set -euo pipefail" in ci


def test_the_readme_commands_are_found():
  """The parsing above, on the README itself: a command it stopped finding would go untested."""
  commands = readme_commands()
  modules = {shlex.split(c)[2] if c.split()[1] == "-m" else shlex.split(c)[1] for c in commands}
  assert {"fairjax.main", "fairjax.audit", "fairjax.data", "fairjax.clip", "benchmarks/clip_throughput.py",
          "benchmarks/train_throughput.py"} <= modules, commands
  assert not any("pip install" in c or "\\" in c or "#" in c for c in commands), commands
  assert all(c in commands for c in SMOKE_FLAGS) and all(c in commands for c in HELP_ONLY)


@pytest.fixture(scope="module")
def installed_clone(tmp_path_factory):
  """One fresh copy for the README's other commands, installed as its quick start says."""
  tmp = str(tmp_path_factory.mktemp("readme"))
  clone, env = fresh_clone(tmp)
  install = quick_start()[0].split(" && ", 1)[0]
  subprocess.run(["bash", "-c", install], cwd=clone, env=env, check=True, capture_output=True, timeout=600)
  return clone, env


def _param(command):
  argv, how = command_args(command)
  marks = [] if how == "--help" else [pytest.mark.slow]
  if "../shared" in command and not os.path.isdir(os.path.join(SHARED, "data")):
    marks.append(pytest.mark.skip(reason=f"{command} reads ../shared/data, which this machine lacks"))
  return pytest.param(command, marks=marks, id=command)


@pytest.mark.parametrize("command", [_param(c) for c in readme_commands()])
def test_readme_command(command, installed_clone):
  """One README command in the fresh copy: its --help for a template, else itself or its smoke form."""
  clone, env = installed_clone
  argv, how = command_args(command)
  result = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True,
                          timeout=120 if how == "--help" else 600)
  shown = f"{shlex.join(argv)} ({how}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
  if how == "--help":
    assert "--" in result.stdout, shown  # the module imported, its flags parsed and were listed
  assert result.returncode == 0, shown  # --help too: every command runs through fairjax.cli
  assert not CPP_NOISE.search(result.stderr), CPP_NOISE.search(result.stderr).group(0)
