"""Train state, per-device steps, objectives, checkpointing and the training loop."""
