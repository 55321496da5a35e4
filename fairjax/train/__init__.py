"""Train state, per-device steps, objectives, checkpointing and the training loop."""

# The fairness objectives register beside 'standard', so any import of fairjax.train can look them up.
from fairjax.train import constrained  # pylint: disable=unused-import
