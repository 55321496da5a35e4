"""Paths as users type them: resolved once where they enter, then one path type for every write.

Orbax refuses relative checkpoint paths, and a relative path means something else once a library changes
folder, so every path a user passes (a workdir, an output or data folder, a config file) is made absolute
against the current folder where it enters a command or ``train_and_evaluate``. A path with a scheme
(``gs://bucket/run``, ``s3://...``) is left as it is: ``etils.epath`` (which orbax uses) reads and writes
it, so a run's own files land beside its checkpoints instead of in a local folder named ``gs:``.
"""

import os
from typing import Optional, Union

from etils import epath

PathLike = Union[str, os.PathLike]

# What fairjax builds once and reuses across runs (decoded data sets, the caption tokenizer) lives under
# one folder: ``$FAIRJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/fairjax``, else ``~/.cache/fairjax``;
# ``FAIRJAX_CACHE_DIR=off`` turns caching off. An empty value counts as unset, as XDG's rules have it.
CACHE_ENVIRONMENT = "FAIRJAX_CACHE_DIR"
CACHE_OFF = "off"


def is_remote(path: PathLike) -> bool:
  """Whether ``path`` names a file system other than the local one (``scheme://...``)."""
  return "://" in os.fspath(path)


def resolve(path: PathLike) -> epath.Path:
  """``path`` as an absolute ``epath.Path``: local paths against the current folder (``~`` expanded),
  remote ones unchanged."""
  text = os.fspath(path)
  if not text:
    raise ValueError("empty path")
  if is_remote(text):
    return epath.Path(text)
  return epath.Path(os.path.abspath(os.path.expanduser(text)))


def resolve_str(path: PathLike) -> str:
  """``resolve(path)`` as a string, for code that hands the path to ``os``-level readers."""
  return os.fspath(resolve(path))


def copy_tree(local: PathLike, target: PathLike) -> None:
  """Copies the files under the local folder ``local`` to ``target`` (local or remote), creating folders:
  for writers that only write local files (safetensors, transformers) when a run's folder is remote."""
  target = resolve(target)
  for root, _, files in os.walk(local):
    folder = target / os.path.relpath(root, local) if root != os.fspath(local) else target
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        (folder / name).write_bytes(f.read())


def cache_root() -> Optional[str]:
  """fairjax's cache folder (not created here), or None when ``$FAIRJAX_CACHE_DIR`` is 'off'."""
  configured = os.environ.get(CACHE_ENVIRONMENT, "")
  if configured.strip().lower() == CACHE_OFF:
    return None
  if configured:
    return os.path.abspath(os.path.expanduser(configured))
  xdg = os.environ.get("XDG_CACHE_HOME", "")
  base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "fairjax")
