r"""Seed 002 reproduced on UTKFace: ResNet-18 against SE-ResNet-101, audited on an MR2-like set, with LIME.

  python -m experiments.seed002_audit --output_dir=out/seed002 [--models=resnet18,se_resnet101] \
      [--per_group=8] [--lime_samples=1000] [--smoke]

Trains (or finds finished) ``configs/seed002_resnet18.py`` and ``configs/seed002_se_resnet101.py`` in
``OUT/<model>/`` (UTKFace, found as the configs say), then for each model:

  * scores the test split once and draws the MR2-like set from it (``seed002_figures.mr2_like``: Table
    1's 74 faces of Black, Asian and White men and women aged 20-35, a fixed seed; the same faces for
    both models, whose test splits are the same);
  * computes seed 002's figures (Figures 5-7: FPR difference and disparate impact of a correct gender by
    sex, by race against White, and among women by race; the misclassified counts) on the MR2-like set
    and on the whole test split, with 95 % bootstrap intervals (``seed002_figures``);
  * explains every misclassified MR2-like face with LIME for both classes, female and male (Figure 8),
    drawn as ``OUT/<model>/lime_mr2_misclassified.png``;
  * runs the by-group explanations of ``python -m fairjax.explain`` (integrated gradients, Grad-CAM,
    LIME; ``--per_group`` faces per race x gender group) on the test split, written into the run's
    ``report/test/explain/`` and linked from its report (``--explain_methods``; none skips them).

and writes ``OUT/seed002.md`` / ``OUT/seed002.csv``: every figure of both models on both face sets beside
the seed's numbers. A finished run is not trained again.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np
import pandas as pd

from experiments import seed002_figures as figures_lib
from fairjax import cli
from fairjax import markdown
from fairjax import paths
from fairjax.data import schema
from fairjax.explain import by_group
from fairjax.explain import explain_report
from fairjax.explain import targets
from fairjax.models import heads as heads_lib
from fairjax.train import config as config_lib
from fairjax.train import evaluate
from fairjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Model word -> (label, config file).
MODELS = {"resnet18": ("ResNet-18 (baseline)", "seed002_resnet18.py"),
          "se_resnet101": ("SE-ResNet-101 (the ADS)", "seed002_se_resnet101.py")}

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder for the runs and the tables.")
_MODELS = flags.DEFINE_list("models", list(MODELS), f"Models, of {list(MODELS)}.")
_PER_GROUP = flags.DEFINE_integer("per_group", 8, "Faces explained per race x gender group (test split).")
_EXPLAIN_METHODS = flags.DEFINE_list("explain_methods", ["ig", "gradcam", "lime"],
                                     "Methods of the by-group explanations of the test split.")
_LIME_SAMPLES = flags.DEFINE_integer("lime_samples", 1000, "LIME's perturbed images per face.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the MR2-like draw, the bootstrap and the explanations.")
_SMOKE = flags.DEFINE_bool("smoke", False, "The configs' smoke runs (seconds; the numbers mean nothing).")
flags.mark_flags_as_required(["output_dir"])


def model_config(model: str, smoke: bool = False):
  return config_lib.load_config_module(os.path.join(ROOT, "configs", MODELS[model][1])).get_config(
      "smoke" if smoke else "")


def train(model: str, output_dir: str, smoke: bool = False) -> str:
  """The model's finished run folder (trained here when it is not)."""
  workdir = os.path.join(output_dir, model)
  loop.ensure_trained(model_config(model, smoke), workdir, model)
  return workdir


def test_rows(context) -> pd.DataFrame:
  """One row per test face: source index, race, gender and age (names, years), the gender label and
  the primary head's predicted gender (schema codes)."""
  spec = next(s for s in context.model.heads if s.name == context.config.eval.primary_head)

  def fn(state, batch):
    predicted = heads_lib.predict(spec, context.outputs(state, batch)[spec.name])["label"]
    return {"index": batch["index"], "race": batch["race"], "gender": batch["gender"], "age": batch["age"],
            "label": evaluate.true_classes(spec, batch[spec.class_label_key]), "predicted": predicted,
            "mask": batch["mask"]}

  rows = {k: np.asarray(v) for k, v in context.rows(fn, "test").items()}
  known = (rows["race"] >= 0) & (rows["gender"] >= 0) & (rows["label"] >= 0)
  frame = pd.DataFrame({k: v[known] for k, v in rows.items()})
  frame["race"] = [schema.RACES[c] for c in frame.race]
  frame["gender"] = [schema.GENDERS[c] for c in frame.gender]
  return frame.reset_index(drop=True)


def lime_gallery(context, faces: pd.DataFrame, path: str, num_samples: int, seed: int) -> int:
  """Figure 8: LIME of every misclassified face of ``faces``, for its true and its predicted gender
  (with two classes, the female and the male explanation); returns how many faces were drawn."""
  wrong = faces[faces.predicted != faces.label]
  if not len(wrong):
    return 0
  state = context.runner.get_state(context.state)
  variables = {"params": state.params["model"], **state.model_state}
  head = context.config.eval.primary_head
  scores = {c: targets.for_run(context.model, variables, context.config.data, head, c)
            for c in range(len(schema.GENDERS))}
  images = by_group.load_images(context, "test", wrong["index"].to_numpy())
  key, chunk = jax.random.key(seed), 8
  options = {"num_samples": num_samples}
  gallery = {"lime": tuple(by_group.explain_faces("lime", options, scores, images, wrong[column].to_numpy(),
                                                  key, chunk) for column in ("label", "predicted"))}
  group = by_group.GroupFaces(
      label="MR2-like faces", rows=np.arange(0), images=images[:0], classes=np.arange(0), maps={},
      misclassified=np.arange(len(wrong)), misclassified_images=images, gallery_maps=gallery)
  labelled = by_group.Rows(index=wrong["index"].to_numpy(), label=wrong.label.to_numpy(),
                           predicted=wrong.predicted.to_numpy(), group=np.zeros(len(wrong), np.int32))
  titles = [f"{r} {g}, {a}" for r, g, a in zip(wrong.race, wrong.gender, wrong.age)]
  explain_report.plot_gallery(group, ["lime"], list(schema.GENDERS), labelled, path, row_titles=titles)
  return len(wrong)


def audit(model: str, workdir: str, args) -> list[dict]:
  """The model's table rows on the MR2-like set and the whole test split; draws its figures."""
  config = model_config(model, args["smoke"])
  context = loop.reported_context(config, workdir)
  rows = test_rows(context)
  mr2 = figures_lib.mr2_like(rows, args["seed"], strict=not args["smoke"])
  table = []
  for name, faces in (("MR2-like", mr2), ("test split", rows)):
    table += figures_lib.table_rows(figures_lib.comparisons(faces), figures_lib.intervals(faces, args["seed"]),
                                    model, name)
  shown = lime_gallery(context, mr2, os.path.join(workdir, "lime_mr2_misclassified.png"),
                       args["lime_samples"], args["seed"])
  print(f"{model}: LIME of {shown} misclassified MR2-like faces")
  methods = args["explain_methods"]
  if not methods:
    return table
  result = by_group.explain_run(context, "test", methods, per_group=args["per_group"], seed=args["seed"],
                                options={"lime": {"num_samples": args["lime_samples"]}} if "lime" in methods else {})
  explain_report.write(result, explain_report.output_dir(workdir, "test"), workdir)
  return table


def write_tables(rows: list[dict], output_dir: str, smoke: bool) -> str:
  frame = pd.DataFrame(rows)
  frame.to_csv(os.path.join(output_dir, "seed002.csv"), index=False)
  lines = ["# Seed 002 on UTKFace: ResNet-18 against SE-ResNet-101" + (" (smoke runs)" if smoke else ""), "",
           "FPR: a group's share of faces given the other gender (the seed counts a correct gender as the "
           "positive outcome); difference: protected minus privileged (women against men, each race "
           "against White); disparate impact: the ratio of correct shares. Brackets: 95 % bootstrap "
           "intervals, faces resampled within race x gender cells. Seed: MR2's figures as its text "
           "gives them.", ""]
  for (model, faces), part in frame.groupby(["model", "faces"], sort=False):
    lines += [f"## {MODELS[model][0]}, {faces}", ""]
    body = []
    for row in part.itertuples():
      count = "misclassified" in row.figure
      value = markdown.number(row.value, 0 if count else 3)
      interval = "" if np.isnan(row.low) else f"[{markdown.number(row.low, 0 if count else 3)}, " \
                                               f"{markdown.number(row.high, 0 if count else 3)}]"
      body.append([row.figure, value, interval, row.seed])
    lines += markdown.table(["figure", "fairjax", "95 % interval", "seed 002 (MR2)"], body) + [""]
  path = os.path.join(output_dir, "seed002.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  return path


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  unknown = [m for m in _MODELS.value if m not in MODELS]
  if unknown:
    raise app.UsageError(f"--models: unknown {unknown}; known: {list(MODELS)}")
  output_dir = str(paths.resolve(_OUTPUT_DIR.value))
  os.makedirs(output_dir, exist_ok=True)
  args = {"smoke": _SMOKE.value, "seed": _SEED.value, "per_group": _PER_GROUP.value,
          "lime_samples": _LIME_SAMPLES.value, "explain_methods": _EXPLAIN_METHODS.value}
  rows = []
  for model in _MODELS.value:
    rows += audit(model, train(model, output_dir, _SMOKE.value), args)
  print(open(write_tables(rows, output_dir, _SMOKE.value)).read())


if __name__ == "__main__":
  cli.run(main)
