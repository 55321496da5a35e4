r"""Seed 002's baseline: a ResNet-18 gender classifier, trained on UTKFace and audited by race and gender.

  python -m fairjax.main --config=configs/seed002_resnet18.py --workdir=out/seed002_resnet18
  python -m fairjax.main --config=configs/seed002_se_resnet101.py --workdir=out/seed002_se_resnet101

What it reproduces (seed 002, Mahadev & Chakravarti, "Understanding Gender and Racial Disparities in
Image Recognition Models")
  The seed audits an ADS, the 4th-place Inclusive Images solution (``seed002_se_resnet101.py``), against
  "a baseline ResNet-18 model pretrained on ImageNet" and tuned for gender on CelebA (§4.2, 97 % on
  CelebA's test set), both read as gender classifiers on MR2's 74 faces of African, Asian and European
  men and women (§3.1) and compared by the FPR difference and the disparate impact of a correct
  prediction, with women the protected gender (§5.1.1) and Europeans the privileged race (§5.1.2).
  Model: ``resnet18`` (torchvision's ResNet-18) with its registered head, a 2-way softmax over
  gender (``fc = Linear(512, 2)``, cross-entropy: the usual fine-tuning; the seed does not say).
  Audit: every split by race, gender and race x gender, gender the headline; men are the privileged
  gender (``groups.DEFAULT_PRIVILEGED``) and White, UTKFace's largest race, the privileged race, as
  the seed's Europeans.

The seed's numbers (MR2, 74 faces; read off its Figs 5-7, no tables)
  The baseline "performs poorly across all the groups": it called every European woman a man, and was
  worse on the privileged race than on the others. The ADS made no error on men and 23 on women, worst
  on African women (FPR difference against Europeans 0.238 for Africans, 0.064 for Asians).
  Where to read the comparison here: ``gender/accuracy`` and ``gender/race/*`` of both runs'
  ``test`` split; ``gender/gender/disparate_impact_correct`` is the seed's disparate impact with a
  correct prediction as the outcome, and the FPR of each group is in ``test/by_group.csv``.

What cannot be done as the seed did it, and what this config does instead
  * Data: neither MR2 nor CelebA can be fetched here. Both models train and are audited on UTKFace
    (split 72 / 8 / 20 as ``seed000_gender_cnn.py``'s ``utkface_config`` splits it), whose five races
    include the seed's three (White, Black, Asian) and two more.
  * No ImageNet weights: none can be fetched here, so the ResNet-18 trains from scratch on UTKFace
    rather than fine-tuning ImageNet features. It is a baseline trained on the same faces as the
    ADS, not the seed's transfer-learnt one, and needs no CelebA.
  * Normalisation (§4.1, "based on the std and mean of the training dataset"): per-channel
    ``TRAIN_MEAN`` / ``TRAIN_STD``, measured once on this split's 17,068 training faces at 64x64
    (pixels in [0, 1]); the smoke run's 32x32 faces use the same figures.
  * Augmentation: the ADS's random horizontal flips and crops (§4.1), for both models so that they
    differ only in network and head. A crop is ``augment.shift``: a random 64x64 window of the face
    padded by 10 % (``shift_by`` slices the edge-padded image), as torchvision's ``RandomCrop`` with
    edge padding.
  * Optimiser (the seed trains neither model): Adam from 1e-3 with cosine decay to 0, batch 64, no
    weight decay: a recipe that trains a batch-normalised ResNet from scratch in few epochs.
  * Reported checkpoint: the last (no selection; the seed names none).

Size: a CPU run of about 19 minutes (measured on the 2-core CPU machine, shared and loaded)
  The seed's network is ImageNet-sized (224x224 inputs, 64 first-stage planes). Here faces are 64x64,
  and the network keeps torchvision's layout (7x7/2 stem, 3x3/2 pool, [2, 2, 2, 2] basic blocks, global
  average pool) at ``WIDTH`` = 32 first-stage planes (stages 32-64-128-256; a 256-d embedding), for
  ``EPOCHS`` = 5 epochs of 266 batches of 64 over the 17,068 training faces.
  Measured (batch 64, 64x64): a training step takes 0.72 s in the run's loop (steps 20-60 of a run on
  a 6,000-face subset; 0.44 s for the step alone, the input pipeline sharing the two cores), so an
  epoch is ~3.2 min plus ~15 s evaluating validation and test; ~30 s go to decoding UTKFace and
  compiling, ~1 min to the evaluators at the end. Projected: 5 x 3.45 min + 1.5 min = ~19 min.
  Cut: torchvision's 64 planes (5 s a step measured: ~20 min an epoch) and the 224x224 input.
  The smoke run: 256 faces at 32x32, one block per stage of 4 planes, one epoch (see ``smoke``).

Arguments
  ''        the full run, as above.
  'smoke'   a CPU run of seconds for tests; the numbers mean nothing.

Data: UTKFace, found as ``seed000_gender_cnn.py`` says (``$FAIRJAX_UTKFACE`` or ``../shared/data``).
"""

import os

import ml_collections

from fairjax.train import config as config_lib

# The UTKFace experiment every seed 000 / 001 / 002 config shares, and its smoke variant (configs/ is no
# package: configs load each other by path).
_SEED_000 = config_lib.load_config_module(os.path.join(os.path.dirname(__file__), "seed000_gender_cnn.py"))

IMAGE_SIZE = 64
# Per-channel mean and standard deviation of the training split's pixels (in [0, 1]) at IMAGE_SIZE.
TRAIN_MEAN = (0.5968, 0.4565, 0.3905)
TRAIN_STD = (0.2564, 0.2284, 0.2239)
WIDTH = 32
EPOCHS = 5


def seed002_config(config_file: str, arg: str) -> tuple[set, ml_collections.ConfigDict]:
  """``(words, config)`` of a seed 002 config at ``config_file``: the UTKFace experiment of
  ``utkface_config`` (which already audits the gender head by race, gender and race x gender) with
  what both of seed 002's models share (the docstring above): 64x64 faces normalised by the training
  split's statistics, flips and crops, Adam 1e-3 with cosine decay in batches of 64. Each model's
  config adds its network, its head and its epochs."""
  words, config = _SEED_000.start(config_file, arg)
  config.data.image_size = IMAGE_SIZE
  config.data.mean = TRAIN_MEAN
  config.data.std = TRAIN_STD
  config.data.augment.flip = True
  config.data.augment.shift = 0.1
  config.optimizer.update(name="adam", learning_rate=1e-3, schedule="cosine")
  config.train.update(batch_size=64, log_every_steps=20, checkpoint_every_steps=200)
  return words, config


def smoke(config) -> None:
  """The 'smoke' variant of both seed 002 configs: ``seed000_gender_cnn``'s (256 faces at 32x32, one
  epoch in batches of 32) through a ResNet of one block per stage with 4 first-stage planes, whose
  compilation takes seconds (the full depth's, most of a minute for SE-ResNet-101)."""
  _SEED_000.smoke(config)
  config.model.kwargs.update(width=4, stage_sizes=(1, 1, 1, 1))


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  words, config = seed002_config(__file__, arg)
  config.model.name = "resnet18"  # its registered head: 2-way softmax gender
  config.model.kwargs = ml_collections.ConfigDict(dict(width=WIDTH))
  config.train.num_epochs = EPOCHS
  if "smoke" in words:
    smoke(config)
  return config
