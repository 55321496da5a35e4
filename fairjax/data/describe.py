"""Statistics and pictures of a face data set's labels: what `python -m fairjax.data` writes."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import pandas as pd

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
  """The JSON-able statistics of a split's labels (see the module docstring)."""
  gender = _named(metadata["gender"], schema.GENDERS)
  race = _named(metadata["race"], schema.RACES)
  bands = age_band(metadata["age"].to_numpy())
  band_order = sorted(bands.unique(), key=lambda b: (b == "unknown", int(b.split("-")[0]) if b != "unknown" else 0))
  def ordered(names):  # the schema's order, with "unknown" last where it occurs
    return list(names) + (["unknown"] if "unknown" in set(gender) | set(race) else [])

  cross = pd.crosstab(race, gender).reindex(index=ordered(schema.RACES), columns=ordered(schema.GENDERS),
                                            fill_value=0)
  return {
      "num_examples": int(len(metadata)),
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
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center")
    ax.set_title(key.replace("_", " "))
  cross = pd.DataFrame(stats["race_x_gender"]).T.fillna(0)
  cross.plot.bar(ax=axes[3], rot=45)
  axes[3].set_title("race x gender")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def sample_grid(source, path: str, rows: int = 4, cols: int = 8, seed: int = 0) -> None:
  """A grid of random examples, each titled with its labels."""
  picks = np.random.default_rng(seed).choice(len(source), size=min(rows * cols, len(source)), replace=False)
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows))
  for ax in np.ravel(axes):
    ax.axis("off")
  for ax, i in zip(np.ravel(axes), picks):
    record = source[int(i)]
    image = np.asarray(record["image"])
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
    gender = schema.GENDERS[record["gender"]] if 0 <= record["gender"] < 2 else "?"
    race = schema.RACES[record["race"]] if 0 <= record["race"] < len(schema.RACES) else "?"
    ax.set_title(f"{record['age']} {gender}\n{race}", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
