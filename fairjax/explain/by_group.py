"""Explanations of a trained run, by demographic group: where the model looks, for whom, and how faithfully.

For one evaluated split and one head, ``explain_run``:

1. scores every row once (the run's mapped evaluation), so each face has its label and prediction;
2. draws up to ``per_group`` faces of each race x gender group (a fixed seed) and explains, with each
   method, the probability of the face's *true* class: every group is asked the same question, what
   the model rests the right answer on;
3. per group and method: the mean attribution map (each face's absolute map normalised to unit mass,
   so that every face weighs the same; the faces are aligned, so the mean is a map of the face), the
   share of attribution inside the face region against hair and background (``face_mask``), and the
   deletion and insertion AUC against those of uniform-noise maps of the same faces
   (``fairjax.explain.faithfulness``), with 95 % bootstrap intervals over the group's faces;
4. a gallery of each group's misclassified faces (up to ``per_group``), each with its maps for the true
   and for the predicted class: seed 002's Figure 8, for every group;
5. the model-randomisation check (Adebayo et al. 2018): the same methods on a re-initialised copy of
   the model for the first faces, and the rank correlation of the two models' maps.

The face region is an ellipse fixed in the image frame, centred at 55 % of the height with half-axes of
30 % of the width and 38 % of the height: where an aligned, cropped face (UTKFace's, and the synthetic
faces' head) sits. It is approximate by design and stated in the output; it does not follow each face.
"""

import dataclasses
from typing import Mapping, Optional, Sequence

import jax
import numpy as np

from fairjax.data import groups
from fairjax.explain import faithfulness
from fairjax.explain import methods as methods_lib
from fairjax.explain import targets as targets_lib
from fairjax.models import heads as heads_lib
from fairjax.models import registry as model_registry
from fairjax.train import evaluate

GROUPING = "race_x_gender"
FACE_CENTRE, FACE_AXES = (0.55, 0.5), (0.38, 0.30)  # (row, column) fractions of the image
RANDOMISED_FACES = 16


def face_mask(height: int, width: int) -> np.ndarray:
  """``[H, W]`` bool: the fixed face ellipse of the module docstring."""
  rows = (np.arange(height) + 0.5) / height
  cols = (np.arange(width) + 0.5) / width
  r = ((rows[:, None] - FACE_CENTRE[0]) / FACE_AXES[0]) ** 2
  c = ((cols[None, :] - FACE_CENTRE[1]) / FACE_AXES[1]) ** 2
  return r + c <= 1.0


@dataclasses.dataclass
class Rows:
  """Every scored row of a split: source index, class label, predicted class, race x gender group."""
  index: np.ndarray
  label: np.ndarray
  predicted: np.ndarray
  group: np.ndarray


@dataclasses.dataclass
class GroupFaces:
  """One group's explained faces: their images, classes and each method's maps ``[n, H, W]``."""
  label: str
  rows: np.ndarray
  images: np.ndarray
  classes: np.ndarray
  maps: dict
  misclassified: np.ndarray
  misclassified_images: np.ndarray
  gallery_maps: dict  # method -> (maps for the true class, maps for the predicted class)


def score_rows(context, split: str, spec: heads_lib.HeadSpec) -> Rows:
  """Labels and predictions of every row of ``split`` for ``spec``'s head (the run's own pass)."""
  key = spec.class_label_key

  def fn(state, batch):
    outputs = context.outputs(state, batch)
    predicted = heads_lib.predict(spec, outputs[spec.name])["label"]
    return {"index": batch["index"], "label": evaluate.true_classes(spec, batch[key]), "predicted": predicted,
            "group": groups.group_codes(batch, GROUPING), "mask": batch["mask"]}

  rows = context.rows(fn, split)
  return Rows(**{name: np.asarray(rows[name]) for name in ("index", "label", "predicted", "group")})


def load_images(context, split: str, indices: Sequence[int]) -> np.ndarray:
  """``[n, H, W, C]`` float32 in [0, 1]: the split's records at ``indices`` as the run's model sees them
  before normalisation (the run's host preprocessing: size, grey)."""
  source = context.splits[split].source
  images = [context.preprocess(np.asarray(source[int(i)]["image"])) for i in indices]
  if not images:
    size = tuple(context.preprocess.image_size)
    return np.zeros((0,) + size + (1 if context.preprocess.grayscale else 3,), np.float32)
  return np.stack(images).astype(np.float32) / 255.0


def in_chunks(fn, images: np.ndarray, chunk: int) -> np.ndarray:
  """``fn`` of ``images`` in calls of exactly ``chunk`` images (the last padded with copies of its last
  image, whose results are dropped), so that every call has one shape and compiles once."""
  parts = []
  for start in range(0, len(images), chunk):
    part = images[start:start + chunk]
    padded = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)])
    parts.append(np.asarray(fn(padded))[:len(part)])
  return np.concatenate(parts)


def explain_faces(method: str, options: Mapping, scores: dict, images: np.ndarray, classes: np.ndarray,
                  key: jax.Array, chunk: int) -> np.ndarray:
  """``[n, H, W]`` maps of ``method`` for ``images``, face i explained for class ``classes[i]`` with
  ``scores[classes[i]]`` (the faces of one class at a time, in chunks of ``chunk`` faces)."""
  out = np.zeros(images.shape[:3], np.float32)
  for c in np.unique(classes):
    chosen = np.flatnonzero(classes == c)
    method_fn = lambda batch: methods_lib.maps(method, scores[int(c)], batch, jax.random.fold_in(key, int(c)),
                                               **options)
    out[chosen] = in_chunks(method_fn, images[chosen], chunk)
  return out


def unit_mass(maps: np.ndarray) -> np.ndarray:
  """Absolute maps scaled to sum to 1 per face (all-zero maps stay zero)."""
  mass = np.abs(maps)
  total = mass.reshape(len(mass), -1).sum(axis=1)
  return mass / np.where(total > 0, total, 1.0)[:, None, None]


def face_share(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """``[n]``: each map's share of absolute attribution inside ``mask``; NaN for an all-zero map (a
  Grad-CAM whose every weighted map is negative attributes nothing anywhere)."""
  mass = np.abs(maps).reshape(len(maps), -1)
  total = mass.sum(axis=1)
  inside = (mass * mask.reshape(1, -1)).sum(axis=1)
  return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def _interval(values: np.ndarray, seed: int, num_resamples: int = 1000) -> list:
  """95 % percentile bootstrap interval of the mean of a group's per-face values (NaN below two
  faces). Tens of numbers on the host: NumPy, not a compiled resampler."""
  values = np.asarray(values, np.float64)
  if len(values) < 2:
    return [float("nan"), float("nan")]
  draws = np.random.default_rng(seed).integers(0, len(values), (num_resamples, len(values)))
  low, high = np.quantile(values[draws].mean(axis=1), [0.025, 0.975])
  return [float(low), float(high)]


def explain_run(context, split: str, method_names: Sequence[str], *, head: Optional[str] = None,
                per_group: int = 16, seed: int = 0, options: Optional[Mapping] = None,
                deletion_steps: int = 32) -> dict:
  """The figures of the module docstring; returns ``{'summary': ..., 'groups': [GroupFaces], ...}``.

  Raises ``ValueError`` for an unknown method or option, a head the model lacks or one that is not a
  classifier, a split the run does not evaluate, or a split without a face of known race and gender.
  """
  options = dict(options or {})
  methods_lib.check(method_names, options)
  head = head or context.config.eval.primary_head
  specs = {spec.name: spec for spec in context.model.heads}
  if head not in specs:
    raise ValueError(f"the model has no head {head!r}; its heads: {sorted(specs)}")
  spec = specs[head]
  if not evaluate.is_classifier(spec):
    raise ValueError(f"head {head!r} ({spec.kind}) predicts no classes to explain")
  if split not in context.splits:
    raise ValueError(f"split {split!r} is not evaluated by this run; it evaluates {sorted(context.splits)}")
  if per_group < 1:
    raise ValueError(f"per_group must be positive, got {per_group}")

  state = context.runner.get_state(context.state)
  variables = {"params": state.params["model"], **state.model_state}
  data = context.config.data
  num = evaluate.num_classes(spec)
  scores = {c: targets_lib.for_run(context.model, variables, data, head, c) for c in range(num)}
  rows = score_rows(context, split, spec)
  known = (rows.group >= 0) & (rows.label >= 0)
  if not known.any():
    raise ValueError(f"split {split!r} has no face of known race, gender and {spec.class_label_key}")
  rng = np.random.default_rng(seed)
  key = jax.random.key(seed)
  labels = groups.group_labels(GROUPING)
  explained = []
  for g, label in enumerate(labels):
    members = np.flatnonzero(known & (rows.group == g))
    if not len(members):
      continue
    chosen = np.sort(rng.choice(members, min(per_group, len(members)), replace=False))
    wrong = members[rows.predicted[members] != rows.label[members]]
    wrong = np.sort(rng.choice(wrong, min(per_group, len(wrong)), replace=False)) if len(wrong) else wrong
    images = load_images(context, split, rows.index[chosen])
    wrong_images = load_images(context, split, rows.index[wrong])
    group_key = jax.random.fold_in(key, g)
    maps, gallery = {}, {}
    for m, method in enumerate(method_names):
      explain = lambda faces, classes: explain_faces(method, options.get(method, {}), scores, faces, classes,
                                                     jax.random.fold_in(group_key, m), per_group)
      maps[method] = explain(images, rows.label[chosen])
      if len(wrong):
        gallery[method] = (explain(wrong_images, rows.label[wrong]), explain(wrong_images, rows.predicted[wrong]))
    explained.append(GroupFaces(label=label, rows=chosen, images=images, classes=rows.label[chosen],
                                maps=maps, misclassified=wrong, misclassified_images=wrong_images,
                                gallery_maps=gallery))

  summary = _summarise(explained, rows, known, method_names, scores, key, deletion_steps, seed, per_group)
  summary["randomisation"] = _randomisation(context, explained, method_names, options, data, head,
                                            range(num), key, per_group)
  summary.update({"split": split, "head": head, "per_group": per_group, "seed": seed,
                  "methods": list(method_names), "options": options, "step": int(context.step),
                  "face_region": {"centre": FACE_CENTRE, "half_axes": FACE_AXES,
                                  "note": "fixed ellipse in the image frame (aligned faces)"}})
  return {"summary": summary, "groups": explained, "rows": rows,
          "class_names": [str(name) for name in evaluate.class_names(spec)]}


def _summarise(explained, rows, known, method_names, scores, key, steps, seed, chunk) -> dict:
  groups_out = {}
  for faces in explained:
    members = known & (rows.group == groups.group_labels(GROUPING).index(faces.label))
    entry = {"faces": int(members.sum()), "explained": len(faces.rows),
             "misclassified": int((rows.predicted[members] != rows.label[members]).sum()),
             "accuracy": float((rows.predicted[members] == rows.label[members]).mean()), "methods": {}}
    mask = face_mask(*faces.images.shape[1:3])
    noise = faithfulness.random_maps(jax.random.fold_in(key, 10_000 + len(groups_out)),
                                     faces.images.shape)
    random_curves = _curves(scores, faces.images, faces.classes, noise, steps, chunk)
    for method in method_names:
      maps = faces.maps[method]
      share = face_share(maps, mask)
      curves = _curves(scores, faces.images, faces.classes, maps, steps, chunk)
      entry["methods"][method] = {
          "face_share": float(np.nanmean(share)) if np.isfinite(share).any() else float("nan"),
          "face_share_ci": _interval(share[np.isfinite(share)], seed),
          "empty_maps": int(np.isnan(share).sum()),
          "deletion_auc": float(curves[0].mean()), "deletion_auc_ci": _interval(curves[0], seed),
          "insertion_auc": float(curves[1].mean()), "insertion_auc_ci": _interval(curves[1], seed),
          "random_deletion_auc": float(random_curves[0].mean()),
          "random_insertion_auc": float(random_curves[1].mean()),
          "face_area": float(mask.mean()),
      }
    groups_out[faces.label] = entry
  return {"groups": groups_out}


def _curves(scores, images, classes, maps, steps, chunk) -> tuple[np.ndarray, np.ndarray]:
  """Per-face deletion and insertion AUC, each face scored for its class (fixed-size chunks)."""
  areas = np.zeros((len(images), 2), np.float32)
  for c in np.unique(classes):
    chosen = np.flatnonzero(classes == c)

    def both(batch):  # images and maps side by side, so that one chunking pads them alike
      result = faithfulness.curves(scores[int(c)], batch[..., :-1], batch[..., -1], steps=steps)
      return np.stack([result.deletion_auc, result.insertion_auc], axis=-1)

    stacked = np.concatenate([images[chosen], maps[chosen][..., None]], axis=-1)
    areas[chosen] = in_chunks(both, stacked, chunk)
  return areas[:, 0], areas[:, 1]


def _randomisation(context, explained, method_names, options, data, head, classes_of, key,
                   chunk) -> dict:
  """Mean Spearman correlation of each method's maps for the trained and a re-initialised model."""
  faces = [f for f in explained if len(f.rows)]
  images = np.concatenate([f.images for f in faces])[:RANDOMISED_FACES]
  classes = np.concatenate([f.classes for f in faces])[:RANDOMISED_FACES]
  trained = np.concatenate([np.concatenate([f.maps[m] for f in faces])[None] for m in method_names])
  fresh_variables = model_registry.init_variables(context.model, jax.random.fold_in(key, 777))
  fresh = {c: targets_lib.for_run(context.model, fresh_variables, data, head, c) for c in classes_of}
  out = {}
  for m, method in enumerate(method_names):
    fresh_maps = explain_faces(method, options.get(method, {}), fresh, images, classes, jax.random.fold_in(key, m),
                          chunk)
    correlation = faithfulness.rank_correlation(trained[m][:len(images)], fresh_maps)
    out[method] = {"spearman": float(np.mean(correlation)), "faces": int(len(images))}
  return out

