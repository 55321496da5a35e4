r"""The embedded default experiment with race unlearnt by gradient reversal (DANN).

  python -m fairjax.main --config=configs/default_grl.py --workdir=out/default_grl

Exactly ``configs/default.py`` (biased synthetic faces, seed 000's gender CNN, audited by race) with one
change, the objective: ``grl`` (``fairjax.train.adversarial``) adds an adversary head on the embedding
that predicts race through a gradient-reversal layer, whose weight ramps from 0 to 1 over the run on
DANN's schedule, so the gender model learns an embedding from which race is hard to read. Its report
compares one to one with the default's: ``leakage_race`` in each split's summary.json (what a fresh
probe still reads) against the default's, and the gender task's accuracy and race gaps beside it.

Measured (2-core CPU, seed 0, 20,000 test images): gender accuracy 0.924 (default 0.936), race
leakage 0.204 above chance (default 0.187), and the equalized-odds gap by race 0.318 (default 0.123).
So on this task reversal neither hides race nor helps the planted group, whose accuracy falls most
(worst group 0.795 against the default's 0.855).

Arguments: 'smoke' shrinks everything to a run of a few seconds (for tests), as for the default.
"""

import os

from fairjax.train import config as config_lib

# configs/ is no package: configs load each other by path.
_DEFAULT = config_lib.load_config_module(os.path.join(os.path.dirname(__file__), "default.py"))


def get_config(arg: str = ""):
  return _DEFAULT.with_terms(arg, grl=dict(
      attributes=("race",),  # the grouping the default audits
      hidden=(64,),       # the adversary: one ReLU layer, then a softmax over the five races
      weight=1.0,         # the reversal weight lambda reached at the end of the ramp
      schedule="dann",    # lambda = 2 / (1 + exp(-10 p)) - 1 over training progress p
      ramp_steps=0,       # 0: p runs over the whole run
      keep_norm=True,     # the reversed gradient never scales the embedding up (plain reversal diverges)
  ))
