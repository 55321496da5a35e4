"""Train state, per-device steps, objectives, checkpointing and the training loop."""

# The fairness objectives register beside 'standard', so any import of fairjax.train can look them up.
from fairjax.train import constrained  # pylint: disable=unused-import
from fairjax.train import clip_objectives  # pylint: disable=unused-import  (CLIP's contrastive loss)
