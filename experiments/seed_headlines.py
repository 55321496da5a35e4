"""Every seed's headline figure beside fairjax's on real UTKFace: the rows, the runs, the table.

The work of ``experiments/reproduce_seeds.py`` (flags there, work here, so that other code can import
it). Each row names the seed's figure, where fairjax's comes from and why the two may differ:

  a training run     a config of ``configs/`` with this CPU's overrides, trained in ``OUT/<key>`` (a
                     finished run is reused, an interrupted one resumes); the figure is a metric of its
                     ``report/final_metrics.json`` and its 95 % interval the run report's bootstrap
                     (``report/<split>/summary.json`` ``intervals``)
  another experiment's results
                     seed 001's pretrained gender models (``experiments/pretrained_audit.py``), seed 003
                     (``experiments/clip_utkface.py``), seed 004 (``experiments/seed004_unlearning.py``):
                     read from their output folders, each run by its own command

A row whose run is missing says so, with the command that produces it and its expected cost, instead of
a number: the table never holds a figure that was not measured.
"""

import csv
import dataclasses
import json
import math
import os
import signal
import time
from typing import Callable, Optional

from fairjax import markdown
from fairjax.data import utkface as utkface_lib
from fairjax.train import config as config_lib
from fairjax.train import loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
RESULTS = os.path.join(REPO, "experiments", "results")
WALL_FILE = "wall_time_s.json"  # seconds spent training, summed over this script's sessions


@dataclasses.dataclass(frozen=True)
class Measured:
  value: float
  interval: Optional[tuple[float, float]]
  wall_s: Optional[float]


class NotMeasured(Exception):
  """The row's source has not been run (the message says what to run)."""


@dataclasses.dataclass(frozen=True)
class Row:
  """One headline: the seed's figure and where fairjax's comes from.

  ``config``/``arg``/``overrides`` make a training row (``metric`` read from its final metrics); ``read``
  makes a row read from another experiment's output folder (``read(output_dir) -> Measured``).
  """

  key: str
  seed: str
  figure: str
  seed_value: Optional[float]
  size: str
  why: str
  command: str
  metric: str = ""
  config: str = ""
  arg: str = ""
  overrides: tuple[tuple[str, object], ...] = ()
  read: Optional[Callable[[str], Measured]] = None
  cost: str = ""

  def build_config(self, manual_dir: str, smoke: bool = False):
    module = config_lib.load_config_module(os.path.join(CONFIGS, self.config))
    arg = ",".join(a for a in (self.arg, "smoke" if smoke else "") if a)
    config = module.get_config(arg)
    if manual_dir:  # else the config's own (``$FAIRJAX_UTKFACE`` or ../shared/data)
      config.data.manual_dir = manual_dir
    if not smoke:
      for key, value in self.overrides:
        *parents, name = key.split(".")
        node = config
        for part in parents:
          node = node[part]
        node[name] = value
    return config


def _cpu(size: int = 64, epochs: Optional[int] = None) -> tuple[tuple[str, object], ...]:
  return (("data.image_size", size),) + ((("train.num_epochs", epochs),) if epochs else ())


def _trained(row: Row, workdir: str) -> Measured:
  metrics_path = os.path.join(workdir, "report", "final_metrics.json")
  if not os.path.exists(metrics_path):
    raise NotMeasured(f"not run yet ({row.cost} on this CPU)")
  with open(metrics_path) as f:
    metrics = json.load(f)
  if row.metric not in metrics:
    raise ValueError(f"{metrics_path} has no {row.metric}")
  split, rest = row.metric.split("/", 1)
  interval = None
  summary_path = os.path.join(workdir, "report", split, "summary.json")
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      found = json.load(f).get("intervals", {}).get(rest)
    interval = tuple(found) if found else None
  wall = None
  if os.path.exists(os.path.join(workdir, WALL_FILE)):
    with open(os.path.join(workdir, WALL_FILE)) as f:
      wall = json.load(f)["seconds"]
  return Measured(float(metrics[row.metric]), interval, wall)


def utkface(manual_dir: Optional[str]) -> Optional[str]:
  """``manual_dir`` made absolute, after checking that UTKFace is there (one clear error if not)."""
  if not manual_dir:
    return None
  manual_dir = os.path.abspath(manual_dir)
  utkface_lib.find_source(manual_dir)
  return manual_dir


def train(row: Row, output_dir: str, manual_dir: str, smoke: bool = False, log=print) -> None:
  """Trains ``row``'s run in ``OUT/<key>`` (resumed; a finished run is kept), adding its time to
  ``wall_time_s.json``."""
  workdir = os.path.join(output_dir, row.key)
  config = row.build_config(manual_dir, smoke)
  if loop.finished(workdir, config):
    log(f"{row.key}: finished, not trained again")
    return
  log(f"{row.key}: training in {workdir}")
  started = time.time()
  # A stopped session's time counts too: SIGTERM (kill, pkill, a scheduler's stop) ends the run through
  # SystemExit, so that the time is added before the process ends; the run resumes from its checkpoint.
  previous = signal.signal(signal.SIGTERM, _exit_on_terminate)
  try:
    loop.train_and_evaluate(config, workdir)
  finally:
    signal.signal(signal.SIGTERM, previous)
    if os.path.isdir(workdir):  # else the run stopped before it began (its error says why)
      add_wall_time(workdir, time.time() - started)


def _exit_on_terminate(signum, frame):
  del frame
  raise SystemExit(128 + signum)


def add_wall_time(workdir: str, seconds: float) -> None:
  """Adds ``seconds`` to the training time of the run in ``workdir`` (``WALL_FILE``), written atomically."""
  path = os.path.join(workdir, WALL_FILE)
  before = json.load(open(path))["seconds"] if os.path.exists(path) else 0.0
  with open(path + ".tmp", "w") as f:
    json.dump({"seconds": before + seconds}, f)
  os.replace(path + ".tmp", path)


def measure(row: Row, output_dir: str) -> Measured:
  if row.read is not None:
    return row.read(output_dir)
  return _trained(row, os.path.join(output_dir, row.key))


# ------------------------------------------------------------------------------------------ readers

def _read_csv(path: str, what: str) -> list[dict]:
  if not os.path.exists(path):
    raise NotMeasured(what)
  with open(path) as f:
    return list(csv.DictReader(f))


def pretrained_gender(model: str, group: str) -> Callable[[str], Measured]:
  """Seed 001's audit of a pretrained gender model on UTKFace: ``model``'s gender accuracy in ``group``
  ('overall', 'Black women', ...) from the pretrained audit's table, with a Wilson 95 % interval (the
  audit counts every face once: a binomial proportion, which the row bootstrap approximates)."""

  def read(output_dir: str) -> Measured:
    del output_dir
    rows = _read_csv(os.path.join(RESULTS, "pretrained_audit.csv"), "not run yet (about 30 min on this CPU)")
    for row in rows:
      if (row["table"], row["model"], row["group"]) == ("gender_accuracy", model, group):
        value, n = float(row["value"]), int(float(row["n"]))
        return Measured(value, wilson(value, n), None)
    raise NotMeasured(f"the pretrained audit's table has no gender accuracy of {model} for {group}")

  return read


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
  """Wilson's score interval of a proportion ``p`` of ``n``."""
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return centre - half, centre + half


_SEED004 = ("python -m experiments.seed004_unlearning --dataset=utkface --manual_dir=../shared/data --cpu "
            "--models=m1,m2 --output_dir=out/seeds/seed004")


def seed004(model: str, column: str) -> Callable[[str], Measured]:
  """A figure of ``experiments.seed004_unlearning`` on UTKFace (its results.csv in OUT/seed004)."""

  def read(output_dir: str) -> Measured:
    path = os.path.join(output_dir, "seed004", "results.csv")
    rows = _read_csv(path, "not run yet (about 6 min per model on this CPU)")
    for row in rows:
      if row["model"] == model:
        value = float(row[column])
        # An accuracy over EBD's faces: a binomial proportion, Wilson's interval (as for the audit's rows),
        # where the model's run report (its EBD count) is still there.
        summary = os.path.join(output_dir, "seed004", model, "report", "EBD", "summary.json")
        if not column.startswith("age_accuracy") or not os.path.exists(summary):
          return Measured(value, None, None)
        with open(summary) as f:
          return Measured(value, wilson(value, int(json.load(f)["count"])), None)
    raise NotMeasured(f"not run yet (model {model}: about 6 min on this CPU)")

  return read


_CLIP64 = "64x64, 128-wide ViT, 10 epochs (the config's)"


def seed003(pair: str) -> Callable[[str], Measured]:
  """The from-scratch CLIP's share of faces called male by word pair ``pair`` at threshold 0.5, or with
  ``pair='best_threshold'`` the headline set's best threshold (``experiments.clip_utkface``'s audit)."""

  def read(output_dir: str) -> Measured:
    path = os.path.join(output_dir, "clip_utkface", "audit", "summary.json")
    if not os.path.exists(path):
      raise NotMeasured("not run yet (about 20 min on this CPU)")
    with open(path) as f:
      summary = json.load(f)
    none = summary["methods"]["none"]
    if pair == "best_threshold":  # the argmax of a grid: no interval (the row says so)
      return Measured(float(none["at_best"]["threshold"]), None, None)
    if pair not in none["sets"]:
      raise NotMeasured(f"{path} has no prompt set {pair!r}")
    # A share of the test faces: a binomial proportion, Wilson's interval (as for the audit's rows).
    share = float(none["sets"][pair]["predicted_male"])
    return Measured(share, wilson(share, int(summary["num_examples"])), None)

  return read


# --------------------------------------------------------------------------------------------- table

def table_rows(rows, output_dir: str, previous: Optional[str] = None) -> list[dict]:
  """The table's entries. A row whose source is not in ``output_dir`` keeps the figure, interval and wall
  time that the table at ``previous`` (a seeds.csv) holds for it, if that was measured by the same
  command: runs live on the machine that trained them, and tabulating on another machine (or after its
  out/ was cleared) must not erase what was measured."""
  kept = {}
  if previous and os.path.exists(previous):
    kept = {r["key"]: r for r in _read_csv(previous, "the previous table") if r["fairjax"] and not r["status"]}
  out = []
  for row in rows:
    entry = {"key": row.key, "seed": row.seed, "figure": row.figure, "seed_value": row.seed_value,
             "size": row.size, "command": row.command, "why": row.why}
    try:
      measured = measure(row, output_dir)
      entry.update(fairjax=measured.value, low=measured.interval[0] if measured.interval else None,
                   high=measured.interval[1] if measured.interval else None, wall_s=measured.wall_s, status="")
    except NotMeasured as reason:
      before = kept.get(row.key)
      if before is not None and before["command"] == row.command:
        entry.update({k: _float(before[k]) for k in ("fairjax", "low", "high", "wall_s")}, status="")
      else:
        entry.update(fairjax=None, low=None, high=None, wall_s=None, status=str(reason))
    out.append(entry)
  return out


def _float(text: str) -> Optional[float]:
  return float(text) if text not in ("", None) else None


def _number(value, digits: int = 3) -> str:
  return "" if value is None else f"{value:.{digits}f}"


def write(entries: list[dict], results_dir: str, intro: list[str]) -> str:
  """``seeds.md`` and ``seeds.csv`` in ``results_dir``; returns the markdown's path."""
  os.makedirs(results_dir, exist_ok=True)
  with open(os.path.join(results_dir, "seeds.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(entries[0]))
    writer.writeheader()
    writer.writerows(entries)
  lines = ["# Every seed's headline on real UTKFace", "", *intro, ""]
  table = []
  for e in entries:
    ours = e["status"] or _number(e["fairjax"])
    interval = f"[{_number(e['low'])}, {_number(e['high'])}]" if e["low"] is not None else ""
    wall = f"{e['wall_s'] / 60:.0f} min" if e["wall_s"] else ""
    table.append([e["seed"], e["figure"], _number(e["seed_value"]) if e["seed_value"] is not None else "none",
                  ours, interval, e["size"], wall, f"`{e['command']}`", e["why"]])
  lines += markdown.table(["seed", "figure", "seed's", "fairjax", "95 % interval", "size", "wall", "command",
                           "why they differ"], table)
  path = os.path.join(results_dir, "seeds.md")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return path


# ---------------------------------------------------------------------------------------------- rows

_UTK = "--config.data.image_size=64"
_CPU64 = "64x64"
# Seed 000 §6.3 and §6.4 train on all of UTKFace (17,000 training faces): 50 epochs at 64x64 take about
# 27,000 steps, about 3 h a row on this 2-core CPU (0.35 s a step alone), so they run 10.
_SHORT_EPOCHS = 10
_SHORT = f"{_UTK} --config.train.num_epochs={_SHORT_EPOCHS}"


def _main(config: str, key: str, extra: str = _UTK) -> str:
  return f"python -m fairjax.main --config=configs/{config} --workdir=out/seeds/{key} {extra}".strip()


ROWS = (
    Row("seed000_6.1", "000 §6.1", "gender macro accuracy (test)", 0.826, f"{_CPU64}, 50 epochs",
        "input 64 (the config's 128 on an accelerator); the seed's split and augmentation ranges are unstated",
        _main("seed000_gender_cnn.py", "seed000_6.1"), metric="test/gender/macro_accuracy",
        config="seed000_gender_cnn.py", overrides=_cpu(), cost="about 25 min, as §6.1 took"),
    Row("seed000_6.1_curated", "000 §6.1.6", "gender macro accuracy (test), curated race first", 0.824,
        f"{_CPU64}, 50 epochs", "the seed does not say which §3.3 curation it trained on; this is race first",
        _main("seed000_gender_cnn.py:curated", "seed000_6.1_curated"), metric="test/gender/macro_accuracy",
        config="seed000_gender_cnn.py", arg="curated", overrides=_cpu(), cost="about 25 min, as §6.1 took"),
    Row("seed000_6.1_curated_age_first", "000 §6.1.6", "gender macro accuracy (test), curated age first", 0.824,
        f"{_CPU64}, 50 epochs", "the seed's one curated figure, whichever curation it was; this is age first",
        _main("seed000_gender_cnn.py:curated_age_first", "seed000_6.1_curated_age_first"),
        metric="test/gender/macro_accuracy", config="seed000_gender_cnn.py", arg="curated_age_first",
        overrides=_cpu(), cost="about 25 min, as §6.1 took"),
    Row("seed000_6.2", "000 §6.2", "gender macro accuracy (test), three-branch CNN", None, f"{_CPU64}, 50 epochs",
        "the seed reports no figure (§6.2.2-6.2.5 are empty headings): fairjax's is the only one",
        _main("seed000_demographic.py", "seed000_6.2"), metric="test/gender/macro_accuracy",
        config="seed000_demographic.py", overrides=_cpu(), cost="about 40 min"),
    Row("seed000_6.3", "000 §6.3", "gender recall gap women vs men (test)", 0.023, f"{_CPU64} grey, 10 epochs",
        "input 64 (the seed's 100); 10 of the seed's 50 epochs (50 take about 3 h each on this CPU); all of "
        "UTKFace as the seed's code reads it",
        _main("seed000_tripathi.py", "seed000_6.3", _SHORT), metric="test/gender/gender/accuracy_gap",
        config="seed000_tripathi.py", overrides=_cpu(epochs=_SHORT_EPOCHS), cost="about 1.5-2 h"),
    Row("seed000_6.4", "000 §6.4", "gender recall gap women vs men (test)", 0.11, f"{_CPU64} grey, 10 epochs",
        "input 64 (the config's 128); 10 of the seed's 50 epochs (50 take about 3 h each on this CPU). The "
        "gender branch (ReLU layers 128-64-32-16-8, dropout 0.5 after each) never left the majority class: "
        "every face called a man (accuracy 0.523, the men's share; loss ln 2), so men's recall is 1 and "
        "women's 0, while the age branch learnt (MAE 9.2)",
        _main("seed000_aghav.py", "seed000_6.4", _SHORT), metric="test/gender/gender/accuracy_gap",
        config="seed000_aghav.py", overrides=_cpu(epochs=_SHORT_EPOCHS), cost="about 1.5-2 h"),
    Row("seed000_6.4_curated", "000 §6.4", "the same, curated data (race first)", 0.10, f"{_CPU64} grey, 10 epochs",
        "as above; the seed does not say which curation; this is race first",
        _main("seed000_aghav.py:curated", "seed000_6.4_curated", _SHORT), metric="test/gender/gender/accuracy_gap",
        config="seed000_aghav.py", arg="curated", overrides=_cpu(epochs=_SHORT_EPOCHS), cost="about 1.5-2 h"),
    Row("seed001_age", "001", "age MAE in years (test, adults)", 8.4, f"{_CPU64}, 5 epochs",
        "no VGG-Face weights here (frozen random convolutions unless init_from is given); 64x64; 5 epochs "
        "(the seed's notebook reading of its 250)",
        _main("seed001_vgg_face_age.py", "seed001_age", f"{_UTK} --config.train.num_epochs=5"),
        metric="test/age/mae", config="seed001_vgg_face_age.py", overrides=_cpu(epochs=5), cost="about 1 h"),
    Row("seed001_age_x2", "001", "age MAE, over-60s x2", 7.9, f"{_CPU64}, 5 epochs", "as above",
        _main("seed001_vgg_face_age.py:x2", "seed001_age_x2", f"{_UTK} --config.train.num_epochs=5"),
        metric="test/age/mae", config="seed001_vgg_face_age.py", arg="x2", overrides=_cpu(epochs=5),
        cost="about 1.1 h"),
    Row("seed001_age_x3", "001", "age MAE, over-60s x3", 7.8, f"{_CPU64}, 5 epochs", "as above",
        _main("seed001_vgg_face_age.py:x3", "seed001_age_x3", f"{_UTK} --config.train.num_epochs=5"),
        metric="test/age/mae", config="seed001_vgg_face_age.py", arg="x3", overrides=_cpu(epochs=5),
        cost="about 1.2 h"),
    Row("seed001_gender_all", "001", "IMDB-trained gender model, accuracy on all of UTKFace", 0.78,
        "64x64 grey (the model's), chip as given", "oarriaga's mini-Xception (IMDB), not the seed's VGG-Face "
        "gender model; UTKFace's close crops against IMDB-WIKI's 40 % margin (0.816 with a 0.25 margin)",
        "python -m experiments.pretrained_audit --manual_dir=../shared/data",
        read=pretrained_gender("face_classification_gender", "overall")),
    Row("seed001_gender_black_women", "001", "the same, Black women", 0.46, "64x64 grey, chip as given",
        "as above; here Asian men are read worst (0.340), not Black women",
        "python -m experiments.pretrained_audit --manual_dir=../shared/data",
        read=pretrained_gender("face_classification_gender", "Black women")),
    Row("seed001_gender_all_ssrnet", "001", "IMDB-trained SSR-Net gender, accuracy on all of UTKFace", 0.78,
        "64x64 BGR (the model's), chip as given", "shamangary's SSR-Net (IMDB), not the seed's VGG-Face",
        "python -m experiments.pretrained_audit --manual_dir=../shared/data",
        read=pretrained_gender("ssrnet_gender_imdb", "overall")),
    Row("seed001_gender_black_women_ssrnet", "001", "the same, Black women", 0.46, "64x64 BGR, chip as given",
        "as above", "python -m experiments.pretrained_audit --manual_dir=../shared/data",
        read=pretrained_gender("ssrnet_gender_imdb", "Black women")),
    Row("seed003_male_female", "003", "share called male, male/female (true 0.522)", 0.663, _CLIP64,
        "a small CLIP trained from scratch on UTKFace's captioned training part, not OpenAI's ViT-B/32: it "
        "calls a few points fewer faces male than are (0.46-0.47 against 0.52) where OpenAI's called more",
        "python -m experiments.clip_utkface --manual_dir=../shared/data --output_dir=out/seeds/clip_utkface",
        read=seed003("male/female")),
    Row("seed003_man_woman", "003", "share called male, man/woman", 0.5365, _CLIP64, "as above",
        "python -m experiments.clip_utkface --manual_dir=../shared/data --output_dir=out/seeds/clip_utkface",
        read=seed003("man/woman")),
    Row("seed003_boy_girl", "003", "share called male, boy/girl", 0.6134, _CLIP64, "as above",
        "python -m experiments.clip_utkface --manual_dir=../shared/data --output_dir=out/seeds/clip_utkface",
        read=seed003("boy/girl")),
    Row("seed003_threshold", "003", "best threshold (highest macro F1)", 0.2, _CLIP64,
        "as above; the best of a 0.05-step grid of thresholds (no interval: an argmax over a grid)",
        "python -m experiments.clip_utkface --manual_dir=../shared/data --output_dir=out/seeds/clip_utkface",
        read=seed003("best_threshold")),
    # One command for both rows: the experiment's table holds the models it was asked for (reused if run).
    Row("seed004_m1", "004", "M1 (alpha 0) age accuracy on EBD", 0.46, "64x64, half-width trunk (--cpu)",
        "OD of about 5,000 UTKFace faces against the seed's larger sets; CPU trunk",
        _SEED004, read=seed004("m1", "age_accuracy_EBD")),
    Row("seed004_m2", "004", "M2 (alpha 1) age accuracy on EBD", 0.49, "64x64, half-width trunk (--cpu)",
        "as above", _SEED004, read=seed004("m2", "age_accuracy_EBD")),
)
