r"""The embedded default experiment made fair by race: every race up-sampled, then group thresholds.

  python -m fairjax.main --config=configs/default_fair.py --workdir=out/default_fair

Exactly ``configs/default.py`` (biased synthetic faces, seed 000's gender CNN, audited by race) with the
best combination the mitigation benchmark found (``python -m experiments.mitigation_benchmark
--task=default``; ``experiments/README.md``):

  1. ``oversample_groups`` (``data.treatments``): every race of the training split up-sampled to the
     largest race's size by augmented copies of its own faces (at most four times its size, which the
     scarce race, 5 % of training, reaches), so the scarce race is learnt from as many augmented views as
     the others. This does not close the gap by itself; it lifts that race's ROC, which is what any
     threshold rule is limited by. An epoch then holds 12,452 faces instead of 8,000: the run has the
     default's eight epochs, 1,556 steps instead of 1,000.
  2. ``config.postprocess``: Hardt et al.'s randomised group thresholds of the gender scores by race,
     fitted on the validation split (5,000 faces balanced by race) with every pair of races' TPRs and
     FPRs within ``epsilon``, applied to test. The report shows test raw and post-processed side by
     side; the post-processed figures are ``test/postprocessed/gender/...`` in final_metrics.json.

Measured (2-core CPU, seeds 0-2, 2026-12-07; ``python -m experiments.mitigation_benchmark --task=default
--seeds=3 --methods=standard,balanced_weights,oversampled,balanced+postprocess,oversampled+postprocess
--epsilon=0.035 --output_dir=out/mb_a``; ``experiments/results/default_fair_seeds.md``): the default's
test accuracy is 0.937 [0.933, 0.941] at an equalized-odds gap by race of 0.140; up-sampling alone 0.947
and 0.112; with thresholds at epsilon 0.035, 0.909 [0.904, 0.914] at 0.048 [0.040, 0.065]. So on the
mean of three seeds this config keeps the gap under 0.05 at 2.8 points of accuracy, inside the 3 points
the issue allows, but by margins (0.2 points, 0.002 of gap) smaller than the seeds' spread: seed by
seed, 0.914 / 0.051, 0.906 / 0.053 and 0.907 / 0.040. Group-balanced weights in place of up-sampling
(the previous version of this config) give 0.901 at 0.042: the same weight in the loss, but one view of
each scarce face an epoch instead of four. Group DRO gives 0.898 at 0.041, thresholds at epsilon 0.03
after up-sampling 0.905 at 0.044.

Why this and not a constraint in training: on this task the Lagrangian constraints end on the standard
model's own threshold frontier (they move every group's scores rather than separate the scarce group's
faces better), gradient reversal and JLU leave race readable and the gap as it was, while thresholds
reach any gap at a price set by the worst group's ROC, and up-sampling lowers that price. Thresholds
fitted on validation cost a little against the oracle (thresholds solved on the test labels), and their
test gap exceeds the fitted epsilon by about 0.007-0.016, so ``epsilon`` is set below the 0.05 the
acceptance asks for (0.035, chosen before these runs). That excess is the test split's own sampling noise
more than validation's: the gap measured on 20,000 test faces reads about 0.015 for a model with equal
rates (``configs/default.py``), while the oracle, solved on those very faces, pays none of it. Scoring
balanced-weights checkpoints on a validation split of 20,000 faces instead of 5,000 and fitting there
left the trade-off where it was.

Arguments: 'smoke' shrinks everything to a run of a few seconds (for tests), as for the default.
"""

import os

from fairjax.train import config as config_lib

# configs/ is no package: configs load each other by path.
_DEFAULT = config_lib.load_config_module(os.path.join(os.path.dirname(__file__), "default.py"))
EPSILON = 0.035


def get_config(arg: str = ""):
  config = _DEFAULT.get_config(arg)
  config.data.treatments = ("oversample_groups",)
  config.data.treatment_options.oversample_groups.update(attributes=("race",), max_factor=4.0, copies="augment")
  config.postprocess.update(constraint="equalized_odds", epsilon=EPSILON, fit_split="validation")
  if arg == "smoke":
    config.postprocess.min_group_size = 5  # the smoke run's validation split holds about 13 faces a race
  return config
