"""What a run shows while it runs: history.jsonl on disk, and a terminal that holds only whole lines."""

import fcntl
import io
import json
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading

from etils import epath
import pytest

from fairjax.train import progress

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What a user's terminal must not show: C++ log lines (absl / glog format, from a .cc file), TensorFlow's
# load-time notices and JAX's INFO line for each accelerator backend it probes and does not find. Python
# absl warnings ("W1206 ... checkpoint_manager.py:1489] ...") are ours or our libraries' and may show.
CPP_NOISE = re.compile(r"^[IWEF]\d{4} [\d:. ]+\s+\d+ [\w/.-]+\.(cc|h):\d+\]|absl::InitializeLog|oneDNN custom "
                       r"operations|cpu_feature_guard|This TensorFlow binary is optimized|Unable to register "
                       r"cu(DNN|FFT|BLAS) factory|TF-TRT Warning|Could not find cuda drivers|"
                       r"Unable to initialize backend '", re.M)

# The variables fairjax/__init__.py sets where the user has not (and JAX_LOGGING_LEVEL, which would keep
# JAX's backend probing on): removed from a child's environment, so that it shows what a user's shell
# gets (this test process imported fairjax, and so has them set).
TF_QUIET_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "JAX_LOGGING_LEVEL")


def user_environment(**extra):
  env = {k: v for k, v in os.environ.items() if k not in TF_QUIET_VARIABLES}
  env.update(extra)
  return env


def screen(output: str) -> list:
  """The lines a terminal shows after ``output``: ``\\r`` returns to the line's start and later text
  overwrites earlier text character by character, as on a real terminal (no wrapping: a long line is one
  line)."""
  lines, line, col = [], [], 0
  for char in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output):
    if char == "\r":
      col = 0
    elif char == "\n":
      lines.append("".join(line).rstrip())
      line, col = [], 0
    else:
      line[col:col + 1] = [char]
      col += 1
  if line:
    lines.append("".join(line).rstrip())
  return lines


# --- History ---------------------------------------------------------------------------------------------


def test_history_appends_and_a_resumed_run_drops_what_it_will_write_again(tmp_path):
  history = progress.History(str(tmp_path), resume_step=0, write=True)
  for step in (5, 10, 15):
    history.add(step, step / 10, {"train/loss": 1.0 / step, "validation/gap": float("nan")})
  lines = (tmp_path / "history.jsonl").read_text().splitlines()
  assert [json.loads(line)["step"] for line in lines] == [5, 10, 15]
  assert json.loads(lines[0]) == {"step": 5, "epoch": 0.5, "train/loss": 0.2, "validation/gap": None}

  resumed = progress.History(epath.Path(tmp_path), resume_step=10, write=True)
  assert [r["step"] for r in resumed.records] == [5, 10]
  resumed.add(15, 1.5, {"train/loss": 0.5})
  on_disk = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
  assert on_disk == resumed.records and on_disk[-1]["train/loss"] == 0.5
  assert sorted(os.listdir(tmp_path)) == ["history.jsonl"]  # no temporary file left behind


def test_a_reader_process_neither_writes_nor_loses_the_history(tmp_path):
  progress.History(tmp_path, 0, write=True).add(1, 0.1, {"loss": 2.0})
  reader = progress.History(tmp_path, resume_step=0, write=False)
  reader.add(2, 0.2, {"loss": 1.0})
  assert [json.loads(line)["step"] for line in (tmp_path / "history.jsonl").read_text().splitlines()] == [1]


def test_history_rewrite_killed_midway_leaves_the_old_file_whole(tmp_path, monkeypatch):
  writer = progress.History(tmp_path, 0, write=True)
  for step in (1, 2, 3):
    writer.add(step, step, {"loss": float(step)})
  before = (tmp_path / "history.jsonl").read_text()

  def dies_after_a_few_bytes(self, data, *args, **kwargs):
    with self.open("w") as f:
      f.write(data[:7])
    raise KeyboardInterrupt("killed while writing")

  monkeypatch.setattr(type(epath.Path(tmp_path)), "write_text", dies_after_a_few_bytes)
  with pytest.raises(KeyboardInterrupt):
    progress.History(tmp_path, resume_step=2, write=True)
  assert (tmp_path / "history.jsonl").read_text() == before


# --- ProgressBar, in process -----------------------------------------------------------------------------


class _Terminal(io.StringIO):
  """A stream that says it is a terminal."""

  def isatty(self):
    return True


def test_off_a_terminal_progress_is_whole_lines_ending_at_the_total():
  out = io.StringIO()
  bar = progress.ProgressBar(16, 0, 32, show=True, stream=out, interval_s=0.0)
  for step in range(1, 17):
    bar.update(step, 0.5 if step % 4 == 0 else None)
    if step == 8:
      bar.write("step 8: validation/loss=0.5")
  bar.close()
  text = out.getvalue()
  assert "\r" not in text
  lines = text.splitlines()
  assert "step 8: validation/loss=0.5" in lines
  assert re.fullmatch(r"100% 16/16 steps \[.*, loss=0\.5000, img/s=\d+\]", lines[-1]), lines[-1]
  assert all(re.fullmatch(r"\s*\d+% \d+/16 steps \[.*\]", line) for line in lines if line[:5] != "step ")


def test_off_a_terminal_lines_come_at_the_interval_and_the_last_one_at_close():
  out = io.StringIO()
  bar = progress.ProgressBar(100, 40, 8, show=True, stream=out, interval_s=3600.0)
  for step in range(41, 101):
    bar.update(step, 1.0 if step % 10 == 0 else None)
  assert out.getvalue() == ""
  bar.close()
  assert re.fullmatch(r"100% 100/100 steps \[.*\]\n", out.getvalue())


def test_other_processes_show_nothing():
  out = _Terminal()
  bar = progress.ProgressBar(10, 0, 8, show=False, stream=out)
  for step in range(1, 11):
    bar.update(step, 1.0)
  bar.write("step 10: loss=1")
  bar.close()
  assert out.getvalue() == ""


def test_on_a_terminal_logs_and_prints_go_above_the_bar_in_whole_lines(monkeypatch):
  term = _Terminal()
  monkeypatch.setattr(sys, "stderr", term)
  logger = logging.getLogger("fairjax.test_progress")
  handler = logging.StreamHandler(term)
  logger.addHandler(handler)
  try:
    bar = progress.ProgressBar(12, 0, 32, show=True, stream=term)
    for step in range(1, 13):
      bar.update(step, 0.25 if step % 3 == 0 else None)
      if step == 4:
        print("a print", "in two pieces", file=sys.stderr)
        logger.warning("a logging warning from a thread")
      if step == 6:
        bar.write("step 6: validation/loss=0.25")
      if step == 8:
        sys.stderr.write("no newline yet")
    bar.close()
  finally:
    logger.removeHandler(handler)
  assert sys.stderr is term and handler.stream is term  # given back
  lines = screen(term.getvalue())
  for whole in ("a print in two pieces", "a logging warning from a thread", "step 6: validation/loss=0.25",
                "no newline yet"):
    assert whole in lines, (whole, lines)
  assert re.fullmatch(r"100%\|.*\| 12/12 \[.*loss=0\.2500, img/s=\d+\]", lines[-1]), lines[-1]
  bars = [line for line in lines if "%|" in line]
  assert all(re.fullmatch(r"\s*\d+%\|.*\| \d+/12 \[.*\]", line) for line in bars), bars


def test_screen_keeps_what_a_shorter_overwrite_leaves():
  """The emulator must show a bar that was not cleared before a line was written over it."""
  assert screen("  50%|#####     | 6/12 [00:01<00:01]\rstep 6: x\n") == ["step 6: x##     | 6/12 [00:01<00:01]"]


# --- A real run --------------------------------------------------------------------------------------------


def _smoke_run(workdir):
  """tests/train/test_loop.py's tiny smoke run: 12 steps, evaluated at the end of each of 2 epochs."""
  return [sys.executable, "-m", "fairjax.main", "--config=configs/default.py:smoke", f"--workdir={workdir}",
          "--config.data.num_examples.train=192", "--config.data.num_examples.validation=32",
          "--config.data.num_examples.test=64"]


# The default evaluates only validation after each epoch (its test split once, at the end).
EVAL_LINE = re.compile(r"step (6|12): validation/loss=[\d.]+, .*, validation/gender/race/accuracy_gap=[\d.]+")


@pytest.mark.slow
def test_a_smoke_run_on_a_terminal_shows_whole_lines_and_no_cpp_noise(tmp_path):
  """The run's stderr is a pseudo-terminal, as in a user's shell: the bar redraws in place, and the
  evaluation lines and library warnings printed meanwhile must each stand whole on their own line."""
  master, slave = pty.openpty()
  fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
  process = subprocess.Popen(_smoke_run(tmp_path / "run"), cwd=REPO, env=user_environment(),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
  os.close(slave)
  chunks = []

  def read():
    while True:
      try:
        chunk = os.read(master, 65536)
      except OSError:  # EIO: the child closed the terminal
        return
      if not chunk:
        return
      chunks.append(chunk)

  reader = threading.Thread(target=read, daemon=True)
  reader.start()
  try:
    stdout, _ = process.communicate(timeout=600)
  finally:
    process.kill()
    reader.join(timeout=10)
    os.close(master)
  output = b"".join(chunks).decode("utf-8", "replace")
  assert process.returncode == 0, output[-3000:]
  assert b"report.md" in stdout
  assert not CPP_NOISE.search(output), CPP_NOISE.search(output).group(0)

  lines = screen(output)
  evaluations = [line for line in lines if line.startswith("step ")]
  assert len(evaluations) == 2 and all(EVAL_LINE.fullmatch(line) for line in evaluations), evaluations
  bars = [line for line in lines if "%|" in line]
  assert bars and all(re.fullmatch(r"\s*\d+%\|.*\| \d+/12 \[.*\]", line) for line in bars), bars
  assert re.fullmatch(r"100%\|.*\| 12/12 \[.*\]", bars[-1]), bars[-1]


@pytest.mark.slow
def test_a_smoke_run_into_a_pipe_writes_whole_lines_and_no_cpp_noise(tmp_path):
  """stderr into a pipe or a log file (CI): nothing redrawn, so no carriage returns; progress lines."""
  result = subprocess.run(_smoke_run(tmp_path / "run"), cwd=REPO, env=user_environment(),
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert not CPP_NOISE.search(result.stderr), CPP_NOISE.search(result.stderr).group(0)
  assert "\r" not in result.stderr
  lines = result.stderr.splitlines()
  evaluations = [line for line in lines if line.startswith("step ")]
  assert len(evaluations) == 2 and all(EVAL_LINE.fullmatch(line) for line in evaluations), evaluations
  assert re.fullmatch(r"100% 12/12 steps \[.*\]", lines[-1]), lines[-1]
