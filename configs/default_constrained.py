r"""The embedded default experiment trained under equalized-odds constraints on race: the Lagrangian game.

  python -m fairjax.main --config=configs/default_constrained.py --workdir=out/default_constrained

Exactly ``configs/default.py`` (biased synthetic faces, seed 000's gender CNN, audited by race) with one
change, the objective: ``constrained`` (``fairjax.train.constrained``) keeps every pairwise gap between
the five race groups' gender TPRs and FPRs at most ``epsilon`` on each training batch, with multipliers
that rise while a gap is violated and fall once it is met. Its report compares one to one with the
default's: the question is how much of the default's equalized-odds gap the constraints remove, and at
what cost in accuracy.

Why these options. The under-represented group is about 3 of a batch of 64, so one batch's gaps are
noisy; the multipliers ascend on the signed violation (gap - epsilon), whose noise averages out over
steps when the ascent is slow (``multiplier_lr``). The cap bounds the weight a group's few examples
can take in a step. ``epsilon`` is below the 0.1 that seed 000 §8.2 demands, leaving room for the gap to
widen from training to test images.

Measured (2-core CPU, seed 0, 20,000 test images, against ``default.py``'s run): the default reaches
test gender accuracy 0.936-0.937 with an equalized-odds gap of 0.123-0.129 by race (the planted group's
FPR 0.154 against 0.03-0.04); this config 0.894 and 0.065 (selected step 1000), and with
``constraint_holdout=0.25`` 0.893 and 0.063. The gap nearly halves, but it stays above epsilon on the test
images and costs 4 points of accuracy: the constraints lower the planted group's FPR (0.154 -> 0.104)
mostly by shifting every group's scores towards "male" (TPRs 0.94-0.97 -> 0.82-0.89), not by separating
that group's faces better; its accuracy does not rise (worst group 0.855 -> 0.859). Holding out the rows
that set the multipliers (Cotter et al.'s two data sets) did not change that. the ``balanced_weights`` term beside it
(every race weighing the same in the task loss; then an option of this term) gave 0.891 and 0.088, and with the holdout 0.875 and 0.178.

What any mitigation is up against (``python -m experiments.eo_frontier --config=configs/default.py
--workdir=<the default's run>``): the best accuracy that group thresholds of the default model's own
scores reach with the gap at most 0.05 is 0.898, and 0.909 at 0.0645 (half the default's gap), solved on
the test labels themselves. So "under 0.05 for at most 3 points" (0.907) is out of reach of any
threshold rule on that model; a mitigation in training must improve the scarce group's ROC, and this
one does not (the frontier of its own scores at 0.05 is 0.894; with balanced weights 0.894). With the
scarce group at 20 % of training instead of 5 % (more of its faces, not weights) the frontier at 0.05
rises to 0.923; with group-balanced example weights on the standard loss to 0.920.

Arguments: 'smoke' shrinks everything to a run of a few seconds (for tests), as for the default.
"""

import os

from fairjax.train import config as config_lib

# configs/ is no package: configs load each other by path.
_DEFAULT = config_lib.load_config_module(os.path.join(os.path.dirname(__file__), "default.py"))


def get_config(arg: str = ""):
  return _DEFAULT.with_terms(arg, constrained=dict(
      head="gender",             # the default's task
      attributes=("race",),      # the grouping it audits
      constraint="equalized_odds",
      epsilon=0.05,
      multiplier_lr=0.01,
      multiplier_max=2.0,
      temperature=1.0,
      rate_decay=0.99,
      deterministic_rates=True,
      push="worse_group",
      constraint_holdout=0.0,
  ))
