"""What is explained: each head kind's score by hand, and CLIP zero-shot prompts explained through its ViT."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fairjax.explain import attributions
from fairjax.explain import grad_cam as grad_cam_lib
from fairjax.explain import targets
from fairjax.models import registry
from fairjax.models.heads import HeadSpec

CLIP_TOKENIZER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "clip", "testdata", "eos_gelu")
TINY_CLIP = {"vision": {"patch_size": 4, "width": 16, "layers": 2, "heads": 2, "mlp_dim": 32},
             "text": {"context_length": 16, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
             "projection_dim": 8}

HEADS = (HeadSpec("one", "binary"), HeadSpec("three", "multiclass", num_outputs=3),
         HeadSpec("age", "binned", num_outputs=4, bin_low=0.0, bin_width=10.0),
         HeadSpec("value", "regression"),
         HeadSpec("people", "multilabel_softmax", num_outputs=4, label_key="people", class_groups=((0, 2), (1, 3)),
                  class_key="gender"))


class _Fixed(nn.Module):
  """Returns fixed raw outputs per head, whatever the images: the scores are then checkable by hand."""
  heads: tuple = HEADS

  @nn.compact
  def __call__(self, x, train=False):
    n = x.shape[0]
    raw = {"one": jnp.full((n,), 0.5), "three": jnp.tile(jnp.array([1.0, 2.0, 0.0]), (n, 1)),
           "age": jnp.tile(jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4])), (n, 1)), "value": jnp.full((n,), 7.0),
           "people": jnp.tile(jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4])), (n, 1))}
    return {"embedding": x.reshape(n, -1)[:, :2], **raw}


@pytest.mark.parametrize("head, class_index, output, expected", [
    ("one", None, "probability", 1 / (1 + np.exp(-0.5))),
    ("one", 0, "probability", 1 - 1 / (1 + np.exp(-0.5))),
    ("one", 1, "logit", 0.5),
    ("one", 0, "logit", -0.5),
    ("three", 1, "probability", np.exp(2) / (np.exp(0) + np.exp(1) + np.exp(2))),
    ("three", 1, "logit", 2 - np.log(np.exp(0) + np.exp(1))),  # log-odds of class 1 against the rest
    ("age", None, "probability", 0.1 * 5 + 0.2 * 15 + 0.3 * 25 + 0.4 * 35),  # expected age in years
    ("age", 2, "probability", 0.3),
    ("value", None, "probability", 7.0),
    ("people", 1, "probability", 0.2 + 0.4),  # female: Woman + Girl
    ("people", 0, "logit", np.log(0.4 / 0.6)),
])
def test_each_head_kinds_score_by_hand(head, class_index, output, expected):
  model = _Fixed()
  score = targets.Target(model, head, class_index, output).bind({})
  np.testing.assert_allclose(score(jnp.zeros((2, 4, 4, 3))), [expected] * 2, rtol=1e-5)


def test_a_target_normalises_as_the_run_does():
  model = _Fixed()
  target = targets.Target(model, "value", mean=(0.5,), std=(0.25,), grayscale=True)
  x = np.random.default_rng(0).uniform(size=(2, 4, 4, 3)).astype(np.float32)
  grey = (x * np.array([0.299, 0.587, 0.114], np.float32)).sum(-1, keepdims=True)
  np.testing.assert_allclose(target.model_input(x), (grey - 0.5) / 0.25, rtol=1e-4, atol=1e-5)


def test_clip_zero_shot_prompts_explained_through_the_vit():
  """'a photo of a man' against 'a photo of a woman': the log-odds of the man prompt, whose IG adds up
  and whose Grad-CAM reads the last vision block's patch tokens on their 4 x 4 grid."""
  model = registry.get_model("clip_zero_shot", input_shape=(16, 16, 3), tokenizer=CLIP_TOKENIZER,
                             architecture=TINY_CLIP, heads=("gender",))
  variables = registry.init_variables(model, jax.random.key(0))
  score = targets.Target(model, "gender", 0, output="logit").bind(variables)
  images = np.random.default_rng(1).uniform(size=(2, 16, 16, 3)).astype(np.float32)
  logits = np.asarray(model.apply(variables, images)["gender"])
  np.testing.assert_allclose(score(images), logits[:, 0] - logits[:, 1], rtol=1e-4, atol=1e-5)
  ig = attributions.integrated_gradients(score, images, steps=32)
  assert np.max(ig.completeness_error) < 0.01
  # the last vision block's first LayerNorm: the patch tokens the class token attends to (the blocks'
  # outputs after it are dead ends for patch tokens; the text tower's follow the prompts, not the images)
  assert grad_cam_lib.default_layer(score, images) == "clip/vision/encoder/layer_1/ln1"
  result = grad_cam_lib.grad_cam(score, images)
  assert result.layer_maps.shape == (2, 4, 4) and result.maps.shape == (2, 16, 16)
  assert np.all(result.maps >= 0) and np.any(result.maps > 0)
