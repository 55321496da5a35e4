"""Test session set-up: four fake CPU devices, and caches shared by the whole run (and nothing beyond it).

Everything here happens at import, before any test module imports fairjax or initialises JAX, and goes
into environment variables too, so that the subprocesses tests start inherit the same set-up.
"""

import os
import shutil
import tempfile

# Must happen before JAX initialises its backend. One process sees four CPU "devices"; single-device
# code still runs on the first, and tests that need one device build meshes of devices[:1].
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

# One scratch folder per test run, removed when it ends (unless the caller chose the folders).
#  * data/: fairjax.data.decoded_cache, so the UTKFace archive is decoded once per run and size, not
#    once per smoke run (~20 s each), and the tests never read or fill the user's ~/.cache/fairjax.
#  * jax/: JAX's persistent compilation cache. Many tests compile the same programs through fresh jit
#    objects (a new training loop, a new process); on CPU a cache hit costs a read instead of seconds of
#    XLA compiling. Every program is cached, however quick to compile: a smoke run compiles ~160 small
#    ones (the metric figures of every head and grouping), ~11 s of CPU in each new process that a
#    cache of 1.4 MB saves (measured: a default smoke run's user time 31.8 s with a 0.5 s threshold and
#    a warm cache, 20.4 s with none).
_RUN_CACHE = None
if "FAIRJAX_CACHE_DIR" not in os.environ or "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _RUN_CACHE = tempfile.mkdtemp(prefix="fairjax-tests-")
  os.environ.setdefault("FAIRJAX_CACHE_DIR", os.path.join(_RUN_CACHE, "data"))
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_RUN_CACHE, "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position  (after the environment above)

# The environment is read when JAX is first imported; should a plugin have imported it before this
# file, the settings still apply in this process.
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
  if _RUN_CACHE is not None:
    shutil.rmtree(_RUN_CACHE, ignore_errors=True)


# The files that take minutes, longest first (CI's --durations=0 summed per file, 2026-12-07: 81 min of
# test time, 40.5 a worker if shared evenly, in a run of 41.4 min under load). pytest.ini turns off pytest-xdist's
# reordering by test count, so the two workers take files in this order, then the rest in collection
# order: the longest start first instead of being dealt out last, when one worker would run its minutes
# alone after the other has finished. A stale list costs only balance, never a test.
LONGEST_FIRST = (
    "tests/test_quick_start.py",  # the README's full default run
    "tests/test_configs.py",
    "tests/test_readme.py",
    "tests/train/test_processes.py",
    "tests/train/test_constrained.py",
    "tests/train/test_loop.py",
    "tests/experiments/test_clip_synthetic.py",
    "tests/experiments/test_after_training.py",
    "tests/clip/test_objectives.py",
    "tests/experiments/test_seed004.py",
    "tests/train/test_adversarial.py",
    "tests/report/test_run_report.py",
    "tests/experiments/test_seed002.py",
    "tests/models/test_pretrained_tfjs.py",
    "tests/models/test_resnet.py",
    "tests/train/test_objectives.py",
)


def pytest_collection_modifyitems(session, config, items):  # pylint: disable=unused-argument
  """Orders the test files as ``LONGEST_FIRST`` says (a stable sort: tests within a file keep theirs)."""
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
