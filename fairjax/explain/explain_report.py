"""What ``python -m fairjax.explain`` writes: figures, ``explain.json``, ``explain.md``, a link in report.md.

  DIR/report/<split>/explain/
    explain.json        the by-group figures of ``by_group.explain_run`` (and the command's settings)
    explain.md          the same as tables, with the figures linked
    mean_maps.png       each group's mean attribution map (rows) for each method (columns), over the
                        group's mean face
    gallery_<group>.png each group's misclassified faces, each with every method's map for the true
                        class and for the predicted class (seed 002's Figure 8, for every group)

and a section "Explanations" in ``DIR/report/report.md`` that links ``explain.md`` (added once).
Everything goes through ``etils.epath``, so a ``gs://`` run folder works as a local one.
"""

import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from etils import epath  # noqa: E402

from fairjax import markdown  # noqa: E402
from fairjax.explain import by_group  # noqa: E402
from fairjax.explain import methods as methods_lib  # noqa: E402
from fairjax.report import plots  # noqa: E402
from fairjax.report import run_report  # noqa: E402

SECTION = "## Explanations"


def output_dir(workdir: str, split: str) -> str:
  """``DIR/report/<split>/explain``, the command's default ``--output_dir``."""
  return os.path.join(run_report.split_dir(workdir, split), "explain")


def slug(label: str) -> str:
  """A group's label as a file name part: ``"Black, female"`` -> ``black_female``."""
  return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _grey(images: np.ndarray) -> np.ndarray:
  return images.mean(axis=-1) if images.shape[-1] > 1 else images[..., 0]


def plot_mean_maps(result: dict, path: str) -> None:
  faces = [g for g in result["groups"] if len(g.rows)]
  methods = result["summary"]["methods"]
  fig, axes = plt.subplots(len(faces), len(methods) + 1, squeeze=False,
                           figsize=(1.6 * (len(methods) + 1), 1.6 * len(faces)))
  for r, group in enumerate(faces):
    mean_face = _grey(group.images).mean(axis=0)
    axes[r, 0].imshow(group.images.mean(axis=0).squeeze(), cmap="gray" if group.images.shape[-1] == 1 else None)
    axes[r, 0].set_ylabel(f"{group.label}\n(n={len(group.rows)})", fontsize=7)
    for c, method in enumerate(methods):
      ax = axes[r, c + 1]
      ax.imshow(mean_face, cmap="gray")
      ax.imshow(by_group.unit_mass(group.maps[method]).mean(axis=0), cmap="inferno", alpha=0.65)
      if r == 0:
        ax.set_title(methods_lib.TITLES[method], fontsize=8)
  if faces:
    axes[0, 0].set_title("mean face", fontsize=8)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle("Mean attribution (absolute, each face's map scaled to unit mass) by group", fontsize=9)
  plots.save_figure(fig, path)


def plot_gallery(group: "by_group.GroupFaces", methods, class_names, rows, path: str,
                 row_titles=None) -> None:
  """The group's misclassified faces: the face, then per method its map for the true class and for the
  predicted class (signed maps in red / blue, Grad-CAM's non-negative ones in red). ``rows`` holds the
  faces' labels and predictions, indexed by ``group.misclassified``; ``row_titles`` adds a line per
  face."""
  n = len(group.misclassified)
  fig, axes = plt.subplots(n, 1 + 2 * len(methods), squeeze=False,
                           figsize=(1.4 * (1 + 2 * len(methods)), 1.5 * n))
  for i in range(n):
    image = group.misclassified_images[i]
    row = group.misclassified[i]
    truth, predicted = class_names[rows.label[row]], class_names[rows.predicted[row]]
    axes[i, 0].imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
    title = f"{row_titles[i]}\n" if row_titles else ""
    axes[i, 0].set_ylabel(f"{title}true {truth}\npred. {predicted}", fontsize=7)
    for m, method in enumerate(methods):
      for k, maps in enumerate(group.gallery_maps[method]):
        ax = axes[i, 1 + 2 * m + k]
        value = maps[i]
        limit = float(np.abs(value).max()) or 1.0
        ax.imshow(_grey(image[None])[0], cmap="gray")
        ax.imshow(value, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.65)
        if i == 0:
          ax.set_title(f"{methods_lib.TITLES[method]}\n{('true', 'predicted')[k]} class", fontsize=7)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(f"{group.label}: misclassified faces", fontsize=9)
  plots.save_figure(fig, path)


def _cell(entry: dict, name: str) -> str:
  low, high = entry[f"{name}_ci"]
  value = markdown.number(entry[name])
  return value if np.isnan(low) else f"{value} [{markdown.number(low)}, {markdown.number(high)}]"


def markdown_lines(summary: dict, figures: dict) -> list[str]:
  lines = ["# Explanations", "",
           f"Run step {summary['step']}, split `{summary['split']}`, head `{summary['head']}`; up to "
           f"{summary['per_group']} faces per race x gender group (seed {summary['seed']}), each explained "
           "for its true class. Face share: the share of a face's absolute attribution inside the face "
           f"ellipse ({summary['face_region']['note']}, {100 * _face_area(summary):.0f} % of the image). "
           "Deletion AUC: lower is more faithful; insertion AUC: higher is. 'random' is the same curve "
           "for uniform-noise maps of the same faces. Brackets: 95 % bootstrap intervals over faces.", ""]
  for method in summary["methods"]:
    lines += [f"## {methods_lib.TITLES[method]}", ""]
    rows = []
    for label, entry in summary["groups"].items():
      figures_ = entry["methods"][method]
      rows.append([label, entry["faces"], entry["explained"], markdown.number(entry["accuracy"]),
                   _cell(figures_, "face_share"), _cell(figures_, "deletion_auc"),
                   markdown.number(figures_["random_deletion_auc"]), _cell(figures_, "insertion_auc"),
                   markdown.number(figures_["random_insertion_auc"])])
    lines += markdown.table(["group", "faces", "explained", "accuracy", "face share", "deletion AUC",
                             "random", "insertion AUC", "random"], rows) + [""]
  lines += ["## Model randomisation check", "",
            "Spearman correlation between each method's maps for the trained model and for a re-initialised "
            "one (Adebayo et al. 2018): near 1 means the maps show the image, not the model.", ""]
  lines += markdown.table(["method", "faces", "Spearman"],
                          [[methods_lib.TITLES[m], v["faces"], markdown.number(v["spearman"])]
                           for m, v in summary["randomisation"].items()]) + [""]
  lines += ["## Figures", ""] + [f"- [{title}]({name})" for title, name in figures.items()] + [""]
  return lines


def _face_area(summary: dict) -> float:
  for entry in summary["groups"].values():
    for figures_ in entry["methods"].values():
      return figures_["face_area"]
  return float("nan")


def write(result: dict, directory: str, workdir: str) -> dict:
  """Writes the files of the module docstring under ``directory``; returns ``{title: file}``."""
  out = epath.Path(directory)
  out.mkdir(parents=True, exist_ok=True)
  summary = result["summary"]
  figures = {"mean maps by group": "mean_maps.png"}
  plot_mean_maps(result, str(out / "mean_maps.png"))
  for group in result["groups"]:
    if len(group.misclassified):
      name = f"gallery_{slug(group.label)}.png"
      plot_gallery(group, summary["methods"], result["class_names"], result["rows"], str(out / name))
      figures[f"misclassified: {group.label}"] = name
  (out / "explain.json").write_text(json.dumps({**summary, "figures": figures}, indent=2, default=_json))
  (out / "explain.md").write_text("\n".join(markdown_lines(summary, figures)))
  link_from_report(workdir, str(out / "explain.md"), summary["split"])
  return figures


def _json(value):
  if isinstance(value, (np.floating, np.integer)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"cannot write {type(value).__name__} to JSON")


def link_from_report(workdir: str, explain_md: str, split: str) -> bool:
  """Adds a link to ``explain_md`` under "Explanations" at the end of the run's report.md, once per
  file; False where the run has no report.md (nothing to link from)."""
  report = epath.Path(workdir, run_report.REPORT_DIR, "report.md")
  if not report.exists():
    return False
  relative = os.path.relpath(explain_md, os.path.dirname(str(report)))
  line = f"- `{split}` split: [{relative}]({relative})"
  text = report.read_text()
  if line in text.splitlines():
    return True
  text = text.rstrip("\n") + "\n"
  if SECTION not in text.splitlines():
    text += f"\n{SECTION}\n\n"
  report.write_text(text + line + "\n")
  return True
