"""Where a command meets its user: bad input ends in one line, not a traceback.

Every command (``fairjax.main``, the experiments) runs its ``main`` through ``run``. A flag that does
not parse (an override of the wrong type, an unknown flag), a config file that is missing or whose
``get_config`` rejects its argument, and the input errors the library raises (``ValueError`` for bad
values and unknown names, ``FileNotFoundError`` for missing data, ``FloatingPointError`` for a diverged
run) each end with one ``error: ...`` line on stderr and exit status 1. The traceback is still there for
whoever wants it: ``--verbosity=1`` (or ``FAIRJAX_TRACEBACK=1``) prints it as well.

Commands validate before they write, so that such an error leaves nothing behind (see
``loop.train_and_evaluate``).
"""

import os
import re
import sys
import traceback
from typing import Callable

from absl import app
from absl import flags
from absl import logging

# What the library raises for input that a user can fix; anything else is a bug and keeps its traceback.
INPUT_ERRORS = (ValueError, OSError, KeyError, FloatingPointError, app.UsageError)


def one_line(error: BaseException) -> str:
  """``error``'s message as one line: wrapped parser errors give their last, most specific line."""
  text = str(error).strip() or type(error).__name__
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if "Traceback (most recent call last)" in text or "Error whilst parsing config file" in text:
    # config_flags re-raises a get_config error with the whole traceback in its message: the last line
    # ('ValueError: configs/x.py takes ...') is what the user needs.
    return re.sub(r"^[A-Za-z_.]*(Error|Exception): ", "", lines[-1])
  return " ".join(lines)


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)


def _show_traceback() -> bool:
  return os.environ.get("FAIRJAX_TRACEBACK", "") not in ("", "0") or flags.FLAGS["verbosity"].value >= 1


def _check_config_files(argv: list[str]) -> None:
  """A ``--config=PATH[:ARG]`` naming no file: config_flags would only fail at first use, with a
  multi-line message; say it here, and say where it looked."""
  for arg in argv[1:]:
    if arg.startswith("--config=") or arg.startswith("--config_file="):
      path = arg.split("=", 1)[1].split(":", 1)[0]
      if not os.path.isfile(path):
        fail(f"config file {path} not found (looked in {os.path.abspath(path)})")


HELP_FLAGS = ("--help", "-h", "--helpshort", "--helpfull", "-?")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with each failure as one ``error:`` line (and ``--help`` a success)."""
  if any(arg in HELP_FLAGS for arg in argv[1:]):
    try:
      flags.FLAGS(argv)
    except SystemExit:  # absl's help flags exit with status 1 after printing
      pass
    sys.exit(0)
  _check_config_files(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    fail(one_line(error))
  except AttributeError as error:  # config_flags: an override of a key the config does not have
    fail(_unknown_override(error, argv))
  except INPUT_ERRORS as error:  # a config file that raises while it is loaded
    fail(one_line(error))
  return []


def _unknown_override(error: AttributeError, argv: list[str]) -> str:
  """config_flags' message for ``--config.a.b=v`` where the config has no ``b``, as one line that names
  the flag (its text is a repr of a KeyError with a 'Did you mean' hint)."""
  text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
  text = text.replace("\\n", "\n").replace("\\'", "'").strip("'\"")
  key, _, hint = text.partition("\n")
  key = key.strip("'\"")
  flag = next((a.split("=", 1)[0] for a in argv[1:]
               if a.startswith("--config.") and a.split("=", 1)[0].rsplit(".", 1)[-1] == key), f"--config...{key}")
  hint = f" ({hint.strip().rstrip('?')}?)" if hint.strip() else ""
  return (f"{flag}: the config has no key {key!r}{hint}; an override can only change a key that the config "
          "file sets")


def run(main: Callable[[list[str]], None]) -> None:
  """``app.run(main)`` where bad flags and the library's input errors end as one ``error:`` line."""

  def guarded(argv):
    try:
      main(argv)
    except INPUT_ERRORS as error:
      if _show_traceback():
        logging.error("%s", traceback.format_exc())
      fail(one_line(error))

  app.run(guarded, flags_parser=parse_flags)
