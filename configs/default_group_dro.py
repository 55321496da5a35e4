r"""The embedded default experiment trained by group DRO over the races.

  python -m fairjax.main --config=configs/default_group_dro.py --workdir=out/default_group_dro

Exactly ``configs/default.py`` (biased synthetic faces, seed 000's gender CNN, audited by race) with one
change, the objective: ``group_dro`` (``fairjax.train.example_weights``, Sagawa et al. 2020) weighs each
race's rows by the balanced weights times five times a distribution q over the races, which follows
their training losses by exponentiated gradient (step size 0.01, Sagawa et al.'s), so that training
lowers the worst race's loss rather than the average. The final q is in the run's history
(``train/dro/q_max``); on this task it puts about half the weight on the scarce race.

Measured (2-core CPU, seeds 0-2, ``python -m experiments.mitigation_benchmark --task=default --seeds=3
--methods=standard,balanced_weights,group_dro,balanced+postprocess,group_dro+postprocess --epsilon=0.035
--output_dir=out/mb_a``; ``experiments/results/mitigation_benchmark_default_group_dro.md``): test
accuracy 0.925 [0.921, 0.929] at an equalized-odds gap by race of 0.099 [0.084, 0.118], against balanced
weights' 0.935 at 0.101 and the default's 0.937 at 0.140. With validation-fitted thresholds at epsilon
0.035 it gives 0.898 at 0.041, where balanced weights give 0.901 at 0.042: the worst race's ROC is no
better for the extra weight, so ``configs/default_fair.py`` keeps balanced weights.

Arguments: 'smoke' shrinks everything to a run of a few seconds (for tests), as for the default.
"""

import os

from fairjax.train import config as config_lib

# configs/ is no package: configs load each other by path.
_DEFAULT = config_lib.load_config_module(os.path.join(os.path.dirname(__file__), "default.py"))


def get_config(arg: str = ""):
  return _DEFAULT.with_terms(arg, group_dro=dict(
      grouping="race",   # the grouping the default audits
      head="gender",     # the loss whose group means q follows
      step_size=0.01,    # Sagawa et al.'s eta_q
  ))
