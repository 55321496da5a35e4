"""``python -m fairjax.main`` as separate processes: killed at a random moment and resumed, and several
processes as one job under ``jax.distributed``, as on a pod.

Every run here is the same small config (the default's smoke run, 192 training rows, four epochs of six
steps, a checkpoint every two steps) with the same global batch, so that all of them can be compared
with one reference: one process on four CPU devices under pmap (``straight``, trained once per test
run).

The multi-process harness follows JAX's own multi-process tests (``jax/_src/test_multiprocess.py``):
N processes on localhost, each with two CPU devices, joined through a coordinator on a free port
(``fairjax.train.distributed``: ``FAIRJAX_COORDINATOR`` and friends), CPU collectives through gloo.
Every wait is bounded: when a process dies the others are killed at once (as a cluster scheduler ends
a job whose task failed), and a job that outlives ``TIMEOUT`` fails the test instead of hanging CI.
"""

import glob
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.gcs_emulator import GcsEmulator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 2
TIMEOUT = 420  # seconds a whole job may take on a busy 2-core machine
# A two-process run against one process with the same four devices' worth of batch: the same rows reach
# the same step, but gloo sums the gradients across processes in another order than one process sums its
# devices. After 24 steps the parameters differ by at most 3.5e-6 (measured; bound 1e-5), the momentum
# (the last steps' gradients, where a ReLU that flips with the last bits changes a gradient) by at most
# 2.2e-4 (bound 1e-3).
PARAMS_ATOL, OPT_STATE_ATOL = 1e-5, 1e-3


def _main(workdir, *overrides):
  return [sys.executable, "-m", "fairjax.main", "--config=configs/default.py:smoke",
          f"--workdir={workdir}", "--config.data.num_examples.train=192",
          "--config.data.num_examples.validation=32", "--config.data.num_examples.test=64",
          "--config.train.num_epochs=4", "--config.train.checkpoint_every_steps=2",
          # SGD with momentum, not the default's Adam: Adam divides each gradient by its own running
          # scale, which turns the last-bit differences of another summation order into whole steps on
          # coordinates whose gradients are near zero; momentum SGD carries them along as they are.
          "--config.optimizer.name=sgd", "--config.optimizer.learning_rate=0.05", *overrides]


def _env(devices: int, **extra) -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRJAX_COORDINATOR")}
  return {**env, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", **extra}


def final_params(workdir):
  """``(step, {path: host array})`` of the parameters and optimiser state of the run's last checkpoint."""
  checkpoints = os.path.join(workdir, "checkpoints")
  last = max(int(os.path.basename(p)) for p in glob.glob(os.path.join(checkpoints, "[0-9]*")))
  restored = ocp.PyTreeCheckpointer().restore(os.path.join(checkpoints, str(last), "state"))
  leaves = jax.tree_util.tree_flatten_with_path(restored)[0]
  return last, {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def final_metrics(workdir) -> dict:
  return json.loads((workdir / "report" / "final_metrics.json").read_text())


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """The reference: one uninterrupted process on four devices."""
  workdir = tmp_path_factory.mktemp("straight")
  subprocess.run(_main(workdir), cwd=REPO, env=_env(4), check=True, capture_output=True, timeout=TIMEOUT)
  return workdir


def _wait_for_checkpoint(workdir, processes) -> None:
  """Until a checkpoint folder appears in the local ``workdir`` (fails if a process ends first)."""
  deadline = time.time() + TIMEOUT
  while not glob.glob(str(workdir / "checkpoints" / "[0-9]*")):
    assert all(p.poll() is None for p in processes), "the run ended before a checkpoint appeared"
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.05)


def _files(root: str, listing) -> set:
  """The files under ``root`` (relative to it), with the names that differ between runs of one config
  made alike: an event file's time, host and process, an OCDBT data file's random name."""
  names = set()
  for path in listing:
    relative = os.path.relpath(path, root)
    relative = re.sub(r"^events\.out\.tfevents\..*", "events.out.tfevents.*", relative)
    names.add(re.sub(r"/d/[0-9a-f]+$", "/d/*", relative))
  return names


@pytest.mark.slow
def test_a_run_in_a_gcs_bucket_killed_and_resumed_writes_what_a_local_run_writes(straight, tmp_path):
  """A ``gs://`` workdir, in a GCS server on localhost (``tests/gcs_emulator.py``): the run, killed at a
  random moment after its first checkpoint reached the bucket and started again, leaves the files, the
  parameters, the figures and the history that one uninterrupted local run does."""
  bucket, run = "fairjax-test", "runs/default"
  with GcsEmulator(bucket) as gcs:
    store, env = gcs.filesystem(), _env(4, **gcs.env)
    process = subprocess.Popen(_main(f"gs://{bucket}/{run}"), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + TIMEOUT
    while not store.glob(f"{bucket}/{run}/checkpoints/*/commit_success.txt"):
      assert process.poll() is None, "the run ended before a checkpoint appeared"
      assert time.time() < deadline, "no checkpoint appeared"
      time.sleep(0.2)
    time.sleep(random.uniform(0.0, 1.5))
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not store.exists(f"{bucket}/{run}/report/final_metrics.json")
    finished = subprocess.run(_main(f"gs://{bucket}/{run}"), cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming from the checkpoint of step" in finished.stderr + finished.stdout
    copy = tmp_path / "copy"
    store.get(f"{bucket}/{run}", str(copy), recursive=True)
    remote_files = _files(f"{bucket}/{run}", store.find(f"{bucket}/{run}"))

  local_files = _files(str(straight), (str(p) for p in straight.rglob("*") if p.is_file()))
  assert remote_files == local_files, (sorted(remote_files - local_files), sorted(local_files - remote_files))
  step_a, reference = final_params(straight)
  step_b, resumed = final_params(copy)
  assert step_a == step_b and reference.keys() == resumed.keys()
  for key in reference:
    np.testing.assert_array_equal(resumed[key], reference[key], err_msg=key)
  assert final_metrics(copy) == final_metrics(straight)
  # The history has the same records; the evaluations' figures are the same. A training record is the mean
  # over the steps since the last one, and the run resumed mid-window averages only the steps it ran.
  history = [json.loads(line) for line in (copy / "history.jsonl").read_text().splitlines()]
  expected = [json.loads(line) for line in (straight / "history.jsonl").read_text().splitlines()]
  assert [(r["step"], sorted(r)) for r in history] == [(r["step"], sorted(r)) for r in expected]
  evaluated = lambda records: [{k: v for k, v in r.items() if not k.startswith("train/")} for r in records]
  assert evaluated(history) == evaluated(expected)


# ------------------------------------------------------------------------------------ several processes

def _free_port(low: int = 1024, high: int = 65535) -> int:
  """A port in [low, high] that nothing listens on now."""
  for _ in range(200):
    port = random.randint(low, high)
    with socket.socket() as s:
      try:
        s.bind(("127.0.0.1", port))
      except OSError:
        continue
      return port
  raise RuntimeError(f"no free port in [{low}, {high}]")


def coordinated(command) -> list:
  """``NUM_PROCESSES`` tasks of ``command``, joined through ``FAIRJAX_COORDINATOR`` on a free port."""
  port = _free_port()
  return [(command, {"FAIRJAX_COORDINATOR": f"127.0.0.1:{port}", "FAIRJAX_NUM_PROCESSES": str(NUM_PROCESSES),
                     "FAIRJAX_PROCESS_ID": str(i)}) for i in range(NUM_PROCESSES)]


class Job:
  """Processes of one JAX job, each ``(command, extra environment)``, with ``DEVICES_PER_PROCESS`` CPU
  devices each; their output goes to files."""

  def __init__(self, tasks, folder):
    folder.mkdir(parents=True, exist_ok=True)
    self.logs = [folder / f"process_{i}.log" for i in range(len(tasks))]
    self.processes = []
    for (command, extra), log in zip(tasks, self.logs):
      with open(log, "w") as out:
        self.processes.append(subprocess.Popen(command, cwd=REPO, env=_env(DEVICES_PER_PROCESS, **extra),
                                               stdout=out, stderr=subprocess.STDOUT))

  def output(self, i: int) -> str:
    return self.logs[i].read_text(errors="replace")

  def kill(self) -> None:
    for p in self.processes:
      if p.poll() is None:
        p.kill()
    for p in self.processes:
      p.wait()

  def wait(self) -> None:
    """Until every process has ended well; the first that fails, or the time limit, ends them all."""
    deadline = time.time() + TIMEOUT
    while any(p.poll() is None for p in self.processes):
      failed = [i for i, p in enumerate(self.processes) if p.poll() not in (None, 0)]
      if failed or time.time() > deadline:
        self.kill()
        why = f"process {failed[0]} failed" if failed else f"the job outlived {TIMEOUT} s"
        pytest.fail(f"{why}:\n" + "\n".join(f"--- process {i}:\n{self.output(i)[-2000:]}"
                                            for i in range(len(self.processes))))
      time.sleep(0.1)
    failed = [i for i, p in enumerate(self.processes) if p.returncode != 0]
    assert not failed, self.output(failed[0])[-3000:]


def _assert_like_one_process(workdir, straight, job) -> None:
  step_a, reference = final_params(straight)
  step_b, params = final_params(workdir)
  assert step_a == step_b and reference.keys() == params.keys()
  for key in reference:
    atol = PARAMS_ATOL if key.startswith("['params']") else OPT_STATE_ATOL
    np.testing.assert_allclose(params[key], reference[key], rtol=0, atol=atol, err_msg=key)
  # Group counts gathered across processes are the one process's; so are the leakage probes, trained on
  # the embeddings that every process gathers.
  # A probe's prediction may flip on a row whose embedding moved by the last bits, and one row of a
  # 16-row fold is 1/32 of a 32-row split's leakage: the probes may differ by a row per fold.
  expected, found = final_metrics(straight), final_metrics(workdir)
  assert expected.keys() == found.keys()
  rows = {"validation": 32, "test": 64}
  for name, value in expected.items():
    if value is None:
      assert found[name] is None, name
    elif "/leakage_" in name:
      assert abs(found[name] - value) <= 2 / rows[name.split("/")[0]] + 1e-9, (name, found[name], value)
    else:
      assert found[name] == pytest.approx(value, rel=1e-3, abs=1e-4), name
  # Only process 0 writes: the report line and the progress bar are its alone.
  assert "report: " in job.output(0) and "report: " not in job.output(1)
  assert "steps [" not in job.output(1)


def slurm_tasks(workdir, nodes: int, per_node: int) -> list:
  """The tasks that ``launch/slurm_gpu.sbatch`` would start for ``_main(workdir)``'s config and flags, read
  from its dry run: each task's command and its ``SLURM_*`` variables, with those that SLURM itself sets
  faked for this machine (the job id choosing a free coordinator port, the node list localhost)."""
  config, workdir_flag, *flags = _main(workdir)[3:]
  dry = subprocess.run(["bash", "launch/slurm_gpu.sbatch", config.split("=", 1)[1], workdir_flag.split("=", 1)[1],
                        *flags], cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
                       env={**os.environ, "FAIRJAX_DRY_RUN": "1", "SLURM_JOB_NUM_NODES": str(nodes),
                            "SLURM_NTASKS_PER_NODE": str(per_node)})
  port = _free_port(65535 - 2**12 + 1, 65535)  # JAX's SLURM detection: port = job id % 4096 + 61440
  tasks = []
  for line in dry.stdout.splitlines():
    words = shlex.split(line.split(": ", 1)[1])
    variables = dict(w.split("=", 1) for w in words if re.fullmatch(r"SLURM_\w+=\d+", w))
    command = words[len(variables):]
    assert command[0] == "python3"
    tasks.append(([sys.executable] + command[1:], {**variables, "SLURM_JOB_ID": str(port - (65535 - 2**12 + 1)),
                                                   "SLURM_STEP_NODELIST": "127.0.0.1"}))
  return tasks


def test_the_slurm_recipe_dry_run_prints_one_task_per_gpu():
  tasks = slurm_tasks("out/x", nodes=2, per_node=8)
  assert len(tasks) == 16
  assert [t[1]["SLURM_LOCALID"] for t in tasks] == [str(i % 8) for i in range(16)]
  assert {t[1]["SLURM_NTASKS"] for t in tasks} == {"16"} and tasks[9][1]["SLURM_NODEID"] == "1"
  assert all(command == [sys.executable] + _main("out/x")[1:] for command, _ in tasks)


def test_the_tpu_recipe_dry_run_prints_the_copy_and_every_worker_s_command(tmp_path):
  # tar and gcloud on PATH that leave a mark if the dry run ran them.
  (tmp_path / "bin").mkdir()
  for tool in ("tar", "gcloud"):
    (tmp_path / "bin" / tool).write_text(f"#!/bin/sh\ntouch {tmp_path}/ran_{tool}\n")
    (tmp_path / "bin" / tool).chmod(0o755)
  dry = subprocess.run(["bash", "launch/tpu_pod.sh", "my-v5e-64", "us-west4-a", "configs/default.py",
                        "gs://bucket/runs/default", "--config.train.batch_size=512"], cwd=REPO,
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "FAIRJAX_DRY_RUN": "1", "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"})
  assert dry.returncode == 0, dry.stderr
  assert not list(tmp_path.glob("ran_*")), "the dry run ran a command"
  lines = dry.stdout.splitlines()
  assert lines[0].startswith("tar -C ") and "gcloud compute tpus tpu-vm scp" in lines[1]
  assert "--worker=all" in lines[1] and "--worker=all" in lines[2]
  assert ("python3 -m fairjax.main --config=configs/default.py --workdir=gs://bucket/runs/default "
          "--config.train.batch_size=512") in lines[2]


@pytest.mark.slow
def test_the_slurm_recipe_s_tasks_train_as_one_process_on_four_devices(straight, tmp_path):
  """Two tasks of the SLURM recipe, as its dry run prints them, on this machine: JAX finds the job in
  the SLURM_* variables, and the two processes end where one process on four devices does."""
  workdir = tmp_path / "run"
  job = Job(slurm_tasks(workdir, nodes=1, per_node=NUM_PROCESSES), tmp_path / "logs")
  job.wait()
  _assert_like_one_process(workdir, straight, job)


@pytest.mark.slow
def test_a_killed_process_ends_the_job_and_both_resume_under_shard_map(straight, tmp_path):
  """One process killed mid-run takes the job down; started again, both resume from the last
  checkpoint and end as one process on four devices does (shard_map here, pmap above)."""
  workdir = tmp_path / "run"
  command = _main(workdir, "--config.train.mapper=shard_map")
  job = Job(coordinated(command), tmp_path / "logs_killed")
  _wait_for_checkpoint(workdir, job.processes)
  time.sleep(random.uniform(0.0, 1.0))
  job.processes[1].send_signal(signal.SIGKILL)
  with pytest.raises(pytest.fail.Exception, match="process 1 failed"):
    job.wait()
  assert not (workdir / "report" / "final_metrics.json").exists()
  job = Job(coordinated(command), tmp_path / "logs_resumed")
  job.wait()
  assert re.search(r"^resuming from the checkpoint of step [1-9]\d* of 24$", job.output(0), re.M), job.output(0)
  _assert_like_one_process(workdir, straight, job)
