r"""CLIP's contrastive objective in the per-device step: InfoNCE over the global batch of image-caption pairs.

Seed 000 §8.1 fine-tunes CLIP with Jina's ``CLIPLoss`` on UTKFace images captioned with their gender and
race; ``clip_contrastive`` is that loss (and CLIP's pre-training loss, which trains the from-scratch
CLIP of ``configs/clip_synthetic.py``). For the unit image and caption embeddings x_i, t_j of the N
valid pairs of the global batch and s = exp(logit_scale):

  L = sum_i w_i * (CE_i(image -> texts) + CE_i(text -> images)) / 2 / sum_i w_i,
  CE_i(image -> texts) = logsumexp_j (s x_i . t_j) - s x_i . t_i    (and its transpose for texts),

with w the batch's example weights (1.0 unless a treatment set them). Padding rows (``mask`` False) are
neither anchors nor negatives. logit_scale is clipped at ``max_logit_scale`` (ln 100, as CLIP clips it).

Devices. The negatives of a pair are every other pair of the *global* batch, so each device gathers the
other devices' embeddings (``constrained.gather_rows``: all rows in value, only its own with their
gradient) and computes the same N x N loss; its gradient is the loss's derivative through its own rows,
and the step's psum of the devices' gradients is the derivative through all rows, exactly as on one
device with the whole batch (``collectives``). logit_scale is a replicated parameter that every device
differentiates in full, so it enters through ``collectives.replicated_term`` (1/N of its gradient per
device). Every device builds the N x N similarity matrix, which is small beside the towers for the
batches CLIP trains with here (tens to a few thousand pairs).

Options. ``prompt_weight`` adds that multiple of the zero-shot heads' cross-entropy (the ``standard``
loss on the model's prompt heads: seed 000 §8.2's loss) to the contrastive loss. It is a *task*
(``objective.task``): a group-rate term of ``fairjax.train.constrained`` listed in ``objective.terms``
('constrained', 'gap_penalty', 'mindiff') is added on the zero-shot heads' outputs, which the forward
pass then computes: the fairness-constrained contrastive fine-tune. The model must have ``contrastive``
(``clip_zero_shot``), and the batch ``input_ids`` / ``attention_mask``: objectives with ``reads_text``
get them from the input pipeline's text stage.
"""

import math
import jax
from jax import lax
import jax.numpy as jnp

from fairjax.models import forward as forward_lib
from fairjax.models import protocols as model_protocols
from fairjax.train import collectives
from fairjax.train import constrained
from fairjax.train import objectives

Array = jax.Array
MAX_LOGIT_SCALE = math.log(100.0)
# Logit of a pair that is not a candidate: far below any real one (|logits| <= 100), yet finite, so
# that no row's logsumexp (and no gradient) is infinite even where every candidate is masked.
_EXCLUDED = -1e9


def _unit(x: Array) -> Array:
  x = x.astype(jnp.float32)
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def contrastive_terms(image_embeddings: Array, text_embeddings: Array, logit_scale: Array,
                      valid: Array) -> tuple[Array, Array]:
  """Per-pair ``(image -> text, text -> image)`` cross-entropies ``[N]`` of one batch of pairs.

  Rows where ``valid`` is False are neither candidates nor anchors (their terms are 0).
  """
  logits = jnp.exp(logit_scale) * (_unit(image_embeddings) @ _unit(text_embeddings).T)
  valid = valid.astype(bool)
  positive = jnp.diagonal(logits)
  image_to_text = jax.nn.logsumexp(jnp.where(valid[None, :], logits, _EXCLUDED), axis=1) - positive
  text_to_image = jax.nn.logsumexp(jnp.where(valid[:, None], logits, _EXCLUDED), axis=0) - positive
  zero = jnp.zeros_like(positive)
  return jnp.where(valid, image_to_text, zero), jnp.where(valid, text_to_image, zero)


def global_contrastive_loss(image_embeddings: Array, text_embeddings: Array, logit_scale: Array,
                            valid: Array, weights: Array, axis_name: str,
                            max_logit_scale: float = MAX_LOGIT_SCALE) -> tuple[Array, dict]:
  """The symmetric InfoNCE over the global batch from this device's rows (see the module docstring)."""
  images = constrained.gather_rows(image_embeddings.astype(jnp.float32), axis_name)
  texts = constrained.gather_rows(text_embeddings.astype(jnp.float32), axis_name)
  valid = lax.all_gather(valid.astype(bool), axis_name, tiled=True)
  weights = lax.all_gather(weights.astype(jnp.float32), axis_name, tiled=True) * valid
  scale = jnp.minimum(collectives.replicated_term(logit_scale.astype(jnp.float32), axis_name), max_logit_scale)
  image_to_text, text_to_image = contrastive_terms(images, texts, scale, valid)
  total = jnp.maximum(weights.sum(), 1e-12)
  loss = jnp.sum(weights * (image_to_text + text_to_image)) / (2 * total)
  metrics = {"contrastive/image_to_text": jnp.sum(weights * image_to_text) / total,
             "contrastive/text_to_image": jnp.sum(weights * text_to_image) / total,
             "contrastive/logit_scale": jnp.exp(scale)}
  # Every device holds the same values; stop_gradient + pmean marks them replicated for shard_map.
  return loss, {k: lax.pmean(lax.stop_gradient(v), axis_name) for k, v in metrics.items()}


@objectives.register_task("clip_contrastive")
class ClipContrastive(objectives.Task):
  """CLIP's contrastive loss on the batch's image-caption pairs, optionally plus the prompt heads' loss
  (see the module docstring); fairness terms are added as any objective's terms."""

  reads_text = True  # the input pipeline adds caption token ids to the batches

  def __init__(self, model, prompt_weight: float = 0.0, max_logit_scale: float = MAX_LOGIT_SCALE):
    super().__init__(model)
    if not isinstance(model, model_protocols.ReadsCaptions):
      raise ValueError(f"objective task 'clip_contrastive' needs a CLIP model (clip_zero_shot), got "
                       f"{type(model).__name__}")
    if prompt_weight < 0:
      raise ValueError(f"prompt_weight must be non-negative, got {prompt_weight}")
    self.prompt_weight, self.max_logit_scale = float(prompt_weight), float(max_logit_scale)
    self.heads = objectives.Standard(model)

  def forward(self, model_params, model_state, batch, rng, apply_fn, *, with_heads):
    del rng  # CLIP has no dropout
    missing = [k for k in ("input_ids", "attention_mask") if k not in batch]
    if missing:
      raise KeyError(f"clip_contrastive reads captions, but the batch lacks {missing}; the input "
                     "pipeline adds them for objectives with reads_text")
    out = apply_fn({"params": model_params, **model_state}, forward_lib.model_images(batch),
                   batch["input_ids"], batch["attention_mask"], method="contrastive",
                   with_heads=with_heads or self.prompt_weight > 0)
    return out, model_state

  def loss(self, model_params, outputs, batch, axis_name):
    size = batch["input_ids"].shape[0]
    valid = jnp.asarray(batch["mask"], bool) if "mask" in batch else jnp.ones((size,), bool)
    weights = jnp.asarray(batch["weight"], jnp.float32) if "weight" in batch else jnp.ones((size,), jnp.float32)
    loss, metrics = global_contrastive_loss(outputs["image_embedding"], outputs["text_embedding"],
                                            outputs["logit_scale"], valid, weights, axis_name,
                                            self.max_logit_scale)
    metrics["contrastive/loss"] = lax.pmean(lax.stop_gradient(loss), axis_name)
    if self.prompt_weight > 0:
      task, head_metrics = self.heads.loss(model_params, outputs, batch, axis_name)
      loss = loss + self.prompt_weight * task
      metrics.update(head_metrics)
    return loss, metrics
