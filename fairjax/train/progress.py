"""What a run tells its user while it runs: a console progress bar, and the metric history on disk.

Only process 0 shows or writes anything. The history (``history.jsonl`` in the workdir, one JSON object
per logged step or evaluation) is what the report's training curves are drawn from; a resumed run drops
the entries written after the checkpoint it resumed from, since it will write them again.
"""

import json
import logging
import math
import os
import sys
import threading
import time
from typing import Optional, TextIO

from etils import epath
import tqdm

from fairjax import paths

HISTORY_FILE = "history.jsonl"

# Off a terminal (a pipe, a log file, CI) nothing can be redrawn in place, so progress is a plain line
# this often: a log then holds whole lines that grep and CI viewers show as they are.
LINE_INTERVAL_S = 30.0

_LINE_FORMAT = "{percentage:3.0f}% {n_fmt}/{total_fmt} steps [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class History:
  """Metric records ``{'step': s, 'epoch': e, name: value, ...}``, appended to ``history.jsonl``.

  Read and written through ``etils.epath``, as orbax writes the checkpoints beside it, so that a
  ``gs://`` workdir keeps its history with its checkpoints instead of failing at the first record.
  """

  def __init__(self, workdir, resume_step: int, write: bool):
    self.path = epath.Path(workdir) / HISTORY_FILE
    self.write = write
    self.records = []
    if self.path.exists():
      lines = filter(str.strip, self.path.read_text().splitlines())
      self.records = [r for r in map(json.loads, lines) if r["step"] <= resume_step]
    if write:
      self._rewrite()

  def _rewrite(self) -> None:
    text = "".join(json.dumps(record) + "\n" for record in self.records)
    if paths.is_remote(self.path):
      # An object store replaces an object whole or not at all, and has no rename (gcsfs copies, after
      # retrying a move API that some stores lack): write in place.
      self.path.write_text(text)
      return
    # Write aside and rename over: a run killed mid-rewrite leaves the old history whole, never a
    # truncated one.
    tmp = self.path.with_name(HISTORY_FILE + ".tmp")
    tmp.write_text(text)
    tmp.replace(self.path)

  def add(self, step: int, epoch: float, metrics: dict) -> None:
    record = {"step": int(step), "epoch": round(float(epoch), 4)}
    record.update({k: _jsonable(v) for k, v in metrics.items()})
    self.records.append(record)
    if not self.write:
      return
    if paths.is_remote(self.path):
      # Object stores have no append: gcsfs opens "a" as "w" (with a warning), which would leave only
      # the last record. A history is a few records per evaluation, so rewrite it whole.
      self._rewrite()
    else:
      with self.path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _jsonable(value):
  value = float(value)
  return value if math.isfinite(value) else None


class ProgressBar:
  """Train-step progress with loss, images/second and the ETA (process 0 only).

  On a terminal it is a tqdm bar redrawn in place, and whatever else the process writes through Python
  while it is shown (evaluation lines, absl / logging records from orbax's threads, warnings, prints)
  is written above it in whole lines: otherwise the next redraw lands in the middle of that text.
  Off a terminal there is nothing to redraw: it writes a plain progress line every ``interval_s``
  seconds and one at the end, and evaluation lines as they come, so a log holds only whole lines.
  """

  def __init__(self, total_steps: int, start_step: int, global_batch_size: int, show: bool, *,
               stream: Optional[TextIO] = None, interval_s: float = LINE_INTERVAL_S):
    self.stream = sys.stderr if stream is None else stream
    self.show = show
    self.interactive = _isatty(self.stream)
    self.total_steps, self.start_step = total_steps, start_step
    self.global_batch_size = global_batch_size
    self.interval_s = interval_s
    self.n, self.postfix = start_step, ""
    self._start = self._last_line = time.perf_counter()
    self._line_step = start_step
    self._last = (start_step, self._start)
    self._redirect = None
    self.bar = None
    if show and self.interactive:
      self.bar = tqdm.tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                           mininterval=0.5, file=self.stream)
      self._redirect = _Redirect(self.stream)

  def update(self, step: int, loss: Optional[float] = None) -> None:
    if not self.show:
      return
    now = time.perf_counter()
    if loss is not None:
      last_step, last_time = self._last
      rate = (step - last_step) * self.global_batch_size / max(now - last_time, 1e-9)
      self._last = (step, now)
      self.postfix = f"loss={loss:.4f}, img/s={rate:.0f}"
    self.n = step
    if self.bar is not None:
      if loss is not None:
        self.bar.set_postfix_str(self.postfix, refresh=False)
      self.bar.update(step - self.bar.n)
    elif now - self._last_line >= self.interval_s:
      self._line(now)

  def _line(self, now: float) -> None:
    line = tqdm.tqdm.format_meter(self.n, self.total_steps, now - self._start, unit="step",
                                  initial=self.start_step, postfix=self.postfix or None,
                                  bar_format=_LINE_FORMAT)
    self._last_line, self._line_step = now, self.n
    self.write(line)

  def write(self, message: str) -> None:
    """Writes ``message`` as a line of its own (above the bar on a terminal)."""
    if not self.show:
      return
    if self.bar is not None:
      self.bar.write(message, file=self.stream)
    else:
      self.stream.write(message + "\n")
      self.stream.flush()

  def close(self) -> None:
    """Ends the bar (off a terminal: with a last progress line) and gives the streams back."""
    if self._redirect is not None:
      self._redirect.close()
      self._redirect = None
    if self.bar is not None:
      self.bar.close()
    elif self.show and self.n != self._line_step:
      self._line(time.perf_counter())


def _isatty(stream) -> bool:
  try:
    return stream.isatty()
  except (AttributeError, ValueError):  # no isatty, or closed
    return False


class _AboveBar:
  """A text stream whose writes go, in whole lines, above the tqdm bars drawn on ``bar_stream``.

  tqdm's recipe for output beside a bar (clear the bars, write, redraw them), buffered to whole lines:
  ``print`` writes its text and its newline separately, and a redraw between the two would overwrite
  the text.
  """

  def __init__(self, target: TextIO, bar_stream: TextIO):
    self._target, self._bar_stream = target, bar_stream
    self._pending = ""
    self._lock = threading.RLock()  # orbax and grain write from their own threads

  def write(self, text: str) -> int:
    with self._lock:
      self._pending += text
      if "\n" in self._pending:
        lines, self._pending = self._pending.rsplit("\n", 1)
        self._emit(lines + "\n")
    return len(text)

  def _emit(self, text: str) -> None:
    with tqdm.tqdm.external_write_mode(file=self._bar_stream):
      self._target.write(text)
      self._target.flush()

  def flush(self) -> None:
    self._target.flush()  # a partial line waits for its end: written now, the next redraw erases it

  def close(self) -> None:
    with self._lock:
      if self._pending:
        self._emit(self._pending + "\n")
        self._pending = ""

  def __getattr__(self, name):  # fileno, isatty, encoding, ...: the real stream's
    return getattr(self._target, name)


class _Redirect:
  """While a bar is on ``bar_stream``: ``sys.stderr`` (and ``sys.stdout`` on the same terminal) and
  the logging handlers that write to them (absl's included) go through ``_AboveBar``; ``close`` puts
  every one back."""

  def __init__(self, bar_stream: TextIO):
    self._swapped_sys, self._swapped_handlers, self._proxies = [], [], []
    for name in ("stderr", "stdout"):
      real = getattr(sys, name)
      if real is not bar_stream and not _same_terminal(real, bar_stream):
        continue
      proxy = _AboveBar(real, bar_stream)
      self._proxies.append(proxy)
      setattr(sys, name, proxy)
      self._swapped_sys.append((name, real, proxy))
      for handler in _stream_handlers():
        if handler.stream is real:
          handler.setStream(proxy)
          self._swapped_handlers.append((handler, real, proxy))

  def close(self) -> None:
    for proxy in self._proxies:
      proxy.close()
    for handler, real, proxy in self._swapped_handlers:
      if handler.stream is proxy:
        handler.setStream(real)
    for name, real, proxy in self._swapped_sys:
      if getattr(sys, name) is proxy:  # unless someone else replaced it meanwhile
        setattr(sys, name, real)


def _same_terminal(a, b) -> bool:
  try:
    return a.isatty() and b.isatty() and os.ttyname(a.fileno()) == os.ttyname(b.fileno())
  except (AttributeError, OSError, ValueError):
    return False


def _stream_handlers():
  """Every ``logging.StreamHandler`` attached to a logger, absl's (inside its ``ABSLHandler``) too."""
  loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                     if isinstance(logger, logging.Logger)]
  seen = set()
  for logger in loggers:
    for handler in logger.handlers:
      for candidate in (handler, getattr(handler, "python_handler", None)):
        if isinstance(candidate, logging.StreamHandler) and id(candidate) not in seen:
          seen.add(id(candidate))
          yield candidate
