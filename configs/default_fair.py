r"""The embedded default experiment made fair by race: every race up-sampled, then group thresholds.

  python -m fairjax.main --config=configs/default_fair.py --workdir=out/default_fair

Exactly ``configs/default.py`` (biased synthetic faces, seed 000's gender CNN, audited by race) with the
best combination found (``experiments/README.md``, ``experiments/results/default_fair_seeds.md``):

  1. ``oversample_groups`` (``data.treatments``): every race of the training split up-sampled to the
     largest race's size by augmented copies of its own faces (``max_factor`` 8: the scarce race, 5 % of
     training, needs 7.1 times its size), so every race is learnt from as many augmented views as the
     largest. This does not close the gap by itself; it lifts the scarce race's ROC, which is what any
     threshold rule is limited by. An epoch then holds 13,696 faces instead of 8,000: the run has the
     default's eight epochs, 1,712 steps instead of 1,000.
  2. ``config.postprocess``: Hardt et al.'s randomised group thresholds of the gender scores by race,
     fitted on the validation split (5,000 faces balanced by race) with every pair of races' TPRs and
     FPRs within ``epsilon`` 0.025, applied to test. The report shows test raw and post-processed side
     by side; the post-processed figures are ``test/postprocessed/gender/...`` in final_metrics.json.

Measured (2-core CPU, 2026-12-08; each seed's run ``python -m fairjax.main`` with ``--config.seed=N``,
then ``python -m experiments.eo_frontier ... --fit_split=validation`` for the rule at each epsilon):
the rule was chosen on seeds 0-2 (the largest epsilon of 0.02-0.035 at which each of them keeps the test
equalized-odds gap by race at most 0.05 and accuracy at most 3 points below its own ``default.py`` run:
0.025) and then confirmed on seeds 3 and 4, which had not been looked at. Test accuracy / EO gap at
epsilon 0.025: seeds 0-2 0.913 / 0.048, 0.913 / 0.032, 0.908 / 0.028; seeds 3-4 0.918 / 0.037, 0.913 /
0.034 (the default, mean of seeds 0-2: 0.937 at a gap of 0.140). Up-sampling alone: 0.947 at 0.105
(seed 0).

Why this and not a constraint in training: on this task the Lagrangian constraints end on the standard
model's own threshold frontier (they move every group's scores rather than separate the scarce group's
faces better), gradient reversal and JLU leave race readable and the gap as it was, while thresholds
reach any gap at a price set by the worst group's ROC, and up-sampling lowers that price (capped at four
times the scarce race's size it lowered it by half as much: 0.909 at 0.048 over seeds 0-2 at epsilon
0.035; group-balanced weights, the same weight per race in one view, 0.901 at 0.042; group DRO 0.898 at
0.041). Thresholds fitted on validation pay what the oracle (thresholds solved on the test labels) does
not: their test gap exceeds the fitted epsilon by 0.01-0.02 (seed 0: 0.048 at epsilon 0.025), the test
split's own sampling noise (a model with equal rates reads about 0.015 on it, ``configs/default.py``),
which is why epsilon sits well below the 0.05 the gap must keep. A validation split of 20,000 faces
instead of 5,000 did not change that.

Arguments: 'smoke' shrinks everything to a run of a few seconds (for tests), as for the default.
"""

import os

from fairjax.train import config as config_lib

# configs/ is no package: configs load each other by path.
_DEFAULT = config_lib.load_config_module(os.path.join(os.path.dirname(__file__), "default.py"))
EPSILON = 0.025
# Up to the largest race's size: the scarce race needs 7.1 times its own.
MAX_FACTOR = 8.0


def get_config(arg: str = ""):
  config = _DEFAULT.get_config(arg)
  config.data.treatments = ("oversample_groups",)
  config.data.treatment_options.oversample_groups.update(attributes=("race",), max_factor=MAX_FACTOR, copies="augment")
  config.postprocess.update(constraint="equalized_odds", epsilon=EPSILON, fit_split="validation")
  if arg == "smoke":
    config.postprocess.min_group_size = 5  # the smoke run's validation split holds about 13 faces a race
  return config
