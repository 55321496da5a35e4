"""The one eraser every method fits: an affine map that leaves a rank-k subspace out, fitted, applied,
saved and loaded the same way whatever the method.

LEACE and INLP both erase by ``x - ((x - bias) @ right.T) @ left.T``: ``left`` ``[D, k]`` and ``right``
``[k, D]`` are thin factors of I - P (P the oblique projection of LEACE, the orthogonal one of INLP),
``bias`` the fit split's mean. So one ``Eraser`` holds any of them, applies it in one jitted float32
matmul pair, and stores it as one ``.npz`` of those three arrays plus a JSON header (method, options,
what the fit found), written to a temporary file and moved into place, so a reader never sees half a
file.

``fit`` is where input is checked: embeddings ``[N, D]`` of finite floats, attribute ``[N]`` of integer
codes with -1 for unknown (those rows are left out), two or more classes present. Options are each
method's keyword arguments, and a misspelt one is an error that names the valid ones.
"""

import io
import json
import os
import tempfile
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from fairjax import paths
from fairjax import registry
from fairjax.erasure import inlp
from fairjax.erasure import leace

FORMAT = "fairjax.erasure/1"

# Each method's fit(x [N, D], one-hot z [N, K], **options) -> {"left", "right", "bias", "info"}.
METHODS = registry.Registry("erasure method")
METHODS.register("leace")(leace.fit)
METHODS.register("inlp")(inlp.fit)


@jax.jit
def _erase(left, right, bias, x):
  x = jnp.asarray(x, jnp.float32)
  return x - ((x - bias) @ right.T) @ left.T


@flax.struct.dataclass
class Eraser:
  """An affine concept eraser, ``x - ((x - bias) @ right.T) @ left.T``; call it on ``[M, D]`` embeddings.

  A pytree (the arrays are its leaves; ``method`` and the JSON ``header`` are static), so it can be passed
  into jitted functions as well as called.
  """

  left: jax.Array  # [D, k] float32
  right: jax.Array  # [k, D] float32
  bias: jax.Array  # [D] float32
  method: str = flax.struct.field(pytree_node=False)
  header: str = flax.struct.field(pytree_node=False)  # JSON: options, classes, counts, the fit's findings

  def __call__(self, embeddings) -> jax.Array:
    if jnp.ndim(embeddings) != 2 or jnp.shape(embeddings)[1] != self.dim:
      raise ValueError(f"expected embeddings [M, {self.dim}], got {jnp.shape(embeddings)}")
    return _erase(self.left, self.right, self.bias, embeddings)

  @property
  def dim(self) -> int:
    return int(self.bias.shape[0])

  @property
  def rank(self) -> int:
    """How many dimensions the eraser removes."""
    return int(self.left.shape[1])

  @property
  def info(self) -> dict[str, Any]:
    return json.loads(self.header)

  @property
  def projection(self) -> np.ndarray:
    """P = I - left @ right ``[D, D]``: the linear part of the map."""
    return np.eye(self.dim, dtype=np.float32) - np.asarray(self.left) @ np.asarray(self.right)

  def save(self, path: paths.PathLike) -> None:
    """Writes the eraser to ``path`` (one ``.npz``), replacing any file there only once it is complete."""
    buffer = io.BytesIO()
    np.savez(buffer, left=np.asarray(self.left), right=np.asarray(self.right), bias=np.asarray(self.bias),
             header=np.array(json.dumps({"format": FORMAT, "method": self.method, **self.info})))
    target = paths.resolve(path)
    if paths.is_remote(target):
      target.write_bytes(buffer.getvalue())  # an object store's write is whole or nothing
      return
    folder = os.path.dirname(os.fspath(target))
    os.makedirs(folder, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=folder, prefix=".eraser-", suffix=".npz")
    try:
      with os.fdopen(handle, "wb") as f:
        f.write(buffer.getvalue())
      os.replace(staging, target)
    except BaseException:
      if os.path.exists(staging):
        os.remove(staging)
      raise


def load(path: paths.PathLike) -> Eraser:
  """The eraser ``Eraser.save`` wrote to ``path``."""
  target = paths.resolve(path)
  if not target.exists():
    raise ValueError(f"no eraser at {target}")
  try:
    with np.load(io.BytesIO(target.read_bytes()), allow_pickle=False) as stored:
      arrays = {name: stored[name] for name in ("left", "right", "bias", "header")}
  except (OSError, ValueError, KeyError) as error:
    raise ValueError(f"{target} is not a saved eraser: {error}") from None
  header = json.loads(str(arrays.pop("header")))
  if header.pop("format", None) != FORMAT:
    raise ValueError(f"{target} is not a saved eraser of format {FORMAT}")
  method = header.pop("method")
  return Eraser(**{k: jnp.asarray(v, jnp.float32) for k, v in arrays.items()}, method=method,
                header=json.dumps(header))


def _check(embeddings, attribute) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(embeddings)
  z = np.asarray(attribute)
  if x.ndim != 2:
    raise ValueError(f"embeddings must be [N, D], got shape {x.shape}")
  if z.ndim != 1:
    raise ValueError(f"attribute must be [N], got shape {z.shape}")
  if len(z) != len(x):
    raise ValueError(f"{len(z)} attribute values for {len(x)} embeddings")
  if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
    raise ValueError(f"embeddings must be numbers, got dtype {x.dtype}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"embeddings hold {int(np.sum(~np.isfinite(x)))} NaN or infinite values")
  if not np.issubdtype(z.dtype, np.integer):
    if not (np.issubdtype(z.dtype, np.floating) and np.all(np.isfinite(z)) and np.all(z == np.round(z))):
      raise ValueError(f"attribute must hold integer codes (-1 for unknown), got dtype {z.dtype}")
    z = z.astype(np.int64)
  if np.any(z < -1):
    raise ValueError(f"attribute codes must be -1 (unknown) or non-negative, got {int(z.min())}")
  return x.astype(np.float64), z.astype(np.int64)


def fit(embeddings, attribute, method: str = "leace", support: float = 1.0, **options) -> Eraser:
  """The eraser of ``attribute`` ``[N]`` (integer codes, -1 unknown and left out) from ``embeddings``
  ``[N, D]``, by ``method`` ("leace" or "inlp") with its ``options``:

  * leace: ``shrinkage=True``, ``svd_tol=0.01``, ``affine=True``, ``orthogonal=False`` (``leace.py``);
  * inlp: ``n_iterations=20``, ``l2=1e-3``, ``seed=0``, ``held_out=0.3``, ``min_accuracy_gain=0.0``
    (``inlp.py``).

  ``support`` below 1: the eraser first keeps only the principal components of the fit rows that hold
  that share of their variance (the rest set to the fit rows' mean), and the method erases within them.
  Why: a ReLU representation has units that are dead on nearly every face. Erasing a direction with a
  tiny component on such a unit writes the erased projection into it, scaled by that component; on the
  fit rows the unit's own values cancel it, on other rows (where the unit is dead) it is the concept
  itself at a scale of 1e-5, which a standardising linear probe reads in full. Seed 004's M1 (UTKFace,
  91 of 128 units dead): LEACE fitted on 10,750 faces outside the judged split left its linear gender
  leakage at 0.32 (0.31 before), and at -0.05 within the 33 components holding 99.9 % of the variance
  (``experiments/seed004_erasure.py``). The whole map is still one ``Eraser``: the minor components
  join the erased directions (``rank`` counts both).
  """
  defaults = dict(list(METHODS.options(method).items())[2:])  # after x and z; an unknown method fails here
  if not 0.0 < support <= 1.0:
    raise ValueError(f"support is the share of the variance kept, in (0, 1]; got {support}")
  x, z = _check(embeddings, attribute)
  known = z >= 0
  x, z = x[known], z[known]
  classes, codes, counts = np.unique(z, return_inverse=True, return_counts=True)
  if len(classes) < 2:
    raise ValueError(f"erasure needs 2 or more attribute classes among the known rows; found "
                     f"{classes.tolist()} in {len(z)} rows")
  one_hot = np.eye(len(classes))[codes]
  if support < 1.0:
    found = _fit_in_support(x, one_hot, method, support, options)
  else:
    found = METHODS.build(method, x, one_hot, **options)  # a misspelt option fails here
  header = {"options": {**defaults, **options, **({"support": support} if support < 1.0 else {})},
            "classes": classes.tolist(), "counts": counts.tolist(),
            "rows": int(len(z)), "unknown_rows": int(np.sum(~known)), **found["info"]}
  return Eraser(*(jnp.asarray(found[k], jnp.float32) for k in ("left", "right", "bias")), method=method,
                header=json.dumps(header, default=_plain))


def _fit_in_support(x: np.ndarray, one_hot: np.ndarray, method: str, support: float, options: dict) -> dict:
  """``method`` fitted on the principal components of ``x`` holding ``support`` of its variance, as one
  map of ``x``: with ``mu`` the mean, ``P`` ``[D, p]`` the principal and ``Q`` ``[D, m]`` the minor
  components, and the method's ``y - ((y - b) @ R.T) @ L.T`` on ``y = (x - mu) @ P``, the eraser
  ``mu + P y'`` is ``x - ((x - bias) @ right.T) @ left.T`` with ``bias = mu + P b``,
  ``left = [Q, P L]`` and ``right = [Q.T; R P.T]`` (``Q.T P = 0``, so the bias shift leaves Q's part be)."""
  mean = x.mean(0)
  centred = x - mean
  # Every direction of R^D, by variance (largest first): the principal ones, then the minor ones.
  variance, directions = np.linalg.eigh(centred.T @ centred)
  variance, directions = np.clip(variance[::-1], 0.0, None), directions[:, ::-1]
  share = np.cumsum(variance) / max(variance.sum(), np.finfo(np.float64).tiny)
  kept = min(int(np.searchsorted(share, support - 1e-12)) + 1, x.shape[1])
  principal, minor_basis = directions[:, :kept], directions[:, kept:]
  found = METHODS.build(method, centred @ principal, one_hot, **options)  # a misspelt option fails here
  left = np.concatenate([minor_basis, principal @ found["left"]], axis=1)
  right = np.concatenate([minor_basis.T, found["right"] @ principal.T], axis=0)
  info = {**found["info"], "support_components": kept, "support_dropped": x.shape[1] - kept}
  return {"left": left, "right": right, "bias": mean + principal @ found["bias"], "info": info}


def _plain(value):
  """JSON for the numpy scalars an option may be given as."""
  if isinstance(value, np.generic):
    return value.item()
  raise TypeError(f"cannot store {type(value).__name__} in an eraser's header")


