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

Data: UTKFace is read from ``$FAIRJAX_UTKFACE`` (the archive UTKFace.tar.gz, or the folder holding it
or the extracted UTKFace/) if set, else from ``../shared/data/UTKFace.tar.gz`` relative to the
repository root. ``data.manual_dir`` holds that folder, which is what the loader searches; UTKFace
must be downloaded by hand (see the README).
"""

import ml_collections

from fairjax.train import config as config_lib

_ARGS = ("smoke",)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  words = config_lib.config_words(arg, _ARGS, __file__)
  config = config_lib.base_config()
  config.seed = 0

  # §6.2.2 is empty: §6.1.2's selection (8,000 images, proportional per 10-year band x gender).
  config.data.name = "utkface"
  config.data.manual_dir = config_lib.utkface_dir(__file__)
  config.data.image_size = 128
  config.data.grayscale = False
  config.data.mean = (0.0,)
  config.data.std = (1.0,)
  config.data.augment.flip = True
  config.data.augment.shift = 0.1
  config.data.augment.rotation = 0.0
  config.data.augment.blur_sigma = 0.0
  config.data.augment.noise_std = 0.0
  config.data.splits = "holdout"
  config.data.subset_size = 8000
  config.data.stratify_by = ("age_band", "gender")
  config.data.holdout_fractions.train = 0.72
  config.data.holdout_fractions.validation = 0.08
  config.data.holdout_fractions.test = 0.2
  config.data.treatments = ()
  config.data.seed = 0

  # §6.2.1: three branches, MSE / BCE / CE summed, Adam 1e-4.
  config.model.name = "utk_demographic_cnn"
  config.objective.name = "standard"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-4
  config.optimizer.schedule = "constant"
  config.optimizer.trainable = "all"
  config.train.batch_size = 32
  config.train.num_epochs = 50
  config.train.log_every_steps = 50
  config.train.checkpoint_every_steps = 500

  config.eval.splits = ("validation", "test")
  config.eval.groupings = ("race", "gender", "race_x_gender")
  config.eval.primary_head = "gender"
  config.eval.primary_grouping = "gender"
  config.selection.metric = ""  # the last checkpoint: the seed names no selection

  if "smoke" in words:
    config.data.subset_size = 256
    config.data.image_size = 48
    config.train.batch_size = 32
    config.train.num_epochs = 1
    config.train.log_every_steps = 2
    config.train.checkpoint_every_steps = 100
    config.eval.batch_size = 64
  return config
