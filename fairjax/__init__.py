"""fairjax: group-fairness auditing and bias mitigation for deep image models, in JAX."""

import logging
import os

# TensorFlow comes in through CLU's summary writer and TFDS, and as its libraries load it writes C++ log
# lines straight to file descriptor 2, past Python: "WARNING: All log messages before
# absl::InitializeLog() is called are written to STDERR", "I... port.cc] oneDNN custom operations are
# on ..." (twice) and "I... cpu_feature_guard.cc] This TensorFlow binary is optimized ...". They say
# nothing about a fairjax run, so they are turned off here, before any submodule imports TensorFlow, and
# only where the user has not chosen otherwise:
# - TF_CPP_MIN_LOG_LEVEL=1 drops TensorFlow's C++ INFO lines; its warnings and errors still show.
# - TF_ENABLE_ONEDNN_OPTS=0: the oneDNN notice is printed whatever the log level, for as long as oneDNN's
#   TensorFlow kernels are on. fairjax computes in JAX (XLA, which does not read this variable);
#   TensorFlow only writes summaries and decodes TFDS images here, which those kernels do not serve.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# JAX tries each accelerator backend it knows when it starts and logs, at INFO, the ones this machine
# lacks ("Unable to initialize backend 'tpu': ... Failed to open libtpu.so"); absl's app.run shows INFO,
# so every command that keeps absl's default verbosity printed it. Only that logger's INFO goes: its
# warnings (a GPU present without a CUDA jaxlib, ...) still show, and a level the user chose (for that
# logger, or for all of JAX's through JAX_LOGGING_LEVEL) is kept.
_BACKEND_PROBE = logging.getLogger("jax._src.xla_bridge")
if _BACKEND_PROBE.level == logging.NOTSET and not os.environ.get("JAX_LOGGING_LEVEL"):
  _BACKEND_PROBE.setLevel(logging.WARNING)
