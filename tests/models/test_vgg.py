"""VGG-16 / VGG-Face: parameter counts, seed 001's heads, the fine-tuning mask, the torchvision importer."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fairjax import models
from fairjax.models import convert, vgg
from fairjax.models.heads import HeadSpec
from fairjax.train import config as config_lib
from fairjax.train import loop, optimizers
from tests.models import util

torch = pytest.importorskip("torch")
from tests.models import torch_reference  # pylint: disable=wrong-import-position

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
# 13 convolutions: (in, out) per layer, 3x3 kernels with bias.
CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
TRUNK = sum(9 * i * o + o for i, o in CONVS) + (7 * 7 * 512 * 4096 + 4096) + (4096 * 4096 + 4096)


def _count(name):
  return models.param_count(models.abstract_variables(models.get_model(name))["params"])


def test_parameter_counts_by_hand_and_against_torchvision_layout():
  assert TRUNK + 4096 * 1000 + 1000 == _count("vgg16") == 138_357_544  # torchvision's published count
  with torch.device("meta"):
    reference = torch_reference.VGG(1000)
  assert sum(p.numel() for p in reference.parameters()) == _count("vgg16")
  assert _count("vgg_face") == TRUNK + 4096 * 2622 + 2622 == 145_002_878
  assert _count("vgg_face_age") == TRUNK + 4096 * 101 + 101  # seed 001: 101-way age softmax
  assert _count("vgg_face_gender") == TRUNK + 4096 * 2 + 2


def test_seed001_heads_and_outputs():
  age = models.get_model("vgg_face_age")
  assert age.heads == (HeadSpec("age", "binned", num_outputs=101, bin_low=-0.5),)
  np.testing.assert_allclose(age.heads[0].centers, np.arange(101))
  assert util.output_shapes(age) == {"embedding": (2, 4096), "age": (2, 101)}
  assert util.output_shapes(models.get_model("vgg_face_gender")) == {"embedding": (2, 4096), "gender": (2, 2)}


def test_trainable_mask_freezes_exactly_the_convolutions():
  model = models.get_model("vgg_face_age")
  params = models.abstract_variables(model)["params"]
  mask = vgg.trainable_mask(params, model)
  flags = {name: set(jax.tree.leaves(sub)) for name, sub in mask.items()}
  assert {n for n, f in flags.items() if f == {True}} == {"fc6", "fc7", "age"}
  convs = {f"conv{s}_{i}" for s, depth in enumerate(vgg.STAGE_DEPTHS, 1) for i in range(1, depth + 1)}
  assert {n for n, f in flags.items() if f == {False}} == convs
  heads_only = vgg.trainable_mask(params, model, num_trainable_fc=0)
  assert {n for n, sub in heads_only.items() if all(jax.tree.leaves(sub))} == {"age"}
  with pytest.raises(ValueError, match="not a VGG layer"):
    vgg.trainable_mask({**params, "extra": {}}, model)


def _tiny_vgg(**kwargs):
  return models.get_model("vgg_face_age", widths=(4, 4, 8, 8, 8), fc_units=16, **kwargs)


def test_fine_tuning_trains_fc_layers_and_heads_and_leaves_the_trunk_untouched():
  heads = (HeadSpec("age", "binned", num_outputs=101, bin_low=-0.5),
           HeadSpec("gender", "multiclass", num_outputs=2))
  model = _tiny_vgg(input_shape=(32, 32, 3), conv_implementation="lax", heads=heads)
  tx = vgg.fine_tune_optimizer(optax.adam(1e-2), models.abstract_variables(model)["params"], model)
  before, after, initial, trained = util.adam_losses(model, util.images((8, 32, 32, 3)),
                                                     util.random_labels(model, 8), tx=tx)
  assert after < before
  for name in initial:
    changed = any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(initial[name]),
                                                          jax.tree.leaves(trained[name])))
    assert changed == (not name.startswith("conv")), name


@pytest.mark.parametrize("num_trainable_fc", [0, 1, 2])
def test_trainable_fc_stops_gradients_below_the_trained_layers_and_keeps_theirs(num_trainable_fc):
  # The optimiser's mask discards the frozen layers' gradients; the stop must not change the others.
  model = _tiny_vgg(input_shape=(32, 32, 3), conv_implementation="lax")
  frozen = model.clone(trainable_fc=num_trainable_fc)
  params = models.init_variables(model, jax.random.PRNGKey(0))["params"]
  images, ages = util.images((4, 32, 32, 3)), jnp.array([3, 30, 60, 90])

  def loss(p, m):
    logits = m.apply({"params": p}, images)["age"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, ages).mean()

  full, stopped = jax.grad(loss)(params, model), jax.grad(loss)(params, frozen)
  mask = vgg.trainable_mask(params, model, num_trainable_fc)
  for (path, g_full), g_stop, trains in zip(jax.tree_util.tree_leaves_with_path(full),
                                            jax.tree.leaves(stopped), jax.tree.leaves(mask)):
    if trains:
      np.testing.assert_allclose(g_stop, g_full, rtol=1e-5, atol=1e-8, err_msg=str(path))
    else:
      assert not np.any(g_stop), path
      assert np.any(g_full), path  # the stop, not the data, zeroed it


def test_training_runs_build_a_fine_tuned_vgg_with_the_gradient_stop():
  config = config_lib.load_config_module(str(CONFIGS / "seed001_vgg_face_age.py")).get_config("smoke")
  assert config.optimizer.trainable == "fc:2" and loop.build_model(config).trainable_fc == 2
  config.optimizer.trainable = "all"
  assert loop.build_model(config).trainable_fc is None
  config.optimizer.trainable = "fc:1"
  resnet = models.get_model("resnet18")
  assert optimizers.frozen_model(config.optimizer, resnet) is resnet  # make_optimizer rejects it


def test_torchvision_state_dict_loads_and_gives_the_same_outputs():
  # 224x224 input: the last map is 7x7 (AdaptiveAvgPool2d((7, 7)) is the identity), so fc6 reads a
  # 7x7xC map whose flatten order differs between NCHW and NHWC.
  torch.manual_seed(0)
  reference = torch_reference.VGG(num_classes=5, width=4, fc_units=32).eval()
  with torch.no_grad():
    for p in reference.parameters():
      p.normal_(0, 0.1)  # also the biases, which torchvision starts at zero
  model = models.get_model("vgg16", widths=(4, 8, 16, 32, 32), fc_units=32,
                           heads=(HeadSpec("label", "multiclass", num_outputs=5),))
  variables = convert.load_torch_vgg(reference.state_dict(), model, models.abstract_variables(model),
                                     head="label")
  images = np.random.default_rng(1).normal(size=(2, 224, 224, 3)).astype(np.float32)
  with torch.no_grad():
    expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  ours = jax.jit(lambda v, x: model.apply(v, x))(variables, jnp.asarray(images))
  np.testing.assert_allclose(ours["label"], expected, rtol=1e-4, atol=1e-4)
  # The flatten permutation is not a no-op: the plain transpose of fc6 is a different matrix.
  naive = reference.state_dict()["classifier.0.weight"].numpy().T
  assert not np.allclose(variables["params"]["fc6"]["kernel"], naive)
  # Trunk-only transfer: the head keeps its initialisation, everything else must still be there.
  trunk = convert.load_torch_vgg(reference.state_dict(), model, variables | {"params": {
      **variables["params"], "label": jax.tree.map(jnp.zeros_like, variables["params"]["label"])}})
  assert not np.any(trunk["params"]["label"]["kernel"])
  np.testing.assert_array_equal(trunk["params"]["fc6"]["kernel"], variables["params"]["fc6"]["kernel"])
  with pytest.raises(ValueError, match="lacks"):
    convert.load_torch_vgg({k: v for k, v in reference.state_dict().items() if k != "features.0.bias"},
                           model, variables, head="label")


@pytest.mark.slow
def test_full_vgg16_forward_pass():
  model = models.get_model("vgg_face_age", conv_implementation="lax")
  variables = models.init_variables(model, util.key(0))
  out = jax.jit(lambda v, x: model.apply(v, x))(variables, util.images((1, 224, 224, 3)))
  probs = jax.nn.softmax(out["age"])
  assert out["embedding"].shape == (1, 4096) and np.isclose(float(probs.sum()), 1.0, atol=1e-5)
