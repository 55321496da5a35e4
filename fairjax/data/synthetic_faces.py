"""Procedurally drawn faces: the data every job, test and demo can run on without downloading a face set.

Each example shows a head and shoulders whose labels are visible through several overlapping cues, so
that a classifier has to combine them and can be fooled, as on real faces:

  gender  jaw width and squareness, hair length and volume, beard / stubble, brow weight, lipstick
  age     face proportions and eye size (children), greying hair, receding hairline, wrinkles, jowls
  group   skin tone and undertone, hair colour (``race``, codes as schema.RACES; distributions overlap)

and nuisance variation that carries no label: pose (offset, rotation, scale), lighting direction and
brightness, colour cast, clothing and background colour and texture, sensor noise, occluders.

Determinism. A split is an endless stream; example i of split s under config seed k is a pure function
of (k, s, i) and the split's sampling: its labels and appearance come from a counter-based hash of
(k, s, i, variable), and its textures are windows of noise banks fixed by k. So any shard can be
regenerated alone, ``metadata(split, n)`` is a prefix of ``metadata(split, m)`` for n < m, and images do
not depend on how examples are batched (bit for bit with one numpy build on one kind of CPU; elsewhere
float32 rounding in numpy's vectorised maths may move the odd pixel by one level).

Biases. Each split has a ``Sampling``: group proportions, the female fraction of each group, a
spurious age-gender correlation (seed 004's biased set BD: only young women and old men) and label
noise. ``SyntheticFacesConfig.difficulty`` makes chosen groups harder to see (lower contrast, blur,
heavier noise) in every split; together with under-representation in training this is what makes a
plain classifier's accuracy differ between groups. The defaults plant one such bias (group 1: 5 % of
training, harder to see) and draw a balanced test split.

Measured (2-core CPU, when the defaults were set): a plain Flax CNN (conv 32/64/128, dense 128, Adam
with cosine decay from 3e-3, batch 64, flips, 10 epochs) trained on 6,000 default training images
reaches 88.2 % gender accuracy on 2,000 balanced test images; group 1 scores 80.1 %, 10 points below
the mean of the others, with an FPR gap of 0.20 between groups. Trained on balanced, equally visible
data instead, group 1 is level with the rest (FPR gap 0.04): the gap is the planted bias. About
2,500 images/s are drawn on one core at 64x64.
"""

import dataclasses
import threading
from typing import Iterator, Optional, Union

import numpy as np
import pandas as pd

from fairjax.data import captions
from fairjax.data import schema

SPLITS = ("train", "validation", "test")
NUM_GROUPS = len(schema.RACES)
# Captions are worded by ``captions``, which UTKFace's label-built captions share; the names below are
# what the caption tokenizer's corpus (``fairjax.clip.tokenizer``) enumerates.
CAPTION_RACE_WORDS = captions.RACE_WORDS
CAPTION_TEMPLATES = captions.TEMPLATES
AGE_BANDS = captions.AGE_BANDS
MIN_AGE, MAX_AGE = 1, 90
# What difficulty 1 does to a group's pictures: blur mix, contrast lost, noise standard deviation added.
BLUR, CONTRAST_LOSS, EXTRA_NOISE = 0.7, 0.5, 0.05

PerGroup = Union[float, tuple[float, ...]]


def _per_group(value: PerGroup, name: str, low: float, high: float) -> np.ndarray:
  values = np.asarray(value, np.float64)
  if values.ndim == 0:
    values = np.full(NUM_GROUPS, values)
  if values.shape != (NUM_GROUPS,):
    raise ValueError(f"{name} needs one value or {NUM_GROUPS} (one per group), got {value!r}")
  if not np.all((values >= low) & (values <= high)):
    raise ValueError(f"{name} must lie in [{low}, {high}], got {value!r}")
  return values


def _check_ages(ages, name: str):
  if len(ages) != 2 or not MIN_AGE <= ages[0] <= ages[1] <= MAX_AGE:
    raise ValueError(f"{name} must be (low, high) with {MIN_AGE} <= low <= high <= {MAX_AGE}, got {ages!r}")


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Who is in a split: the label distribution, and the biases planted in it. Defaults: balanced.

  group_proportions       relative frequency of each group (normalised; need not sum to 1).
  female_fraction         P(female | group), one value or one per group.
  age_range               ages are uniform integers in [low, high] ...
  age_gender_correlation  ... except that with probability |c| an example's age is drawn from its
                          gender's band instead: c = 1 gives seed 004's BD (women only from young_ages,
                          men only from old_ages), c = -1 its complement (young men, old women).
  label_noise             P(recorded gender is flipped | group), one value or one per group. The image
                          shows the true gender (metadata column ``true_gender``).
  """

  group_proportions: tuple[float, ...] = (1.0,) * NUM_GROUPS
  female_fraction: PerGroup = 0.5
  age_range: tuple[int, int] = (16, 80)
  age_gender_correlation: float = 0.0
  young_ages: tuple[int, int] = (16, 35)
  old_ages: tuple[int, int] = (40, 70)
  label_noise: PerGroup = 0.0

  def __post_init__(self):
    p = np.asarray(self.group_proportions, np.float64)
    if p.shape != (NUM_GROUPS,):
      raise ValueError(f"group_proportions needs {NUM_GROUPS} values (one per group), got {self.group_proportions!r}")
    if np.any(p < 0) or not np.all(np.isfinite(p)):
      raise ValueError(f"group_proportions must be non-negative, got {self.group_proportions!r}")
    if p.sum() <= 0:
      raise ValueError(f"group_proportions must sum to a positive number, got {self.group_proportions!r}")
    _per_group(self.female_fraction, "female_fraction", 0.0, 1.0)
    _per_group(self.label_noise, "label_noise", 0.0, 1.0)
    _check_ages(self.age_range, "age_range")
    if not -1.0 <= self.age_gender_correlation <= 1.0:
      raise ValueError(f"age_gender_correlation must lie in [-1, 1], got {self.age_gender_correlation}")
    if self.age_gender_correlation:
      for name in ("young_ages", "old_ages"):
        _check_ages(getattr(self, name), name)
        band = getattr(self, name)
        if not self.age_range[0] <= band[0] <= band[1] <= self.age_range[1]:
          raise ValueError(f"{name} {band} must lie inside age_range {self.age_range}")


@dataclasses.dataclass(frozen=True)
class SyntheticFacesConfig:
  """The data set: seed, image size, how hard each group is to see, and each split's sampling.

  The defaults are the *default biased configuration*: group 1 is 5 % of training (and validation,
  which follows training unless given, or is balanced with ``balanced_validation``) and harder to see
  everywhere; the test split is balanced. ``difficulty`` (one per group, 0 plain to 1 hard) lowers
  contrast, blurs and adds noise.
  """

  seed: int = 0
  image_size: int = 64
  train: Sampling = Sampling(group_proportions=(0.35, 0.05, 0.2, 0.2, 0.2))
  validation: Optional[Sampling] = None
  test: Sampling = Sampling()
  difficulty: tuple[float, ...] = (0.0, 1.0, 0.0, 0.0, 0.0)
  # Validation drawn as the (balanced) test split is, not as training: what selection and a
  # post-processing fit need to see of a group that is scarce in training.
  balanced_validation: bool = False

  def __post_init__(self):
    if not 16 <= self.image_size <= 1024:
      raise ValueError(f"image_size must lie in [16, 1024], got {self.image_size}")
    if not 0 <= self.seed < 2**63:
      raise ValueError(f"seed must be a non-negative 63-bit integer, got {self.seed}")
    _per_group(self.difficulty, "difficulty", 0.0, 1.0)

  def sampling(self, split: str) -> Sampling:
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "validation":
      if self.balanced_validation:
        if self.validation is not None:
          raise ValueError("give a validation Sampling or balanced_validation, not both")
        return Sampling()
      return self.validation or self.train
    return getattr(self, split)


def age_gender_spurious_config(strength: float = 1.0, **kwargs) -> SyntheticFacesConfig:
  """Seed 004: training and validation with age-gender correlation ``strength`` (1: BD, only young
  women and old men), the test split its complement (-1: only young men and old women), every group
  equally frequent and equally visible."""
  kwargs.setdefault("difficulty", (0.0,) * NUM_GROUPS)
  return SyntheticFacesConfig(train=Sampling(age_gender_correlation=strength),
                              test=Sampling(age_gender_correlation=-1.0), **kwargs)


# ---------------------------------------------------------------------------------------------- latents

def _mix(x: np.ndarray) -> np.ndarray:
  """splitmix64's finaliser: a bijection of uint64 whose outputs look independent for nearby inputs."""
  x = x + np.uint64(0x9E3779B97F4A7C15)
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


class _Stream:
  """Uniforms indexed by (variable, example): each variable has its own hash stream, so adding a
  variable, or changing how another is used, leaves the others' values unchanged."""

  def __init__(self, seed: int, split: str, index: np.ndarray):
    base = _mix(_mix(np.full(1, seed, np.uint64)) + np.uint64(SPLITS.index(split) + 1))
    self.keys = _mix(base + np.asarray(index, np.uint64))

  def bits(self, variable: int) -> np.ndarray:
    return _mix(self.keys ^ _mix(np.full(1, variable + 1, np.uint64)))

  def uniform(self, variable: int, low=0.0, high=1.0) -> np.ndarray:
    u = (self.bits(variable) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return low + (high - low) * u

  def normal(self, variable: int, mean=0.0, std=1.0) -> np.ndarray:
    """Box-Muller from two variables' uniforms (variable and variable + 1000)."""
    u1 = 1.0 - self.uniform(variable)
    u2 = self.uniform(variable + 1000)
    return mean + std * np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)


# Appearance of each group: skin tone (0 lightest, 1 darkest) mean and spread, undertone (+ yellow,
# - red) mean, hair lightness (0 black, 1 blonde) mean and spread, P(red hair).
_GROUP_LOOKS = np.array([
    # tone  sd    under  hair  sd    red
    [0.16, 0.10, -0.45, 0.30, 0.20, 0.06],   # 0 White
    [0.74, 0.12, 0.05, 0.04, 0.04, 0.00],    # 1 Black
    [0.32, 0.10, 0.65, 0.06, 0.05, 0.00],    # 2 Asian
    [0.55, 0.11, 0.25, 0.07, 0.06, 0.00],    # 3 Indian
    [0.42, 0.12, 0.10, 0.16, 0.10, 0.02],    # 4 Others
])


def _labels(stream: _Stream, sampling: Sampling) -> dict[str, np.ndarray]:
  p = np.cumsum(sampling.group_proportions) / np.sum(sampling.group_proportions)
  race = np.minimum(np.searchsorted(p, stream.uniform(0), side="right"), NUM_GROUPS - 1)
  female = stream.uniform(1) < _per_group(sampling.female_fraction, "female_fraction", 0, 1)[race]
  lo, hi = sampling.age_range
  u_age = stream.uniform(2)
  age = lo + np.floor(u_age * (hi - lo + 1))
  c = sampling.age_gender_correlation
  if c:
    young, old = (sampling.young_ages, sampling.old_ages) if c > 0 else (sampling.old_ages, sampling.young_ages)
    band_lo = np.where(female, young[0], old[0])
    band_hi = np.where(female, young[1], old[1])
    aligned = stream.uniform(3) < abs(c)
    age = np.where(aligned, band_lo + np.floor(u_age * (band_hi - band_lo + 1)), age)
  flipped = stream.uniform(4) < _per_group(sampling.label_noise, "label_noise", 0, 1)[race]
  return {"age": age.astype(np.int32), "gender": (female ^ flipped).astype(np.int32),
          "race": race.astype(np.int32), "true_gender": female.astype(np.int32)}


def _appearance(s: _Stream, female: np.ndarray, age: np.ndarray, race: np.ndarray) -> dict[str, np.ndarray]:
  """The latent appearance of each example from its true labels; every cue overlaps between classes."""
  male = ~female
  looks = _GROUP_LOOKS[race]
  youth = np.clip((18.0 - age) / 17.0, 0, 1)          # 1 at birth, 0 from 18
  ageing = np.clip((age - 28.0) / 50.0, 0, 1)          # 0 up to 28, 1 at 78
  adult = age >= 16
  long_hair = s.uniform(20) < np.where(female, 0.85, 0.07)
  beard_kind = s.uniform(21)
  beard = np.where(male & (age >= 18) & (beard_kind < 0.35), s.uniform(22, 0.6, 1.0),
                   np.where(male & (age >= 16) & (beard_kind < 0.65), s.uniform(22, 0.25, 0.45), 0.0))
  return {
      "hair_lightness": np.clip(s.normal(24, looks[:, 3], looks[:, 4]), 0, 1),
      "hair_red": (s.uniform(25) < looks[:, 5]).astype(np.float64),
      "grey": np.clip((age - s.normal(26, 47, 8)) / 22.0, 0, 1),
      "hair_length": np.where(long_hair, s.uniform(27, 0.25, 1.1), s.uniform(27, -0.45, 0.0)),
      "hair_volume": np.where(female, s.uniform(28, 1.08, 1.25), s.uniform(28, 1.02, 1.14)),
      "fringe": np.where(s.uniform(29) < np.where(female, 0.35, 0.15), s.uniform(30, 0.1, 0.35), 0.0),
      "recede": np.clip(s.uniform(23) * 1.6 * ageing * male + 0.15 * s.normal(31) * male, 0, 1),
      "beard": beard,
      "face_width": np.clip(s.normal(10, 0.36, 0.018) + 0.02 * male + 0.02 * youth, 0.3, 0.45),
      "face_height": np.clip(s.normal(11, 0.50, 0.022) - 0.07 * youth + 0.01 * male, 0.38, 0.6),
      "jaw": np.clip(s.normal(12, np.where(female, 0.68, 0.92), 0.06) + 0.08 * ageing - 0.05 * youth, 0.5, 1.05),
      "squareness": np.clip(s.normal(13, np.where(female, 0.1, 0.6), 0.2), 0, 1),
      "brow": np.clip(s.normal(14, np.where(female, 0.55, 1.05), 0.15), 0.3, 1.4),
      "eye_size": np.clip(s.normal(15, 1.0 + 0.05 * female + 0.3 * youth - 0.12 * ageing, 0.08), 0.7, 1.5),
      "lipstick": np.where(female & adult & (s.uniform(16) < 0.5), s.uniform(17, 0.4, 1.0), 0.0),
      "wrinkles": ageing * s.uniform(18, 0.5, 1.2),
      "skin_tone": np.clip(s.normal(40, looks[:, 0], looks[:, 1]), 0, 1),
      "undertone": np.clip(s.normal(41, looks[:, 2], 0.35), -1, 1),
      "shift_x": s.uniform(50, -0.13, 0.13),
      "shift_y": s.uniform(51, -0.10, 0.13),
      "rotation": s.uniform(52, -0.26, 0.26),
      "scale": s.uniform(53, 0.8, 1.12),
      "light_angle": s.uniform(54, 0, 2 * np.pi),
      "light_strength": s.uniform(55, 0.0, 0.55),
      "brightness": s.uniform(56, 0.65, 1.2),
      "cast_r": s.normal(57, 0, 0.05),
      "cast_b": s.normal(58, 0, 0.05),
      **{f"background_{c}": s.uniform(60 + i) for i, c in enumerate("rgb")},
      "background_texture": s.uniform(63, 0.0, 0.25),
      **{f"clothes_{c}": s.uniform(64 + i) for i, c in enumerate("rgb")},
      "occluder": (s.uniform(70) < 0.1).astype(np.float64),
      "occluder_x": s.uniform(71, -0.7, 0.7),
      "occluder_y": s.uniform(72, -0.7, 0.7),
      "occluder_w": s.uniform(73, 0.1, 0.4),
      "occluder_h": s.uniform(74, 0.1, 0.4),
      "occluder_shade": s.uniform(75),
      "noise": s.uniform(80, 0.01, 0.045),
      "texture_id": (s.bits(81) >> np.uint64(33)).astype(np.int64),
  }


# --------------------------------------------------------------------------------------------- drawing


def _soft(f: np.ndarray, inv_px: np.ndarray) -> np.ndarray:
  """Coverage of each pixel by the region f < 0, f roughly a signed distance: antialiased edges."""
  out = f * -inv_px
  out += 0.5
  return np.clip(out, 0.0, 1.0, out=out)


def _ellipse(u, v, cx, cy, a, b, inv_px) -> np.ndarray:
  """Coverage of an axis-aligned ellipse, from its implicit function to first order (no square root)."""
  k = 0.5 * np.minimum(a, b) * inv_px
  du = u - cx
  du *= 1 / a
  du *= du
  dv = v - cy
  dv *= 1 / b
  dv *= dv
  du += dv
  du *= -k
  du += 0.5 + k
  return np.clip(du, 0.0, 1.0, out=du)


def _paint(image, alpha, colour):
  """Composite ``colour`` ([3, N, 1, 1]) over ``image`` [3, N, H, W] with coverage ``alpha`` [N, H, W]."""
  diff = colour - image
  diff *= alpha
  image += diff


def _paint_some(image, alpha_of, colour, which):
  """``_paint`` on the images where ``which`` holds only: rare features (beards, occluders) cost less.
  ``alpha_of(sel)`` gives the coverage of the selected images."""
  sel = np.flatnonzero(which)
  if sel.size > len(which) // 3:  # gathering most of the batch costs more than drawing it all
    _paint(image, alpha_of(slice(None)), colour)
  elif sel.size:
    part = image[:, sel]
    _paint(part, alpha_of(sel), colour[:, sel])
    image[:, sel] = part


def _rgb(colours) -> np.ndarray:
  """[N, 3] colours → [3, N, 1, 1] float32, to broadcast over the channel-first image."""
  return np.ascontiguousarray(np.asarray(colours, np.float32).T)[:, :, None, None]


def _hair_colour(lat) -> np.ndarray:
  stops = np.array([[0.05, 0.04, 0.04], [0.22, 0.13, 0.07], [0.45, 0.30, 0.15], [0.78, 0.60, 0.30]])
  t = lat["hair_lightness"] * 3
  i = np.minimum(t.astype(int), 2)
  base = stops[i] + (t - i)[:, None] * (stops[i + 1] - stops[i])
  base = np.where(lat["hair_red"][:, None] > 0, [0.55, 0.22, 0.09], base)
  return base + lat["grey"][:, None] * ([0.72, 0.72, 0.74] - base)


def _skin_colour(lat) -> np.ndarray:
  t = lat["skin_tone"][:, None]
  skin = (1 - t) * np.array([0.96, 0.80, 0.68]) + t * np.array([0.36, 0.22, 0.15])
  ut = lat["undertone"][:, None]
  return skin + np.where(ut > 0, ut * np.array([0.0, 0.03, -0.07]), -ut * np.array([0.05, -0.03, -0.02]))


def _flat_colour(lat, name: str) -> np.ndarray:
  """Background / clothes colour from uniform latents, pulled half-way to its own grey (less garish)."""
  rgb = np.stack([lat[f"{name}_{c}"] for c in "rgb"], -1) * 0.8 + 0.1
  return 0.5 * (rgb + rgb.mean(-1, keepdims=True))


class _Renderer:
  """Draws batches of faces from latent columns, vectorised over [N, H, W] grids of face coordinates.

  Images are channel-first ([3, N, H, W]) while drawing: numpy broadcasts a colour over long rows far
  faster than over a trailing axis of 3.
  """

  BANK = 16  # noise textures per bank; an image uses a window of one, at an offset given by its latents

  def __init__(self, size: int, seed: int, difficulty: np.ndarray):
    self.size, self.difficulty = size, difficulty
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    self.x, self.y = c[None, None, :], c[None, :, None]
    rng = np.random.default_rng([seed, 0x5EED])
    self.fine = rng.random((self.BANK, 4, 2 * size, 2 * size), dtype=np.float32) - 0.5
    coarse = rng.standard_normal((self.BANK, 2, 12, 12)).astype(np.float32)
    up = np.clip(1 - np.abs(np.linspace(0, 11, 2 * size)[:, None] - np.arange(12)[None]), 0, 1).astype(np.float32)
    self.coarse = np.einsum("ia,kcab,jb->kcij", up, coarse, up)

  def _windows(self, bank, texture_id, salt):
    """[C, N, H, W] windows of a bank, one per image, chosen by its texture_id."""
    key = texture_id * 0x9E3779B1 + salt  # texture_id < 2**31: no int64 overflow
    k, dy, dx = key % self.BANK, (key >> 8) % self.size, (key >> 16) % self.size
    s = self.size
    return np.stack([bank[k[i], :, dy[i]:dy[i] + s, dx[i]:dx[i] + s] for i in range(len(k))], axis=1)

  def __call__(self, lat: dict[str, np.ndarray]) -> np.ndarray:
    L = {k: np.asarray(v, np.float32)[:, None, None] for k, v in lat.items() if k != "texture_id"}
    n = len(lat["texture_id"])
    fine, coarse = self._windows(self.fine, lat["texture_id"], 1), self._windows(self.coarse, lat["texture_id"], 2)
    x, y = self.x, self.y
    # Face coordinates: u right, v down, head centre at v = 0, after the pose's offset, rotation, scale.
    cos, sin, scale = np.cos(L["rotation"]), np.sin(L["rotation"]), L["scale"]
    dx, dy = x - L["shift_x"], y - (L["shift_y"] + 0.02)
    u = dx * (cos / scale) + dy * (sin / scale)
    v = dy * (cos / scale) - dx * (sin / scale)
    au, ip = np.abs(u), scale * (self.size / 2)  # ip: pixels per face unit
    a, b = L["face_width"], L["face_height"]
    t = v * (1 / b)
    ua2 = u * (1 / a)
    ua2 *= ua2
    hair, skin = _rgb(_hair_colour(lat)), _rgb(_skin_colour(lat))
    # Shading and texture go into one brightness field applied at the end: a pass over one channel costs
    # a third of a pass over the picture, so darkening (neck, nose, wrinkles, strands) is done there.
    shade = 1 + L["background_texture"] * coarse[0]

    image = np.empty((3, n, self.size, self.size), np.float32)
    image[:] = _rgb(_flat_colour(lat, "background"))
    neck = _soft(np.maximum(au - 0.45 * a, 0.3 * b - v), ip)
    neck_ears = np.maximum(neck, _ellipse(au, v, a * 0.97, 0.05 * b, 0.14 * a, 0.19 * b, ip))
    _paint(image, neck_ears, skin)
    shade -= 0.15 * neck
    clothes = _ellipse(u, v, 0, b + 0.62, 0.95, 0.5, ip)
    _paint(image, clothes, _rgb(_flat_colour(lat, "clothes")))
    shade += (0.15 * coarse[1] - L["background_texture"] * coarse[0] + 0.15 * neck) * clothes
    # Hair behind the head: a cap above the ears, and for long hair a curtain down to the shoulders.
    hv, length, recede = L["hair_volume"], L["hair_length"], L["recede"]
    outer = (u * (1 / (a * hv))) ** 2 + ((v + 0.06 * b) * (1 / (b * hv * 0.96))) ** 2 - 1
    outer *= 0.5 * a
    back = np.maximum(outer, v - b * (0.3 - 0.35 * recede))
    long = np.flatnonzero(lat["hair_length"] > 0)
    if long.size:
      vl, bl = v[long], b[long]
      curtain = np.maximum(au[long] - a[long] * (hv[long] + 0.15) + 0.1 * np.clip(vl - bl, 0, None),
                           vl - bl * (1 + length[long] - 0.25 * ua2[long]))
      back[long] = np.minimum(back[long], np.maximum(curtain, -vl - 0.1 * bl))
    back = _soft(back, ip)
    _paint(image, back, hair * 0.85)
    # The face: an ellipse whose lower half narrows to the jaw width and flattens with squareness.
    lower = np.clip(t, 0, 1)
    lower *= lower
    width = 1 + (L["jaw"] - 1) * lower
    width *= a
    t2 = t * t
    q = (u / width) ** 2
    q += t2
    q += L["squareness"] * lower * (t2 * t2 - t2)
    face = _soft((q - 1) * (0.5 * a), ip)
    _paint(image, face, skin)
    # Hair over the face: cap above a hairline that rises with recession, lowered by a fringe.
    hairline = b * (-0.48 + L["fringe"] + 0.9 * ua2 - 0.6 * recede * np.clip(1 - 1.5 * ua2, 0, 1))
    cap = _soft(np.maximum(outer, v - hairline), ip)
    _paint(image, cap, hair)
    shade += 0.25 * fine[3] * np.maximum(cap, back)
    # Wrinkles where the skin shows: forehead lines (cos(25 t), separable in the pose's rows and
    # columns, so no full-size trigonometry) and nasolabial folds.
    k = 25 / (b * scale)
    ry, rx = k * dy * cos, k * dx * sin
    lines = np.cos(ry) * np.cos(rx) + np.sin(ry) * np.sin(rx)
    lines *= 3
    lines -= 2
    lines *= (t > -0.7) & (t < -0.28)
    fold = np.abs((au - 0.2 * a) * (0.34 * b) - (v - 0.28 * b) * (0.22 * a))
    fold = _soft(fold - np.hypot(0.22 * a, 0.34 * b) * (0.5 / ip), ip / np.hypot(0.22 * a, 0.34 * b))
    fold *= (t > 0.28) & (t < 0.62)
    lines = np.clip(np.maximum(lines, fold), 0, 1)
    lines *= np.maximum(face - cap, 0)
    shade -= 0.4 * L["wrinkles"] * lines
    shade -= 0.15 * _ellipse(u, v, 0, 0.3 * b, 0.11 * a, 0.06 * b, ip)  # nose
    # Eyes, brows, mouth, beard; the symmetric ones from |u|.
    eye_y = b * (-0.08 + 0.12 * np.clip((18 - L["age"]) / 17, 0, 1))  # children's eyes sit lower
    es, ex = L["eye_size"], 0.4 * a
    _paint(image, _ellipse(au, v, ex, eye_y, 0.17 * a * es, 0.085 * b * es, ip), _rgb([[0.92, 0.9, 0.88]]))
    _paint(image, _ellipse(au, v, ex, eye_y, 0.075 * a * es, 0.075 * a * es, ip), _rgb([[0.12, 0.08, 0.06]]))
    brow = _ellipse(au, v, 0.42 * a, eye_y - 0.2 * b, 0.22 * a, 0.045 * b * L["brow"], ip)
    _paint(image, brow, hair * (0.72 - 0.36 * L["grey"]))
    def beard(sel):
      f, ts = face[sel], t[sel]
      chin = _ellipse(u[sel], v[sel], 0, 0.9 * b[sel], 0.55 * a[sel], 0.25 * b[sel], ip[sel])
      cover = f + (1 - f) * chin
      cover *= np.clip((ts - 0.2) * 5, 0, 1) * (0.8 + 0.8 * fine[3][sel]) * L["beard"][sel]
      return np.clip(cover, 0, 1, out=cover)
    _paint_some(image, beard, hair * 0.8, lat["beard"] > 0)
    lipstick = L["lipstick"][None]
    lip = skin * (_rgb([[0.85, 0.6, 0.6]]) * (1 - lipstick)) + _rgb([[0.7, 0.1, 0.15]]) * lipstick
    _paint(image, _ellipse(u, v, 0, 0.58 * b, 0.3 * a, 0.07 * b, ip), lip)
    # Lighting: a directional gradient over the picture, the face darker towards its rim; colour cast.
    shade *= 1 + L["light_strength"] * (np.cos(L["light_angle"]) * x + np.sin(L["light_angle"]) * y)
    shade *= 1 - 0.12 * face * q
    image *= shade
    image *= _rgb(np.stack([1 + lat["cast_r"], np.ones(n), 1 + lat["cast_b"]], -1) * lat["brightness"][:, None])
    # Occluder: a flat patch over part of the picture (a hand, a cup, a caption box).
    def occluder(sel):
      box = np.maximum(np.abs(x - L["occluder_x"][sel]) - L["occluder_w"][sel],
                       np.abs(y - L["occluder_y"][sel]) - L["occluder_h"][sel])
      return _soft(box, self.size / 2) * L["occluder"][sel]
    _paint_some(image, occluder, _rgb(lat["occluder_shade"][:, None] * [0.9, 0.8, 0.7] + 0.1), lat["occluder"] > 0)
    # Difficulty: blur, lower contrast and more noise for the chosen groups.
    d = self.difficulty[np.asarray(lat["race"])].astype(np.float32)
    hard = np.flatnonzero(d > 0)
    if hard.size:
      part, dh = image[:, hard], d[hard, None, None]
      blurred = part.copy()
      blurred[..., 1:-1, :] = (part[..., :-2, :] + part[..., 1:-1, :] + part[..., 2:, :]) / 3
      blurred[..., 1:-1] = (blurred[..., :-2] + blurred[..., 1:-1] + blurred[..., 2:]) / 3
      part += BLUR * dh * (blurred - part)
      mean = part.mean(axis=(0, 2, 3), keepdims=True)
      image[:, hard] = mean + (part - mean) * (1 - CONTRAST_LOSS * dh)
    noise = fine[:3]
    noise *= (L["noise"] + EXTRA_NOISE * d[:, None, None]) * (3.46 * 255)  # uniform noise of that std
    noise += 0.5  # rounds in the cast below
    image *= 255
    image += noise
    return np.clip(image, 0, 255, out=image).astype(np.uint8).transpose(1, 2, 3, 0)


# ------------------------------------------------------------------------------------------------- API

_PIXELS_PER_BATCH = 16 * 64 * 64


class SyntheticFaces:
  """The synthetic face set of a config: labels without drawing, images in batches, schema records."""

  def __init__(self, config: SyntheticFacesConfig = SyntheticFacesConfig()):
    self.config = config
    self._renderer = _Renderer(config.image_size, config.seed, _per_group(config.difficulty, "difficulty", 0, 1))
    self._columns = list(self.metadata("test", 0).columns)

  def metadata(self, split: str, num_examples: int, start: int = 0) -> pd.DataFrame:
    """Examples [start, start + num_examples) of a split: labels, caption and latent appearance.

    Columns: schema.METADATA_COLUMNS, ``caption``, ``split``, ``index``, ``true_gender`` (the gender the
    image shows; ``gender`` is the recorded, possibly noisy, label) and the appearance latents that
    ``images`` draws from. Cheap: no pixels are drawn.
    """
    sampling = self.config.sampling(split)
    if num_examples < 0 or start < 0:
      raise ValueError(f"num_examples and start must be non-negative, got {num_examples}, {start}")
    index = np.arange(start, start + num_examples, dtype=np.int64)
    stream = _Stream(self.config.seed, split, index)
    labels = _labels(stream, sampling)
    # Captions annotate like the labels do: they agree with the recorded, possibly noisy, gender.
    template = (stream.bits(5) % np.uint64(len(CAPTION_TEMPLATES))).astype(int)
    texts = [captions.caption(*row) for row in zip(labels["age"], labels["gender"], labels["race"], template)]
    frame = pd.DataFrame({
        "file_name": [f"synthetic/{self.config.seed}/{split}/{i}" for i in index],
        **{k: labels[k] for k in ("age", "gender", "race")},
        "caption": texts, "split": split, "index": index, "true_gender": labels["true_gender"],
    })
    latents = _appearance(stream, labels["true_gender"] == 1, labels["age"], labels["race"])
    return pd.concat([frame, pd.DataFrame(latents)], axis=1)

  def images(self, metadata: pd.DataFrame) -> np.ndarray:
    """uint8 [N, H, W, 3] images of the rows of a ``metadata`` frame (any subset, any order)."""
    missing = sorted(set(self._columns) - set(metadata.columns))
    if missing:
      raise ValueError(f"images needs the frame that metadata() returns; missing columns: {', '.join(missing)}")
    size = self.config.image_size
    out = np.empty((len(metadata), size, size, 3), np.uint8)
    columns = {c: metadata[c].to_numpy() for c in metadata.columns if c not in ("file_name", "caption", "split")}
    # Small batches: the drawing's temporaries then stay in cache and in the allocator's free lists.
    step = max(1, _PIXELS_PER_BATCH // (size * size))
    for lo in range(0, len(metadata), step):
      out[lo:lo + step] = self._renderer({k: v[lo:lo + step] for k, v in columns.items()})
    return out

  def records(self, split: str, num_examples: int, start: int = 0, batch_size: int = 256) -> Iterator[dict]:
    """Schema records (plus ``caption``) of examples [start, start + num_examples), drawn in batches."""
    for lo in range(start, start + num_examples, batch_size):
      meta = self.metadata(split, min(batch_size, start + num_examples - lo), start=lo)
      yield from _to_records(meta, self.images(meta))

  def source(self, split: str, num_examples: int, chunk_size: int = 256) -> "SyntheticSource":
    """A random-access source for the input pipeline (``len``, ``source[i]``)."""
    return SyntheticSource(self, split, num_examples, chunk_size)


def _to_records(meta: pd.DataFrame, images: np.ndarray) -> Iterator[dict]:
  for row, image in zip(meta[["file_name", "age", "gender", "race", "caption"]].itertuples(index=False), images):
    yield {"image": image, "age": np.int32(row.age), "gender": np.int32(row.gender),
           "race": np.int32(row.race), "file_name": row.file_name, "caption": row.caption}


class SyntheticSource:
  """Examples [0, num_examples) of a split as a sequence of schema records, drawn on first access.

  Drawing one image at a time would waste the batched renderer, so an access draws the whole chunk
  around it and keeps it: after one pass the source holds every image (N * H * W * 3 bytes). Safe to
  read from the pipeline's reader threads; different chunks are drawn concurrently.
  """

  def __init__(self, faces: SyntheticFaces, split: str, num_examples: int, chunk_size: int = 256):
    self.faces, self.chunk_size = faces, chunk_size
    self.metadata = faces.metadata(split, num_examples)
    self._labels = {k: self.metadata[k].to_numpy(np.int32) for k in ("age", "gender", "race")}
    self._names, self._captions = list(self.metadata.file_name), list(self.metadata.caption)
    size = faces.config.image_size
    self._images = np.empty((num_examples, size, size, 3), np.uint8)
    num_chunks = -(-num_examples // chunk_size)
    self._drawn = [False] * num_chunks
    self._locks = [threading.Lock() for _ in range(num_chunks)]

  def __len__(self) -> int:
    return len(self.metadata)

  def __getitem__(self, i: int) -> dict:
    i = range(len(self))[i]
    chunk = i // self.chunk_size
    if not self._drawn[chunk]:
      with self._locks[chunk]:
        if not self._drawn[chunk]:
          lo = chunk * self.chunk_size
          rows = self.metadata.iloc[lo:lo + self.chunk_size]
          self._images[lo:lo + len(rows)] = self.faces.images(rows)
          self._drawn[chunk] = True
    return {"image": self._images[i], **{k: v[i] for k, v in self._labels.items()},
            "file_name": self._names[i], "caption": self._captions[i]}
