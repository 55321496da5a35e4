"""TensorBoard event files of a run's scalars, written without TensorFlow.

CLU's writers (and tensorboard's own ``EventFileWriter``) reach the file through ``tf.io.gfile``, so
every run started by importing TensorFlow: about 6 s of a smoke run's 30. An event file is a TFRecord
file of ``Event`` protos, and tensorboard ships both the protos and the record framing in pure Python,
so this writes the same file through ``etils.epath`` (a local or a ``gs://`` workdir alike): a first
event naming the format, then one event per ``write_scalars`` with each scalar as a rank-0 float tensor
tagged for the scalars plugin, which TensorBoard and ``tf.compat.v1.train.summary_iterator`` read.
Each process start opens a new file, as TensorBoard expects of a resumed run.
"""

import os
import socket
import time
from typing import Mapping

from etils import epath
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.proto import tensor_pb2
from tensorboard.compat.proto import tensor_shape_pb2
from tensorboard.compat.proto import types_pb2
from tensorboard.summary.writer import record_writer

_SCALARS = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def scalar_value(tag: str, value: float) -> summary_pb2.Summary.Value:
  """One scalar as TensorFlow 2's ``tf.summary.scalar`` stores it."""
  tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[float(value)],
                                  tensor_shape=tensor_shape_pb2.TensorShapeProto())
  return summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=_SCALARS)


class EventWriter:
  """``write_scalars(step, {tag: value})`` into ``workdir/events.out.tfevents.*``; writes nothing where
  ``write`` is False (every process but the first)."""

  def __init__(self, workdir, write: bool = True):
    self._file = self._records = None
    if write:
      name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.0"
      self._file = (epath.Path(workdir) / name).open("wb")
      self._records = record_writer.RecordWriter(self._file)
      self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _add(self, event: event_pb2.Event) -> None:
    self._records.write(event.SerializeToString())

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if self._records is None:
      return
    summary = summary_pb2.Summary(value=[scalar_value(tag, value) for tag, value in scalars.items()])
    self._add(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def flush(self) -> None:
    if self._records is not None:
      self._records.flush()

  def close(self) -> None:
    if self._records is not None:
      self._records.close()
      self._file = self._records = None
