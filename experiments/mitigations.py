"""The mitigation benchmark's work, importable without its command-line flags (see
``experiments/mitigation_benchmark.py`` for what it measures and how): the methods, their runs, the
figures with their two-level bootstrap intervals, and the table and plot."""

import csv
import dataclasses
import json
import os
from typing import Callable, Optional

import numpy as np

from fairjax import erasure
from fairjax import markdown
from fairjax import paths
from fairjax.data import groups
from fairjax.erasure import probes
from fairjax.metrics import frontier as frontier_lib
from fairjax.postprocess import thresholds
from fairjax.report import plots
from fairjax.train import config as config_lib
from fairjax.train import evaluators
from fairjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Task -> (config file, argument, what it is).
TASKS = {
    "default": ("default.py", "", "synthetic faces, gender audited by race (the planted bias)"),
    "utkface_gender": ("seed000_gender_cnn.py", "", "UTKFace, gender audited by race (seed 000 §6.1's CNN)"),
}
NUM_RESAMPLES = 1000
CONFIDENCE = 0.95
FRONTIER_EPSILONS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 1.0)

@dataclasses.dataclass(frozen=True)
class Method:
  """A method: the run it reads (terms and training treatments added to the task config) and what is
  done after training."""
  label: str
  terms: Callable[[str, str], dict]  # (head, grouping) -> {term: options} of its run
  after: str = ""  # '', 'postprocess' or 'leace'
  treatments: Callable[[str], dict] = lambda grouping: {}  # grouping -> {treatment: options}, run in order

  def run_name(self, name: str) -> str:
    """The folder of the run it reads: post-training treatments read their base method's run."""
    return {"postprocess": "standard", "leace": "standard", "balanced+postprocess": "balanced_weights",
            "group_dro+postprocess": "group_dro", "oversampled+postprocess": "oversampled",
            "oversampled_full+postprocess": "oversampled_full"}.get(name, name)


def _constrained(head, grouping):
  # configs/default_constrained.py's options (see its docstring for why each).
  return dict(head=head, attributes=(grouping,), constraint="equalized_odds", epsilon=0.05, multiplier_lr=0.01,
              multiplier_max=2.0, rate_decay=0.99, deterministic_rates=True, push="worse_group")


def _grl(head, grouping):
  del head
  return dict(attributes=(grouping,), hidden=(64,), weight=1.0, schedule="dann", keep_norm=True)


def _oversampled(grouping):
  return {"oversample_groups": dict(attributes=groups.GROUPINGS[grouping])}


# Up-sampling to the largest group's size: on both tasks the scarcest race needs less than 8 times its
# own (the default's 7.1, UTKFace's 'Others' about 6). configs/default_fair.py's training run.
FULL_UP_SAMPLING = 8.0


def _oversampled_full(grouping):
  return {"oversample_groups": dict(attributes=groups.GROUPINGS[grouping], max_factor=FULL_UP_SAMPLING)}


METHODS = {
    "standard": Method("standard", lambda h, g: {}),
    "reweighing": Method("Kamiran-Calders weights", lambda h, g: {"reweighing": dict(grouping=g, head=h)}),
    "balanced_weights": Method("group-balanced weights", lambda h, g: {"balanced_weights": dict(grouping=g)}),
    "constrained": Method("constraints (Lagrangian)", lambda h, g: {"constrained": _constrained(h, g)}),
    "gap_penalty": Method("gap penalty", lambda h, g: {"gap_penalty": dict(head=h, attributes=(g,), weight=1.0)}),
    "mindiff": Method("MinDiff", lambda h, g: {"mindiff": dict(head=h, attributes=(g,), weight=1.0)}),
    "grl": Method("gradient reversal", lambda h, g: {"grl": _grl(h, g)}),
    "jlu": Method("JLU", lambda h, g: {"jlu": dict(attributes=(g,), alpha=1.0, hidden=())}),
    "postprocess": Method("post-processing of standard", lambda h, g: {}, after="postprocess"),
    "leace": Method("LEACE of standard, head refitted", lambda h, g: {}, after="leace"),
    "balanced+constrained": Method("balanced weights + constraints", lambda h, g: {
        "balanced_weights": dict(grouping=g), "constrained": _constrained(h, g)}),
    "balanced+postprocess": Method("balanced weights + post-processing", lambda h, g: {
        "balanced_weights": dict(grouping=g)}, after="postprocess"),
    "grl+constrained": Method("gradient reversal + constraints", lambda h, g: {
        "grl": _grl(h, g), "constrained": _constrained(h, g)}),
    "group_dro": Method("group DRO", lambda h, g: {"group_dro": dict(grouping=g, head=h)}),
    "oversampled": Method("group up-sampling", lambda h, g: {}, treatments=_oversampled),
    "oversampled+postprocess": Method("group up-sampling + post-processing", lambda h, g: {}, after="postprocess",
                                      treatments=_oversampled),
    "oversampled_full": Method("group up-sampling to the largest", lambda h, g: {}, treatments=_oversampled_full),
    "oversampled_full+postprocess": Method("group up-sampling to the largest + post-processing", lambda h, g: {},
                                           after="postprocess", treatments=_oversampled_full),
    "group_dro+postprocess": Method("group DRO + post-processing", lambda h, g: {
        "group_dro": dict(grouping=g, head=h)}, after="postprocess"),
}


def task_config(task: str, smoke: bool, manual_dir: Optional[str], image_size: int, num_epochs: int):
  file, arg, _ = TASKS[task]
  module = config_lib.load_config_module(os.path.join(ROOT, "configs", file))
  config = module.get_config(",".join(w for w in (arg, "smoke" if smoke else "") if w))
  if task == "utkface_gender":
    if manual_dir:
      config.data.manual_dir = manual_dir
    if not smoke:
      config.data.image_size = image_size
    config.eval.primary_grouping = "race"  # the seeds' real bias: gender audited by race
  if num_epochs:
    config.train.num_epochs = num_epochs
  return config


def run_config(base, name: str, seed: int):
  config = base.copy_and_resolve_references()
  head, grouping = config.eval.primary_head, config.eval.primary_grouping
  for term, options in METHODS[name].terms(head, grouping).items():
    config.objective.terms[term] = options
  for treatment, options in METHODS[name].treatments(grouping).items():
    config.data.treatments = (*config.data.treatments, treatment)
    config.data.treatment_options[treatment].update(options)
  config.seed = seed
  return config


# ------------------------------------------------------------------------------------------- per run

def run_rows(config, workdir: str) -> dict:
  """``{split: {score, label, group, race, embedding}}`` of validation and test for the run's reported
  checkpoint, computed once and cached in the workdir (``benchmark_rows.npz``)."""
  cache = os.path.join(workdir, "benchmark_rows.npz")
  splits = ("validation", "test")
  if os.path.exists(cache):
    with np.load(cache) as data:
      return {s: {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(s + "/")} for s in splits}
  context = loop.reported_context(config, workdir)
  rows = {}
  for split in splits:
    scored = evaluators.primary_scores(context, split)
    embedded = context.embeddings(split)
    rows[split] = {**scored, "race": embedded["race"], "embedding": embedded["embedding"].astype(np.float32)}
  np.savez(cache + ".tmp.npz", **{f"{s}/{k}": v for s, r in rows.items() for k, v in r.items()})
  os.replace(cache + ".tmp.npz", cache)
  return rows


def decisions(name: str, rows: dict, num_groups: int, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
  """``(p, test embedding)``: each test row's probability of being predicted class 1 under the method,
  and the embedding the leakage probes read."""
  val, test = rows["validation"], rows["test"]
  after = METHODS[name].after
  if after == "postprocess":
    known = (val["label"] >= 0) & (val["group"] >= 0)
    predictor = thresholds.fit(val["score"][known], val["label"][known], val["group"][known],
                               num_groups=num_groups, constraint="equalized_odds", epsilon=epsilon)
    return np.asarray(predictor.probabilities(test["score"], test["group"])), test["embedding"]
  if after == "leace":
    eraser = erasure.fit(val["embedding"], val["race"], method="leace")
    train_x, test_x = np.asarray(eraser(val["embedding"])), np.asarray(eraser(test["embedding"]))
    known = val["label"] >= 0
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    kernel, bias = probes.logistic_regression((train_x[known] - mean) / std, val["label"][known], 1e-3,
                                              num_classes=2)
    logits = ((test_x - mean) / std) @ np.asarray(kernel) + np.asarray(bias)
    return (logits[:, 1] > logits[:, 0]).astype(np.float64), test_x
  return (test["score"] > 0).astype(np.float64), test["embedding"]


def figures(p, y, g, num_groups: int, index: Optional[np.ndarray] = None) -> dict:
  """Accuracy, worst-group accuracy and the equalized-odds and demographic-parity gaps of expected
  decisions ``p`` (rows ``index`` of them, for the bootstrap: ``[B, N]``)."""
  if index is None:
    index = np.arange(len(y))[None]
  p, y, g = p[index], y[index], g[index]
  correct = np.where(y == 1, p, 1 - p)
  member = g[..., None] == np.arange(num_groups)                             # [B, N, G]

  def rate(values, where):
    count = (where).sum(1)
    return np.where(count > 0, (values[..., None] * where).sum(1) / np.maximum(count, 1), np.nan)

  group_accuracy = rate(correct, member)
  tpr = rate(p, member & (y == 1)[..., None])
  fpr = rate(p, member & (y == 0)[..., None])
  selection = rate(p, member)
  spread = lambda r: np.nanmax(r, -1) - np.nanmin(r, -1)
  return {"accuracy": correct.mean(1), "worst_group_accuracy": np.nanmin(group_accuracy, -1),
          "equalized_odds_gap": np.maximum(spread(tpr), spread(fpr)),
          "demographic_parity_gap": spread(selection)}


FIGURES = ("accuracy", "worst_group_accuracy", "equalized_odds_gap", "demographic_parity_gap")
LEAKAGE = ("race_leakage_linear", "race_leakage_mlp")


def measure(name: str, rows: dict, num_groups: int, epsilon: float, seed: int,
            num_resamples: int = NUM_RESAMPLES) -> dict:
  """One run's figures, the rows' bootstrap draws of each (``<figure>_draws``), and its leakage."""
  test = rows["test"]
  known = (test["label"] >= 0) & (test["group"] >= 0)
  p, embedding = decisions(name, rows, num_groups, epsilon)
  p, y, g = p[known], test["label"][known], test["group"][known]
  point = {k: float(v[0]) for k, v in figures(p, y, g, num_groups).items()}
  index = np.random.default_rng(seed).integers(0, len(y), (num_resamples, len(y)))
  draws = {}
  for chunk in np.array_split(np.arange(num_resamples), 10):  # [B, N] in pieces: memory
    for key, value in figures(p, y, g, num_groups, index[chunk]).items():
      draws.setdefault(key, []).append(value)
  val_embedding = rows["validation"]["embedding"]
  if METHODS[name].after == "leace":
    eraser = erasure.fit(val_embedding, rows["validation"]["race"], method="leace")
    val_embedding = np.asarray(eraser(val_embedding))
  leakage = probes.linear_and_mlp_leakage(val_embedding, rows["validation"]["race"], embedding, test["race"],
                                          seed=seed)
  return {**point, **{f"{k}_draws": np.concatenate(v) for k, v in draws.items()},
          "race_leakage_linear": leakage["linear"], "race_leakage_mlp": leakage["mlp"]}


def pooled(measured: list[dict], seed: int = 0) -> dict:
  """Mean over seeds of each figure, and its two-level bootstrap interval (module docstring)."""
  rng = np.random.default_rng(seed)
  out = {}
  for key in FIGURES:
    out[key] = float(np.mean([m[key] for m in measured]))
    draws = np.stack([m[f"{key}_draws"] for m in measured])                 # [S, B]
    resamples = draws.shape[1]
    chosen = rng.integers(0, len(measured), (resamples, len(measured)))     # seeds drawn per resample
    means = draws[chosen, np.arange(resamples)[:, None]].mean(1)
    alpha = (1 - CONFIDENCE) / 2
    out[f"{key}_ci"] = [float(np.nanquantile(means, alpha)), float(np.nanquantile(means, 1 - alpha))]
  for key in LEAKAGE:
    values = [m[key] for m in measured]
    out[key] = float(np.mean(values))
    out[f"{key}_ci"] = ([float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]
                        if len(values) > 1 else None)
  out["seeds"] = len(measured)
  return out


# ------------------------------------------------------------------------------------------- outputs

def _cell(row: dict, key: str) -> str:
  interval = row.get(f"{key}_ci")
  value = markdown.number(row[key])
  return f"{value} [{markdown.number(interval[0])}, {markdown.number(interval[1])}]" if interval else value


def write_outputs(folder: str, task: str, results: dict, curves: dict, command: str, wall: float) -> list:
  columns = ("method", "label", "seeds") + tuple(k for key in FIGURES + LEAKAGE for k in (key, f"{key}_lo", f"{key}_hi"))
  with open(os.path.join(folder, "benchmark.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for name, row in results.items():
      cells = [name, METHODS[name].label, row["seeds"]]
      for key in FIGURES + LEAKAGE:
        interval = row.get(f"{key}_ci") or [None, None]
        cells += [row[key], *interval]
      writer.writerow(cells)
  lines = [f"# Mitigation benchmark: {task} ({TASKS[task][2]})", "",
           f"Command: `{command}` (wall time {wall / 60:.1f} min, runs reused where finished).", "",
           "Test split; 95 % intervals (two-level bootstrap over seeds and test rows; leakage: over seeds).", ""]
  header = ["method", "seeds", "accuracy", "worst-group acc.", "EO gap", "DP gap", "race leakage (linear)",
            "race leakage (MLP)"]
  lines += markdown.table(header, [[METHODS[n].label, r["seeds"], *(_cell(r, k) for k in FIGURES + LEAKAGE)]
                                   for n, r in results.items()])
  if curves:
    lines += ["", "Frontiers of the standard model (seed 0): the oracle (thresholds solved on the test labels) "
              "and post-processing fitted on validation, judged on test.", ""]
    lines += markdown.table(["epsilon", "oracle accuracy", "validation-fitted accuracy", "its test EO gap"], [
        [markdown.number(e["epsilon"], general=True), markdown.number(o["accuracy"]),
         f"{markdown.number(e['accuracy'])} [{markdown.number(e['accuracy_ci'][0])}, "
         f"{markdown.number(e['accuracy_ci'][1])}]",
         f"{markdown.number(e['gap'])} [{markdown.number(e['gap_ci'][0])}, {markdown.number(e['gap_ci'][1])}]"]
        for e, o in zip(curves["fitted"], curves["oracle"])])
  with open(os.path.join(folder, "benchmark.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  _plot(os.path.join(folder, "benchmark.png"), task, results, curves)
  return ["benchmark.md", "benchmark.csv", "benchmark.png"]


def _plot(path: str, task: str, results: dict, curves: dict) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(8, 6))
  if curves:
    oracle = curves["oracle"]
    ax.plot([o["epsilon"] for o in oracle], [o["accuracy"] for o in oracle], "k--", label="oracle frontier (test labels)")
    fitted = curves["fitted"]
    ax.plot([e["gap"] for e in fitted], [e["accuracy"] for e in fitted], "-", color="grey",
            label="post-processing fitted on validation")
    ax.fill_between([e["gap"] for e in fitted], [e["accuracy_ci"][0] for e in fitted],
                    [e["accuracy_ci"][1] for e in fitted], color="grey", alpha=0.2)
  for name, row in results.items():
    x, y = row["equalized_odds_gap"], row["accuracy"]
    xerr = [[x - row["equalized_odds_gap_ci"][0]], [row["equalized_odds_gap_ci"][1] - x]]
    yerr = [[y - row["accuracy_ci"][0]], [row["accuracy_ci"][1] - y]]
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=METHODS[name].label)
  ax.set_xlabel("equalized-odds gap by race (test)")
  ax.set_ylabel("accuracy (test)")
  ax.set_title(f"Mitigations on {task}")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower right")
  plots.save_figure(fig, path)


def benchmark(task: str, seeds: int, methods, output_dir: str, *, manual_dir=None, epsilon=0.0, smoke=False,
              image_size=64, num_epochs=0, num_resamples=NUM_RESAMPLES, log=print) -> tuple[dict, dict, str]:
  """Trains what is missing and measures every method: ``(rows of the table by method, the standard
  model's frontiers, the task's folder)``."""
  unknown = [m for m in methods if m not in METHODS]
  if unknown:
    raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
  if seeds < 1:
    raise ValueError(f"--seeds must be at least 1, got {seeds}")
  if not 0 <= epsilon <= 1:
    raise ValueError(f"--epsilon must lie in [0, 1], got {epsilon}")
  if num_resamples < 10:
    raise ValueError(f"--num_resamples must be at least 10, got {num_resamples}")
  base = task_config(task, smoke, manual_dir, image_size, num_epochs)
  config_lib.check_config(base)
  num_groups = groups.num_groups(base.eval.primary_grouping)
  folder = os.path.join(paths.resolve_str(output_dir), task)
  results = {}
  for name in methods:
    run = METHODS[name].run_name(name)
    measured = []
    for seed in range(seeds):
      config = run_config(base, run, seed)
      workdir = os.path.join(folder, run, f"seed{seed}")
      loop.ensure_trained(config, workdir, name=f"{run} seed {seed}", log=log)
      measured.append(measure(name, run_rows(config, workdir), num_groups, epsilon, seed, num_resamples))
    results[name] = pooled(measured)
  curves = {}
  if "standard" in methods:
    rows = run_rows(run_config(base, "standard", 0), os.path.join(folder, "standard", "seed0"))
    val, test = ({k: r[k][(r["label"] >= 0) & (r["group"] >= 0)] for k in ("score", "label", "group")}
                 for r in (rows["validation"], rows["test"]))
    curves["fitted"] = thresholds.frontier((val["score"], val["label"], val["group"]),
                                           (test["score"], test["label"], test["group"]), FRONTIER_EPSILONS,
                                           num_groups=num_groups, num_resamples=num_resamples)
    curves["oracle"] = frontier_lib.equalized_odds_frontier(test["score"], test["label"], test["group"],
                                                            FRONTIER_EPSILONS, num_groups=num_groups)
    # Undefined figures (a group without positives on a tiny split) come back as None: NaN from here on.
    curves = json.loads(json.dumps(curves).replace("null", "NaN"))
  return results, curves, folder
