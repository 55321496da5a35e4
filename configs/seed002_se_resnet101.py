r"""Seed 002's ADS: an SE-ResNet-101 over Open Images' "Man", "Woman", "Boy", "Girl", read as gender.

  python -m fairjax.main --config=configs/seed002_se_resnet101.py --workdir=out/seed002_se_resnet101
  python -m fairjax.main --config=configs/seed002_resnet18.py --workdir=out/seed002_resnet18  # baseline

What it reproduces (seed 002 §3.1, §4.1, §5; the audit, the data and what both models share are in
``seed002_resnet18.py``'s docstring)
  Model (§4.1): ``se_resnet101``, the Inclusive Images 4th-place solution's SE-ResNet-101 (bottleneck
  blocks [3, 4, 23, 3], squeeze-and-excitation gates, Caffe-style strides), trained from scratch with
  its "generalization of softmax with cross-entropy": for each positive label, a softmax over it and
  all the negatives (``multilabel_softmax``).
  Labels (§3.1): of the ADS's ~18,000 Open Images labels the seed reads four, "Man" and "Boy" as male,
  "Woman" and "Girl" as female. Here the head has exactly those four outputs, trained on each face's
  multi-hot ``gender_age_labels`` (``fairjax.data.labels``: Man / Woman for adults, Boy / Girl for
  the under-18s, as Open Images labels children; none where gender or age is unknown), and read as a
  gender classifier (``class_groups``): the predicted gender is the one whose labels hold the highest
  logit of the four, compared with the face's gender. So the report gives this head's accuracy, FPR
  and disparities by race, gender and race x gender exactly as for the baseline's softmax.
  Augmentation (§4.1): random horizontal flips and crops (see ``seed002_resnet18.py``: a crop is a
  random window of the face padded by 10 %).

What differs from the seed
  * The ADS trained on all of Open Images (9M images, 18,000 labels); here it trains from scratch on
    UTKFace's 17,068 training faces and four labels, so it learns gender and childhood only. The
    multi-label loss and the reading through four labels are the seed's; what the network learnt
    from Open Images' skew (§3) is not reproduced.
  * Its final ``AvgPool2d(5)`` suits 224x224 crops (a 7x7 last map); at 64x64 the last map is 2x2,
    so the embedding is the global average (``final_pool=None``).

Size: a CPU run of about 20 minutes (measured on the 2-core CPU machine, shared and loaded)
  The SE-ResNet-101's 33 blocks keep their layout, with ``WIDTH`` = 16 first-stage planes where the
  source has 64 (bottleneck widths 16-32-64-128, block outputs x4: a 512-d embedding), over 64x64
  faces, for ``EPOCHS`` = 4 epochs of 266 batches of 64 over the 17,068 training faces.
  Measured (batch 64, 64x64): a training step takes 0.85 s in the run's loop (steps 20-60 of a run on
  a 6,000-face subset; 0.79 s for the step alone), so an epoch is ~3.8 min plus ~25 s evaluating
  validation and test; building the model and compiling its step take ~1.5 min, the evaluators at
  the end ~1.5 min. Projected: 4 x 4.2 min + 3 min = ~20 min.
  Cut: the source's 64 planes and 224x224 crops (at 32 planes a step takes 2.2 s, ~10 min an epoch,
  two epochs in the time), and Open Images' 18,000 labels to the four read.
  The smoke run: 256 faces at 32x32, one block per stage of 4 planes, one epoch
  (``seed002_resnet18.smoke``): the full depth's compilation alone takes most of a minute.

Arguments
  ''        the full run, as above.
  'smoke'   a CPU run of seconds for tests; the numbers mean nothing.

Data: UTKFace, found as ``seed000_gender_cnn.py`` says (``$FAIRJAX_UTKFACE`` or ``../shared/data``).
"""

import os

import ml_collections

from fairjax.data import labels
from fairjax.models.heads import HeadSpec
from fairjax.train import config as config_lib

# What both of seed 002's models share (configs/ is no package: configs load each other by path).
_BASELINE = config_lib.load_config_module(os.path.join(os.path.dirname(__file__), "seed002_resnet18.py"))

# The four Open Images labels seed 002 reads, trained on multi-hot targets and read as gender.
PEOPLE_HEAD = HeadSpec("gender", "multilabel_softmax", num_outputs=len(labels.PEOPLE),
                       label_key=labels.GENDER_AGE_KEY, class_groups=labels.GENDER_GROUPS, class_key="gender")
WIDTH = 16
EPOCHS = 4


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  words, config = _BASELINE.seed002_config(__file__, arg)
  config.model.name = "se_resnet101"
  config.model.kwargs = ml_collections.ConfigDict(dict(heads=(PEOPLE_HEAD,), width=WIDTH, final_pool=None))
  config.train.num_epochs = EPOCHS
  if "smoke" in words:
    _BASELINE.smoke(config)
  return config
