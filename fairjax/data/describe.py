"""Statistics and pictures of a face data set's labels: what `python -m fairjax.data` writes."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import pandas as pd

from fairjax import markdown
from fairjax.data import schema

AGE_BAND_WIDTH = 10


def age_band(age) -> pd.Series:
  """'0-9', '10-19', ... (seed 000 §6.1.2 stratifies by 10-year bands); 'unknown' for age -1."""
  age = pd.Series(age)
  low = (age // AGE_BAND_WIDTH) * AGE_BAND_WIDTH
  return low.map(lambda a: "unknown" if a < 0 else f"{a}-{a + AGE_BAND_WIDTH - 1}")


def _named(codes: pd.Series, names) -> pd.Series:
  return codes.map(lambda c: names[c] if 0 <= c < len(names) else "unknown")


def dataset_stats(metadata: pd.DataFrame, skipped: list[dict]) -> dict:
  """The JSON-able statistics of a split's labels (see the module docstring): of a metadata frame, or
  of a plan (``plans.py``), whose repeated rows and augmented copies count as examples."""
  gender = _named(metadata["gender"], schema.GENDERS)
  race = _named(metadata["race"], schema.RACES)
  bands = age_band(metadata["age"].to_numpy())
  band_order = sorted(bands.unique(), key=lambda b: (b == "unknown", int(b.split("-")[0]) if b != "unknown" else 0))
  def ordered(names):  # the schema's order, with "unknown" last where it occurs
    return list(names) + (["unknown"] if "unknown" in set(gender) | set(race) else [])

  cross = pd.crosstab(race, gender).reindex(index=ordered(schema.RACES), columns=ordered(schema.GENDERS),
                                            fill_value=0)
  copies = int((metadata["augment_seed"] >= 0).sum()) if "augment_seed" in metadata else 0
  distinct = int(metadata["source_index"].nunique()) if "source_index" in metadata else int(len(metadata))
  return {
      "num_examples": int(len(metadata)),
      "augmented_copies": copies,  # plan rows drawn as augmented copies (rebalancing)
      "distinct_images": distinct,  # source images behind the rows (fewer when rows repeat)
      "skipped": list(skipped),
      "gender": {k: int((gender == k).sum()) for k in ordered(schema.GENDERS)},
      "race": {k: int((race == k).sum()) for k in ordered(schema.RACES)},
      "age_band": {b: int((bands == b).sum()) for b in band_order},
      "race_x_gender": {r: {g: int(cross.loc[r, g]) for g in cross.columns} for r in cross.index},
  }


def plot_distributions(stats: dict, path: str, title: str) -> None:
  """Bar charts of gender, race, age band and race x gender counts, side by side."""
  fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
  for ax, key in zip(axes[:3], ("gender", "race", "age_band")):
    names, counts = list(stats[key]), list(stats[key].values())
    ax.bar(range(len(names)), counts, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 3 else 0,
                  ha="right" if len(names) > 3 else "center")
    ax.set_title(key.replace("_", " "))
  cross = pd.DataFrame(stats["race_x_gender"]).T.fillna(0)
  cross.plot.bar(ax=axes[3], rot=45)
  axes[3].set_title("race x gender")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def spread(counts: dict) -> tuple[int, int]:
  """(smallest, largest) count of a breakdown (``race_x_gender`` flattened), 'unknown' left out."""
  values = [n for name, n in _flat(counts).items() if "unknown" not in name]
  return (min(values), max(values)) if values else (0, 0)


def _flat(counts: dict) -> dict:
  """A breakdown as {name: count}; race x gender cells are named 'race gender'."""
  if counts and isinstance(next(iter(counts.values())), dict):
    return {f"{r} {g}": n for r, by_gender in counts.items() for g, n in by_gender.items()}
  return dict(counts)


BREAKDOWNS = ("gender", "race", "age_band", "race_x_gender")


def comparison_table(before: dict, after: dict) -> pd.DataFrame:
  """Before and after a treatment, side by side (seed 000 §3.2's class proportions and demographic
  distributions): one row per count of the stats, with its share of the examples and after / before."""
  rows = [("total", "examples", before["num_examples"], after["num_examples"]),
          ("total", "augmented copies", before.get("augmented_copies", 0), after.get("augmented_copies", 0))]
  for key in BREAKDOWNS:
    old, new = _flat(before[key]), _flat(after[key])
    rows += [(key, name, old.get(name, 0), new.get(name, 0)) for name in list(old) + [n for n in new if n not in old]]
  for key in BREAKDOWNS:
    (old_min, old_max), (new_min, new_max) = spread(before[key]), spread(after[key])
    rows += [("spread", f"{key} min", old_min, new_min), ("spread", f"{key} max", old_max, new_max)]
  table = pd.DataFrame(rows, columns=["breakdown", "value", "before", "after"])
  counted = table["breakdown"].isin(BREAKDOWNS)
  table["before_share"] = np.where(counted, table["before"] / max(before["num_examples"], 1), np.nan)
  table["after_share"] = np.where(counted, table["after"] / max(after["num_examples"], 1), np.nan)
  table["ratio"] = table["after"] / table["before"].replace(0, np.nan)
  return table


def markdown_table(table: pd.DataFrame) -> str:
  """``table`` as a GitHub markdown table: shares in per cent, ratios to two decimals."""
  def cell(column, value):
    if isinstance(value, float) and np.isnan(value):
      return ""
    if column.endswith("share"):
      return f"{100 * value:.1f}%"
    return f"{value:.2f}" if isinstance(value, float) else str(value)

  rows = [[cell(c, v) for c, v in zip(table.columns, row)] for row in table.itertuples(index=False)]
  return "\n".join(markdown.table(list(table.columns), rows)) + "\n"


def plot_comparison(before: dict, after: dict, path: str, title: str) -> None:
  """Grouped bars of every breakdown before and after a treatment; titles give each min-max spread."""
  fig, axes = plt.subplots(1, 4, figsize=(20, 4.2), gridspec_kw={"width_ratios": [1, 2, 3, 4]})
  for ax, key in zip(axes, BREAKDOWNS):
    old, new = _flat(before[key]), _flat(after[key])
    names = list(old) + [n for n in new if n not in old]
    x = np.arange(len(names))
    ax.bar(x - 0.2, [old.get(n, 0) for n in names], 0.4, label="before", color="tab:gray")
    ax.bar(x + 0.2, [new.get(n, 0) for n in names], 0.4, label="after", color="tab:blue")
    ax.set_xticks(x, names, rotation=45 if len(names) > 2 else 0, ha="right" if len(names) > 2 else "center",
                  fontsize=8)
    ax.set_title(f"{key.replace('_', ' ')}: {'%d-%d' % spread(before[key])} -> {'%d-%d' % spread(after[key])}",
                 fontsize=9)
  axes[0].legend(loc="lower center", fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _title(age, gender, race) -> str:
  gender = schema.GENDERS[gender] if 0 <= gender < len(schema.GENDERS) else "?"
  race = schema.RACES[race] if 0 <= race < len(schema.RACES) else "?"
  return f"{age} {gender}\n{race}"


def _draw(tiles: list, path: str, rows: int, cols: int) -> None:
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows))
  for ax in np.ravel(axes):
    ax.axis("off")
  for ax, (image, title) in zip(np.ravel(axes), tiles):
    image = np.asarray(image)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
              vmin=0, vmax=255 if image.dtype == np.uint8 else 1)
    ax.set_title(title, fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def sample_grid(source, path: str, rows: int = 4, cols: int = 8, seed: int = 0) -> None:
  """A grid of random examples, each titled with its labels."""
  picks = np.random.default_rng(seed).choice(len(source), size=min(rows * cols, len(source)), replace=False)
  records = [source[int(i)] for i in picks]
  _draw([(r["image"], _title(r["age"], r["gender"], r["race"])) for r in records], path, rows, cols)


def plan_sample_grid(source, plan: pd.DataFrame, copy_images, path: str, rows: int = 4, cols: int = 8,
                     seed: int = 0) -> None:
  """A grid of a plan's rows as training reads them: pairs of an original and one of its augmented
  copies (``copy_images(uint8 images, augment seeds) -> images in [0, 1]``, e.g. the on-device copy
  augmentation) fill half the grid when the plan has copies; random rows fill the rest."""
  rng = np.random.default_rng(seed)
  copies = plan[plan["augment_seed"] >= 0]
  pairs = copies.iloc[rng.choice(len(copies), min(len(copies), rows * cols // 4), replace=False)]
  rest = plan.iloc[rng.choice(len(plan), min(len(plan), rows * cols - 2 * len(pairs)), replace=False)]
  shown = [item for row in pairs.itertuples() for item in ((row, -1), (row, row.augment_seed))]
  shown += [(row, row.augment_seed) for row in rest.itertuples()]
  images = np.stack([np.asarray(source[int(row.source_index)]["image"]) for row, _ in shown])
  drawn = np.asarray(copy_images(images, np.array([s for _, s in shown], np.int32)))
  titles = [_title(row.age, row.gender, row.race) + (f" copy {s}" if s >= 0 else "") for row, s in shown]
  _draw(list(zip(drawn, titles)), path, rows, cols)
