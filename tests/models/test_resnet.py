"""ResNet-18 and SE-ResNet-101 (seed 002): counts, torch importer, BatchNorm modes, cross-device BN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fairjax import models
from fairjax.models import convert
from fairjax.models.heads import HeadSpec
from tests.models import util

torch = pytest.importorskip("torch")
from tests.models import torch_reference  # pylint: disable=wrong-import-position

IMAGENET = (HeadSpec("label", "multiclass", num_outputs=1000),)


def _conv(k, cin, cout):
  return k * k * cin * cout


def _bn(c):
  return 2 * c  # gamma, beta (running mean / variance are batch_stats, not params)


def resnet18_count_by_hand(classes):
  count = _conv(7, 3, 64) + _bn(64)
  cin = 64
  for stage, planes in enumerate((64, 128, 256, 512)):
    for block in range(2):
      count += _conv(3, cin, planes) + _bn(planes) + _conv(3, planes, planes) + _bn(planes)
      if stage > 0 and block == 0:
        count += _conv(1, cin, planes) + _bn(planes)  # projection shortcut
      cin = planes
  return count + 512 * classes + classes


def se_resnet101_count_by_hand(classes):
  count = _conv(7, 3, 64) + _bn(64)
  cin = 64
  for planes, blocks in zip((64, 128, 256, 512), (3, 4, 23, 3)):
    out = 4 * planes
    for block in range(blocks):
      count += _conv(1, cin, planes) + _conv(3, planes, planes) + _conv(1, planes, out)
      count += _bn(planes) * 2 + _bn(out)
      count += (out * (out // 16) + out // 16) + (out // 16 * out + out)  # SE: two Linear layers
      if block == 0:
        count += _conv(1, cin, out) + _bn(out)
      cin = out
  return count + 2048 * classes + classes


def test_parameter_counts_by_hand_and_against_the_torch_layouts():
  with torch.device("meta"):
    r18 = torch_reference.ResNet(torch_reference.BasicBlock, [2, 2, 2, 2], 1000)
    se101 = torch_reference.ResNet(torch_reference.SEBottleneck, [3, 4, 23, 3], 1000, se=True)
  torch_count = lambda m: sum(p.numel() for p in m.parameters())
  ours = models.abstract_variables(models.get_model("resnet18", heads=IMAGENET))
  assert models.param_count(ours["params"]) == resnet18_count_by_hand(1000) == torch_count(r18) == 11_689_512
  assert models.param_count(ours["batch_stats"]) == sum(b.numel() for n, b in r18.named_buffers()
                                                        if "running" in n)
  ours = models.abstract_variables(models.get_model("se_resnet101", heads=IMAGENET))
  assert models.param_count(ours["params"]) == se_resnet101_count_by_hand(1000) == torch_count(se101)
  assert se_resnet101_count_by_hand(1000) == 49_326_872  # SE-ResNet-101 as published (49.3M)


def test_default_heads_and_output_shapes():
  r18 = models.get_model("resnet18")
  assert r18.heads == (HeadSpec("gender", "multiclass", num_outputs=2),)
  assert util.output_shapes(r18) == {"embedding": (2, 512), "gender": (2, 2)}
  assert util.output_shapes(r18, input_shape=(32, 32, 3)) == {"embedding": (2, 512), "gender": (2, 2)}
  # se_resnet101's default shapes: test_registry. Its AvgPool2d(5) needs a 5x5 to 9x9 last map.
  small = models.get_model("se_resnet101", stage_sizes=(1, 1, 1, 1), width=8)
  assert util.output_shapes(small, input_shape=(160, 160, 3))["embedding"] == (2, 256)
  with pytest.raises(ValueError, match="AvgPool2d"):
    util.output_shapes(small, input_shape=(64, 64, 3))


def _torch_outputs(reference, images):
  with torch.no_grad():
    features = reference.layer4(reference.layer3(reference.layer2(reference.layer1(
        reference.maxpool(reference.relu(reference.bn1(reference.conv1(images))))))))
    embedding = torch.flatten(reference.avgpool(features), 1)
    return embedding.numpy(), reference.fc(embedding).numpy()


@pytest.mark.parametrize("arch", ["resnet18", "se_resnet"])
def test_torch_state_dict_loads_and_gives_the_same_outputs(arch):
  torch.manual_seed(0)
  generator = torch.Generator().manual_seed(1)
  if arch == "resnet18":
    reference = torch_reference.ResNet(torch_reference.BasicBlock, [2, 2, 2, 2], 3)
    model = models.get_model("resnet18", heads=(HeadSpec("out", "multiclass", num_outputs=3),),
                             conv_implementation="lax")  # compiles faster; the SE case runs 'auto'.
    size, prefix, fc_key = 32, "", "fc"
  else:
    # Seed 002's SE-ResNet, one block per stage at 1/8 width; 160x160 leaves a 5x5 map for AvgPool2d(5).
    reference = torch_reference.ResNet(torch_reference.SEBottleneck, [1, 1, 1, 1], 3, width=8, se=True)
    model = models.get_model("se_resnet101", stage_sizes=(1, 1, 1, 1), width=8,
                             heads=(HeadSpec("out", "multiclass", num_outputs=3),))
    size, prefix, fc_key = 160, "classifier.features.", "classifier.classifier"
  torch_reference.randomize_batch_norm(reference, generator)
  reference.eval()
  state = reference.state_dict()
  if prefix:  # as [4] saves it: ModelWithLoss(classifier=Classifier(features=SEResNet, classifier=Linear))
    state = {(fc_key + k[2:] if k.startswith("fc.") else prefix + k): v for k, v in state.items()}
  variables = convert.load_torch_resnet(state, model, models.abstract_variables(model),
                                        head="out", prefix=prefix, fc_key=fc_key)
  images = np.random.default_rng(2).normal(size=(2, size, size, 3)).astype(np.float32)
  embedding, logits = _torch_outputs(reference, torch.from_numpy(images.transpose(0, 3, 1, 2)))
  ours = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(images))
  np.testing.assert_allclose(ours["embedding"], embedding, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ours["out"], logits, rtol=1e-4, atol=1e-4)


def test_batch_norm_uses_batch_statistics_in_training_and_updates_running_ones():
  model = models.get_model("resnet18", stage_sizes=(1, 1), width=4, input_shape=(16, 16, 3),
                           conv_implementation="lax")
  variables = models.init_variables(model, util.key(0), batch_size=4)
  x = util.images((4, 16, 16, 3))
  out, updated = jax.jit(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables)
  stats = updated["batch_stats"]["bn1"]
  assert not np.allclose(stats["mean"], 0.0) and not np.allclose(stats["var"], 1.0)
  eval_out = jax.jit(lambda v: model.apply(v, x, train=False))(variables)
  assert not np.allclose(out["embedding"], eval_out["embedding"])


def test_bn_axis_name_makes_training_statistics_span_devices():
  model = models.get_model("resnet18", stage_sizes=(1,), width=4, bn_axis_name="batch",
                           conv_implementation="lax")
  variables = models.init_variables(model, util.key(0), batch_size=8)
  x = util.images((8, 8, 8, 3))
  run = lambda v, images: model.apply(v, images, train=True, mutable=["batch_stats"])
  full, full_stats = jax.jit(jax.vmap(run, in_axes=(None, 0), axis_name="batch"))(variables, x[None])
  mapped, mapped_stats = jax.pmap(run, axis_name="batch", in_axes=(None, 0), devices=jax.devices()[:4])(
      variables, x.reshape(4, 2, 8, 8, 3))
  np.testing.assert_allclose(mapped["embedding"].reshape(8, -1), full["embedding"][0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(mapped_stats["batch_stats"]["bn1"]["mean"][0],
                             full_stats["batch_stats"]["bn1"]["mean"][0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name,overrides", [
    # Two stages: basic / SE-bottleneck blocks with and without projection; the full depth is checked
    # by the importer tests and the counts.
    ("resnet18", dict(stage_sizes=(1, 1), width=8)),
    ("se_resnet101", dict(stage_sizes=(1, 1), width=8, final_pool=None,
                          heads=(HeadSpec("labels", "multilabel_softmax", num_outputs=20),))),
])
def test_adam_lowers_the_loss_on_a_tiny_batch(name, overrides):
  model = models.get_model(name, input_shape=(32, 32, 3), conv_implementation="lax", **overrides)
  before, after, _, _ = util.adam_losses(model, util.images((8, 32, 32, 3)), util.random_labels(model, 8))
  assert after < before


@pytest.mark.slow
def test_full_se_resnet101_forward_pass():
  model = models.get_model("se_resnet101", conv_implementation="lax")
  variables = models.init_variables(model, util.key(0))
  out = jax.jit(lambda v, x: model.apply(v, x))(variables, util.images((1, 160, 160, 3)))
  assert out["embedding"].shape == (1, 2048) and out["labels"].shape == (1, 18000)
  assert np.all(np.isfinite(out["labels"]))
