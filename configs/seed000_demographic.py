r"""Seed 000 §6.2: the three-branch demographic CNN (age, gender, race) on UTKFace.

  python -m fairjax.main --config=configs/seed000_demographic.py --workdir=out/seed000_demographic

What it reproduces
  Model (§6.2.1): ``utk_demographic_cnn``: a shared convolutional trunk (ReLU convolutions, each
  followed by 2x2 max pooling, filters growing from 64 to 512) feeding three branches of three ReLU
  Dense layers each: age (one linear unit, mean squared error), gender (one unit, binary
  cross-entropy) and race (one softmax unit per race, categorical cross-entropy). The three losses are
  summed with equal weights (Keras's default ``loss_weights``).
  Training (§6.2.1): Adam at a fixed 1e-4.
  Audit: the gender head grouped by gender (men privileged), as in §6.1, so the two reports compare
  one to one; the report also holds the race head's and the age head's figures by race, gender and
  race x gender.

The seed's numbers
  None: §6.2.2 (data), §6.2.3 (training), §6.2.4 (metrics) and §6.2.5 (fairness) are empty headings
  in the seed. This config is a run the seed describes but never reports.

Arguments
  ''        the run described above.
  'smoke'   a CPU run for tests: 256 images at 48x48 (the smallest size the four 'valid' 3x3
            convolutions and 2x2 pools leave a feature map for is 46), one epoch (about 50 s on two
            busy cores: ~15 s decode all of UTKFace, most of the rest is compilation); the numbers
            mean nothing.

Assumptions where the seed is silent (§6.2.2-6.2.3 are empty)
  * Architecture details (see ``utk_demographic_cnn``): one 3x3 convolution per filter count 64, 128,
    256, 512 with 'valid' padding, branch widths 128-64-32, five races. The seed's gender output is a
    softmax over one unit (constantly 1.0, no gradient); the model uses the sigmoid unit its binary
    cross-entropy implies.
  * Data as §6.1.2, the seed's only stated data selection for a UTKFace CNN: 8,000 images drawn in
    proportion to 10-year age band x gender, 72 / 8 / 20 train / validation / test (§6.1's 80:20 with
    a tenth of training for validation), pixels in [0, 1], training flips and 10 % shifts.
  * Input size 128x128 RGB, the size ``utk_demographic_cnn`` assumes (the seed gives none).
  * 50 epochs (§6.1.3's count), batch 32 (Keras's default); the report describes the last checkpoint.
  * Age is regressed in years with MSE, as the seed says; its loss is far larger than the two
    cross-entropies (hundreds against ~0.7), so with equal weights the age branch dominates the trunk's
    gradient, as it would have in the seed's Keras model.

Data: UTKFace, found as ``seed000_gender_cnn.py`` says (``$FAIRJAX_UTKFACE`` or ``../shared/data``), split as
its ``utkface_config`` describes.
"""

import os

from fairjax.train import config as config_lib

# The UTKFace source, splits and smoke variant of seed000_gender_cnn.py, loaded by path.
_SEED_000 = config_lib.load_config_module(os.path.join(os.path.dirname(__file__), "seed000_gender_cnn.py"))


def get_config(arg: str = ""):
  words, config = _SEED_000.start(__file__, arg)
  # §6.2.2 is empty: §6.1.2's selection (8,000 images, proportional per 10-year band x gender).
  config.data.image_size = 128
  config.data.subset_size = 8000
  config.data.augment.flip = True
  config.data.augment.shift = 0.1
  # §6.2.1: three branches, MSE / BCE / CE summed, Adam 1e-4.
  config.model.name = "utk_demographic_cnn"
  config.train.log_every_steps = 50
  config.train.checkpoint_every_steps = 500
  if "smoke" in words:
    _SEED_000.smoke(config, image_size=48)
  return config
