"""What a run tells its user while it runs: a console progress bar, and the metric history on disk.

Only process 0 shows or writes anything. The history (``history.jsonl`` in the workdir, one JSON object
per logged step or evaluation) is what the report's training curves are drawn from; a resumed run drops
the entries written after the checkpoint it resumed from, since it will write them again.
"""

import json
import math
import os
import sys
import time
from typing import Optional

import tqdm

HISTORY_FILE = "history.jsonl"


class History:
  """Metric records ``{'step': s, 'epoch': e, name: value, ...}``, appended to ``history.jsonl``."""

  def __init__(self, workdir: str, resume_step: int, write: bool):
    self.path = os.path.join(workdir, HISTORY_FILE)
    self.write = write
    self.records = []
    if os.path.exists(self.path):
      with open(self.path) as f:
        self.records = [r for r in map(json.loads, filter(str.strip, f)) if r["step"] <= resume_step]
    if write:
      self._rewrite()

  def _rewrite(self) -> None:
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      for record in self.records:
        f.write(json.dumps(record) + "\n")
    os.replace(tmp, self.path)

  def add(self, step: int, epoch: float, metrics: dict) -> None:
    record = {"step": int(step), "epoch": round(float(epoch), 4)}
    record.update({k: _jsonable(v) for k, v in metrics.items()})
    self.records.append(record)
    if self.write:
      with open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _jsonable(value):
  value = float(value)
  return value if math.isfinite(value) else None


class ProgressBar:
  """A tqdm bar over train steps showing loss, images/second and the ETA (process 0 only)."""

  def __init__(self, total_steps: int, start_step: int, global_batch_size: int, show: bool):
    interactive = sys.stderr.isatty()
    self.bar = tqdm.tqdm(total=total_steps, initial=start_step, unit="step", disable=not show,
                         dynamic_ncols=True, mininterval=0.5 if interactive else 30.0,
                         file=sys.stderr)
    self.global_batch_size = global_batch_size
    self._last = (start_step, time.perf_counter())

  def update(self, step: int, loss: Optional[float] = None) -> None:
    self.bar.update(step - self.bar.n)
    if loss is not None:
      last_step, last_time = self._last
      now = time.perf_counter()
      rate = (step - last_step) * self.global_batch_size / max(now - last_time, 1e-9)
      self._last = (step, now)
      self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.0f}", refresh=False)

  def write(self, message: str) -> None:
    if not self.bar.disable:
      self.bar.write(message, file=sys.stderr)

  def close(self) -> None:
    self.bar.close()
