"""t-SNE maps of a model's embeddings coloured by a protected attribute (seed 004, Figures 8-9).

Seed 004 shows what unlearning does by projecting the 128-d representation to 2-D with t-SNE and
colouring the points by gender: separable by gender after plain training, mixed after JLU. The run
report draws the same picture for every evaluated split and protected attribute
(``report/<split>/embedding_<attribute>.png``), one projection per split shared by its attributes.

The projection is exact t-SNE (van der Maaten and Hinton 2008) in JAX, with scikit-learn's defaults
(perplexity 30, early exaggeration 12 for 250 of 1,000 iterations, momentum 0.5 then 0.8, per-parameter
gains, learning rate max(N / 48, 50), PCA initialisation scaled to a standard deviation of 1e-4): the
O(N^2) gradient on at most ``MAX_POINTS`` points is a few seconds on a CPU, needs no extra dependency,
and is deterministic (the only randomness is which points are drawn, from the given seed).
"""

import functools
import os
from typing import Mapping, Sequence

import jax
from jax import lax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from etils import epath
import numpy as np

from fairjax.report import plots

MAX_POINTS = 2000  # points drawn per map, for speed and legibility
PERPLEXITY = 30.0
NUM_STEPS = 1000
EXAGGERATION, EXAGGERATION_STEPS = 12.0, 250
_BISECTION_STEPS = 64


def conditional_probabilities(x, perplexity, valid=None):
  """p_{j|i} of t-SNE: each row a Gaussian over the other points whose entropy is log(perplexity).

  Each row's precision is found by bisection on its logarithm (64 halvings of [-20, 20], on squared
  distances divided by their mean, so the bracket does not depend on the embedding's scale). Rows
  outside ``valid`` (padding) neither have neighbours nor are any row's neighbour: their p is 0.
  """
  x = jnp.asarray(x, jnp.float32)
  n = x.shape[0]
  valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
  pairs = valid[:, None] & valid[None, :] & ~jnp.eye(n, dtype=bool)
  sq = jnp.maximum(jnp.sum(x * x, 1)[:, None] + jnp.sum(x * x, 1)[None, :] - 2.0 * x @ x.T, 0.0)
  sq = sq / jnp.maximum(jnp.sum(jnp.where(pairs, sq, 0.0)) / jnp.maximum(pairs.sum(), 1), 1e-12)
  target = jnp.log(perplexity)

  def rows(log_beta):
    # A padding row is given every column, so that its (discarded) softmax stays finite.
    logits = jnp.where(pairs | ~valid[:, None], -sq * jnp.exp(log_beta)[:, None], -jnp.inf)
    log_p = jax.nn.log_softmax(logits, axis=1)
    p = jnp.exp(log_p)
    return p, -jnp.sum(jnp.where(p > 0, p * log_p, 0.0), axis=1)

  def halve(_, bounds):
    low, high = bounds
    middle = 0.5 * (low + high)
    too_flat = rows(middle)[1] > target  # entropy falls as the precision grows
    return jnp.where(too_flat, middle, low), jnp.where(too_flat, high, middle)

  low, high = lax.fori_loop(0, _BISECTION_STEPS, halve, (jnp.full((n,), -20.0), jnp.full((n,), 20.0)))
  return jnp.where(valid[:, None], rows(0.5 * (low + high))[0], 0.0)


@functools.partial(jax.jit, static_argnames=("num_steps",))
def _embed(x, valid, init, perplexity, num_steps: int):
  """t-SNE of the ``valid`` rows of ``x``; padding rows stay at their (zero) start and pull on none."""
  n = valid.sum()
  pairs = valid[:, None] & valid[None, :] & ~jnp.eye(x.shape[0], dtype=bool)
  p = conditional_probabilities(x, perplexity, valid)
  p = jnp.where(pairs, jnp.maximum((p + p.T) / (2.0 * n), 1e-12), 0.0)
  learning_rate = jnp.maximum(n / EXAGGERATION / 4.0, 50.0)

  def gradient(y, exaggeration):
    sq = jnp.sum(y * y, 1)[:, None] + jnp.sum(y * y, 1)[None, :] - 2.0 * y @ y.T
    kernel = jnp.where(pairs, 1.0 / (1.0 + jnp.maximum(sq, 0.0)), 0.0)
    q = kernel / jnp.sum(kernel)
    weights = (exaggeration * p - q) * kernel
    return 4.0 * (jnp.sum(weights, 1)[:, None] * y - weights @ y)

  def step(i, carry):
    y, update, gains = carry
    early = i < EXAGGERATION_STEPS
    grad = gradient(y, jnp.where(early, EXAGGERATION, 1.0))
    gains = jnp.where(jnp.sign(grad) != jnp.sign(update), gains + 0.2, gains * 0.8).clip(min=0.01)
    update = jnp.where(early, 0.5, 0.8) * update - learning_rate * gains * grad
    return y + update, update, gains

  y, _, _ = lax.fori_loop(0, num_steps, step, (init, jnp.zeros_like(init), jnp.ones_like(init)))
  return y


def tsne(x, *, perplexity: float = PERPLEXITY, num_steps: int = NUM_STEPS) -> np.ndarray:
  """2-D t-SNE coordinates ``[N, 2]`` of the rows of ``x`` ``[N, D]``.

  The perplexity is capped at (N - 1) / 3, as small sets (a smoke run's split) need. The rows are
  padded to a power of two (at least 256), masked, so that sets of similar sizes share one compiled
  program; the padding changes nothing.
  """
  x = np.asarray(x, np.float32).reshape(len(x), -1)
  n = x.shape[0]
  if n < 3:
    raise ValueError(f"t-SNE needs at least 3 points, got {n}")
  centred = x - x.mean(0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  init = centred @ vt[:2].T if vt.shape[0] >= 2 else np.zeros((n, 2), np.float32)
  scale = init[:, 0].std()
  init = init / scale * 1e-4 if scale > 0 else np.zeros_like(init)
  size = max(256, 1 << (n - 1).bit_length())
  pad = lambda a: np.concatenate([a, np.zeros((size - n,) + a.shape[1:], a.dtype)])
  y = _embed(pad(x), pad(np.ones(n, bool)), pad(init.astype(np.float32)),
             np.float32(min(perplexity, (n - 1) / 3.0)), num_steps)
  return np.asarray(y)[:n]


def subsample(num_rows: int, max_points: int, seed: int) -> np.ndarray:
  """Sorted indices of at most ``max_points`` of ``num_rows`` rows, drawn without replacement by ``seed``."""
  if num_rows <= max_points:
    return np.arange(num_rows)
  return np.sort(np.random.default_rng(seed).choice(num_rows, max_points, replace=False))


def draw_embedding(ax, points, labels, class_names: Sequence[str], title: str = "") -> None:
  """Scatters 2-D ``points`` on ``ax``, coloured by integer ``labels`` (unknown, -1, in grey)."""
  points, labels = np.asarray(points), np.asarray(labels)
  colours = plt.get_cmap("tab10")
  unknown = labels < 0
  if unknown.any():
    ax.scatter(points[unknown, 0], points[unknown, 1], s=6, c="lightgrey", label=f"unknown ({unknown.sum()})")
  for k, name in enumerate(class_names):
    chosen = labels == k
    if chosen.any():
      ax.scatter(points[chosen, 0], points[chosen, 1], s=6, color=colours(k % 10), alpha=0.75,
                 label=f"{name} ({chosen.sum()})")
  ax.set_xticks([])
  ax.set_yticks([])
  ax.legend(fontsize="x-small", markerscale=2, loc="best")
  ax.set_title(title or "t-SNE of the embedding", fontsize="small")


def plot_embedding(points, labels, class_names: Sequence[str], path: str, title: str = "") -> None:
  """A scatter of 2-D ``points`` coloured by integer ``labels`` (unknown, -1, in grey)."""
  fig, ax = plt.subplots(figsize=(6.0, 5.4))
  draw_embedding(ax, points, labels, class_names, title)
  plots.save_figure(fig, path)


def plot_embedding_grid(panels, path: str, title: str = "") -> None:
  """One figure of t-SNE maps in rows and columns, as seed 004 lays out its Figures 8-9.

  ``panels`` is a list of rows, each a list of ``None`` (an empty cell) or a dict with ``points``,
  ``labels``, ``class_names`` and ``title``, as ``draw_embedding`` takes them.
  """
  rows, columns = len(panels), max(len(row) for row in panels)
  fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.4 * rows), squeeze=False)
  for r, row in enumerate(panels):
    for c in range(columns):
      panel = row[c] if c < len(row) else None
      if panel is None:
        axes[r, c].axis("off")
      else:
        draw_embedding(axes[r, c], panel["points"], panel["labels"], panel["class_names"], panel["title"])
  if title:
    fig.suptitle(title, fontsize="medium")
  fig.tight_layout()
  plots.save_figure(fig, path)


POINTS_FILE = "embedding_points.npz"


def load_points(directory: str) -> dict:
  """What ``write_embedding_plots`` saved in ``directory``: ``points`` [N, 2], ``rows`` (the
  subsampled rows' indices) and, per attribute, ``labels/<attribute>`` and ``classes/<attribute>``."""
  with epath.Path(directory, POINTS_FILE).open("rb") as f, np.load(f, allow_pickle=False) as saved:
    return {key: saved[key] for key in saved.files}


def write_embedding_plots(directory: str, embeddings,
                          attributes: Mapping[str, tuple[np.ndarray, Sequence[str]]], *, title: str = "",
                          max_points: int = MAX_POINTS, seed: int = 0) -> list[str]:
  """Writes ``directory/embedding_<attribute>.png`` for each attribute; returns the file names.

  ``attributes`` maps a name to (integer labels per row, class names). One t-SNE of at most
  ``max_points`` rows (drawn by ``seed``) serves every attribute, so the maps differ only in colour.
  The projection itself is kept in ``directory/embedding_points.npz`` (``load_points``), so that
  figures comparing several runs (``experiments/``) redraw the same maps without projecting again.
  """
  index = subsample(len(embeddings), max_points, seed)
  points = tsne(np.asarray(embeddings)[index])
  epath.Path(directory).mkdir(parents=True, exist_ok=True)
  written, saved = [], {"points": points, "rows": index}
  for name, (labels, class_names) in attributes.items():
    file_name = f"embedding_{name}.png"
    caption = f"{title}: embedding by {name}" if title else f"embedding by {name}"
    plot_embedding(points, np.asarray(labels)[index], class_names, os.path.join(directory, file_name),
                   title=f"{caption} (t-SNE, {len(index)} points)")
    written.append(file_name)
    saved[f"labels/{name}"] = np.asarray(labels)[index]
    saved[f"classes/{name}"] = np.asarray([str(c) for c in class_names])
  with epath.Path(directory, POINTS_FILE).open("wb") as f:
    np.savez(f, **saved)
  return written
