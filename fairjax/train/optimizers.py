"""optax optimisers and learning-rate schedules from the ``optimizer`` section of a config.

The seeds train with Adam at a fixed rate (seed 000 §6: 1e-4) or SGD with momentum (seed 001), and
seed 001 retrains only the last fully connected layers of VGG-Face; a config says which with
``trainable`` ('all', or 'fc:N' for a VGG's heads plus its last N FC layers).
"""

import jax
import ml_collections
import optax

from fairjax.models import vgg

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "warmup_cosine")


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name="adam",            # one of OPTIMIZERS
      learning_rate=1e-4,     # peak rate
      schedule="constant",    # one of SCHEDULES
      warmup_steps=0,         # warmup_cosine: linear warm-up from 0
      momentum=0.9,           # sgd
      nesterov=False,         # sgd
      b1=0.9,                 # adam / adamw
      b2=0.999,
      weight_decay=0.0,       # adamw's decoupled decay
      grad_clip_norm=0.0,     # clip the global gradient norm first; 0 = off
      trainable="all",        # 'all', or 'fc:N' (VGG: heads + last N FC layers, seed 001)
  ))


def learning_rate_schedule(config, total_steps: int) -> optax.Schedule:
  if config.schedule == "constant":
    return optax.constant_schedule(config.learning_rate)
  if config.schedule == "cosine":
    return optax.cosine_decay_schedule(config.learning_rate, max(total_steps, 1))
  if config.schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, config.warmup_steps,
                                              max(total_steps, config.warmup_steps + 1))
  raise ValueError(f"unknown schedule {config.schedule!r}; known: {', '.join(SCHEDULES)}")


def frozen_model(config, model):
  """``model`` with gradients stopped below the layers ``config.trainable`` trains (a VGG's 'fc:N').

  The optimiser's mask alone gives the same updates (zeros for the frozen layers), but the backward
  pass would still run through the frozen convolutions: ``VGG16.trainable_fc`` cuts it there.
  """
  if config.trainable == "all" or not isinstance(model, vgg.VGG16) or not config.trainable.startswith("fc:"):
    return model  # make_optimizer names what is wrong with any other value
  return model.clone(trainable_fc=int(config.trainable[3:]))


def make_optimizer(config, total_steps: int, params: dict, model) -> optax.GradientTransformation:
  """The optimiser over the train state's ``params`` ({'model': ..., plus any objective's own})."""
  lr = learning_rate_schedule(config, total_steps)
  if config.name == "adam":
    tx = optax.adam(lr, b1=config.b1, b2=config.b2)
  elif config.name == "adamw":
    tx = optax.adamw(lr, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay)
  elif config.name == "sgd":
    tx = optax.sgd(lr, momentum=config.momentum or None, nesterov=config.nesterov)
  else:
    raise ValueError(f"unknown optimizer {config.name!r}; known: {', '.join(OPTIMIZERS)}")
  if config.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  if config.trainable == "all":
    return tx
  if not config.trainable.startswith("fc:") or not isinstance(model, vgg.VGG16):
    raise ValueError(f"optimizer.trainable {config.trainable!r}: use 'all', or 'fc:N' with a VGG model")
  # An objective's own parameters (an adversary head) always train.
  labels = {name: jax.tree.map(lambda _: "trainable", tree) for name, tree in params.items()}
  mask = vgg.trainable_mask(params["model"], model, int(config.trainable[3:]))
  labels["model"] = jax.tree.map(lambda m: "trainable" if m else "frozen", mask)
  return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)
