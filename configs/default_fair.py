r"""The embedded default experiment made fair by race: group-balanced weights, then group thresholds.

  python -m fairjax.main --config=configs/default_fair.py --workdir=out/default_fair

Exactly ``configs/default.py`` (biased synthetic faces, seed 000's gender CNN, audited by race) with the
best combination the mitigation benchmark found (``python -m experiments.mitigation_benchmark
--task=default``; ``experiments/results/mitigation_benchmark_default.md``):

  1. ``balanced_weights`` (``objective.terms``): every race weighs the same in the training loss, so the
     race that is 5 % of training is learnt as well as its faces allow. This does not close the gap by
     itself; it lifts that group's ROC, which is what any threshold rule is limited by.
  2. ``config.postprocess``: Hardt et al.'s randomised group thresholds of the gender scores by race,
     fitted on the validation split (5,000 faces balanced by race) with every pair of races' TPRs and
     FPRs within ``epsilon``, applied to test. The report shows test raw and post-processed side by
     side; the post-processed figures are ``test/postprocessed/gender/...`` in final_metrics.json.

Measured (2-core CPU under load, seed 0; ``python -m experiments.mitigation_benchmark --task=default``
and the validation-fitted frontier of its balanced-weights run): the default's test accuracy is 0.937
with an equalized-odds gap by race of 0.109; balanced weights alone 0.935 and 0.092; with thresholds at
epsilon 0.035, 0.905 and 0.047 (0.030: 0.902 / 0.043; 0.040: 0.909 / 0.051). So this config keeps the gap
under 0.05 at 3.2 points of accuracy, a shade over the 3 points the issue allows; 0.039 meets both on
this seed (0.908 / 0.0497), but that epsilon was read off the test split and is no rule. The standard
model with the same thresholds reaches 0.886 at a gap of 0.050: balanced weights buy 2 points.
Balancing race x gender cells instead of races does not help: 0.903 at 0.0499 (raw 0.930 / 0.091;
``--config.objective.terms.balanced_weights.grouping=race_x_gender``, seed 0, 2026-12-07).
Across seeds 0-2 (``experiments/results/default_fair_seeds.md``): the default 0.937 at 0.140, this config
0.901 [0.893, 0.907] at 0.042 [0.030, 0.059]; the validation-fitted rule's mean passes through about 0.907
at a gap of 0.050 (epsilon 0.0425: 0.906 / 0.049; 0.045: 0.908 / 0.051), the very corner of the bar.

Why this and not a constraint in training: on this task the Lagrangian constraints end on the standard
model's own threshold frontier (they move every group's scores rather than separate the scarce group's
faces better), gradient reversal and JLU leave race readable and the gap as it was, while thresholds
reach any gap at a price set by the worst group's ROC, and balanced weights lower that price. Thresholds
fitted on validation cost a little against the oracle (thresholds solved on the test labels), and their
test gap exceeds the fitted epsilon by about 0.007-0.01, so ``epsilon`` is set below the 0.05 the
acceptance asks for. That excess is the test split's own sampling noise more than validation's: the
gap measured on 20,000 test faces reads about 0.015 for a model with equal rates (``configs/default.py``),
while the oracle, solved on those very faces, pays none of it. Scoring the same three checkpoints on a
validation split of 20,000 faces instead of 5,000 and fitting there left the trade-off where it was
(epsilon 0.035: 0.904 at 0.044; 0.04: 0.907 at 0.0498; seeds 0-2, 2026-12-07).

Arguments: 'smoke' shrinks everything to a run of a few seconds (for tests), as for the default.
"""

import os

from fairjax.train import config as config_lib

# configs/ is no package: configs load each other by path.
_DEFAULT = config_lib.load_config_module(os.path.join(os.path.dirname(__file__), "default.py"))
EPSILON = 0.035


def get_config(arg: str = ""):
  config = _DEFAULT.with_terms(arg, balanced_weights=dict(grouping="race"))
  config.postprocess.update(constraint="equalized_odds", epsilon=EPSILON, fit_split="validation")
  if arg == "smoke":
    config.postprocess.min_group_size = 5  # the smoke run's validation split holds about 13 faces a race
  return config
