"""Train state, per-device steps, objectives, checkpointing and the training loop."""

# The objective terms register beside the 'standard' task, so any import of fairjax.train can look them up.
from fairjax.train import adversarial  # pylint: disable=unused-import
from fairjax.train import constrained  # pylint: disable=unused-import
from fairjax.train import example_weights  # pylint: disable=unused-import
