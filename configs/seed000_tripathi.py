r"""Seed 000 §6.3: Mayank Tripathi's 100x100 grayscale gender CNN on UTKFace, audited men vs women.

  python -m fairjax.main --config=configs/seed000_tripathi.py --workdir=out/seed000_tripathi

What it reproduces
  Model (§6.3, layer by layer as the seed lists it): ``tripathi_gender_cnn``: input 100x100x1
  (grayscale); four times Conv2D(f, 3x3, padding='same', L2 0.001) - Dropout(0.1) - ReLU - MaxPool(2x2)
  with f = 32, 64, 128, 256; Flatten - Dense(128, ReLU) - Dropout(0.2) - Dense(2, sigmoid), the two
  sigmoid units trained with binary cross-entropy on one-hot gender labels; the L2 penalties are added
  to the loss as Keras adds them.
  Audit (§6.3 "Resultados"): the gender prediction's confusion matrix, precision and the gap between
  the women's and the men's true positive rates: the gender head grouped by gender, men privileged.

The seed's numbers (test set)
  precision TP / (TP + FP) = 0.9; TPR gap between women and men 0.023, read by the seed as equal
  chances for both genders (its threshold is printed as 0.5 here and as 0.05 in §6.4; 0.05 is meant).
  The seed takes each gender's own rate of correct predictions as its TPR (grouping by the label, a
  group holds one class, so a TPR in the usual sense exists for one group only): compare with the
  report's ``gender/gender/accuracy_gap`` (the difference of the two genders' recalls).

Arguments
  ''        the run described above.
  'smoke'   a CPU run for tests: 256 images at 32x32 grayscale, one epoch (about 35 s on two busy
            cores: ~15 s decode all of UTKFace, most of the rest is compilation); the numbers mean
            nothing.

Assumptions where the seed is silent (it gives the network, not the training)
  * Data: all of UTKFace (23,705 labelled images), not §6.1's 8,000, whose limit the seed ties to §6.1's
    hardware; split 72 / 8 / 20 train / validation / test, stratified by 10-year age band x gender, as
    §6.1.2 splits (``--config.data.subset_size=8000`` gives §6.1's selection). Pixels in [0, 1]; the
    grayscale image is the luma of the RGB one; no augmentation (the listing shows none).
  * Optimiser and length: Adam at 1e-4 for 50 epochs, batch 32: §6.1.3's settings, the seed's only
    stated ones for a UTKFace CNN (and Keras's default batch). The report describes the last
    checkpoint.

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

  # §6.3: Input(shape=(100, 100, 1)).
  config.data.name = "utkface"
  config.data.manual_dir = config_lib.utkface_dir(__file__)
  config.data.image_size = 100
  config.data.grayscale = True
  config.data.mean = (0.0,)
  config.data.std = (1.0,)
  config.data.augment.flip = False
  config.data.augment.shift = 0.0
  config.data.augment.rotation = 0.0
  config.data.augment.blur_sigma = 0.0
  config.data.augment.noise_std = 0.0
  config.data.splits = "holdout"
  config.data.subset_size = 0
  config.data.stratify_by = ("age_band", "gender")
  config.data.holdout_fractions.train = 0.72
  config.data.holdout_fractions.validation = 0.08
  config.data.holdout_fractions.test = 0.2
  config.data.treatments = ()
  config.data.seed = 0

  config.model.name = "tripathi_gender_cnn"
  config.objective.name = "standard"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-4
  config.optimizer.schedule = "constant"
  config.optimizer.trainable = "all"
  config.train.batch_size = 32
  config.train.num_epochs = 50
  config.train.log_every_steps = 100
  config.train.checkpoint_every_steps = 1000

  config.eval.splits = ("validation", "test")
  config.eval.groupings = ("race", "gender", "race_x_gender")
  config.eval.primary_head = "gender"
  config.eval.primary_grouping = "gender"
  config.selection.metric = ""  # the last checkpoint: the seed names no selection

  if "smoke" in words:
    config.data.subset_size = 256
    config.data.image_size = 32
    config.train.batch_size = 32
    config.train.num_epochs = 1
    config.train.log_every_steps = 2
    config.train.checkpoint_every_steps = 100
    config.eval.batch_size = 64
  return config
