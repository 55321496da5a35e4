"""PyTorch reference networks with torchvision's (and seed 002's SE-ResNet source's) parameter names.

torchvision cannot be installed here, so these rebuild its ``resnet18`` / ``vgg16`` module trees (same
attribute names, hence the same ``state_dict()`` keys) and the SE-ResNet of seed 002's reference [4],
at any width, for importer tests and exact parameter counts.
"""

import torch
from torch import nn


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU()
    self.downsample = downsample

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(out + identity)


class SELayer(nn.Module):

  def __init__(self, channel, reduction=16):
    super().__init__()
    self.avg_pool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Sequential(nn.Linear(channel, channel // reduction), nn.ReLU(),
                            nn.Linear(channel // reduction, channel), nn.Sigmoid())

  def forward(self, x):
    b, c = x.shape[:2]
    return x * self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)


class SEBottleneck(nn.Module):
  """Seed 002's [4]: stride in conv1 (1x1), SE on the residual branch before the addition."""
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None, reduction=16):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, stride, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU()
    self.se = SELayer(planes * 4, reduction)
    self.downsample = downsample

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.se(self.bn3(self.conv3(out)))
    residual = x if self.downsample is None else self.downsample(x)
    return self.relu(out + residual)


class ResNet(nn.Module):
  """torchvision's ResNet (``se=False``) or [4]'s SEResNet + Linear classifier (``se=True``)."""

  def __init__(self, block, layers, num_classes, width=64, se=False):
    super().__init__()
    self.inplanes = width
    self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.relu = nn.ReLU()
    self.maxpool = nn.MaxPool2d(3, 2) if se else nn.MaxPool2d(3, 2, 1)
    for i, blocks in enumerate(layers):
      setattr(self, f"layer{i + 1}", self._make_layer(block, width * 2 ** i, blocks, 1 if i == 0 else 2))
    self.avgpool = nn.AvgPool2d(5) if se else nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(self.inplanes, num_classes)

  def _make_layer(self, block, planes, blocks, stride):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(self.avgpool(x), 1))


VGG16_CFG = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M")  # x widths[0]


class VGG(nn.Module):
  """torchvision's ``vgg16`` (``features``, ``avgpool``, ``classifier``) at base width ``width``."""

  def __init__(self, num_classes, width=64, fc_units=4096):
    super().__init__()
    layers, channels = [], 3
    for v in VGG16_CFG:
      if v == "M":
        layers.append(nn.MaxPool2d(2, 2))
      else:
        layers += [nn.Conv2d(channels, v * width, 3, padding=1), nn.ReLU()]
        channels = v * width
    self.features = nn.Sequential(*layers)
    self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    self.classifier = nn.Sequential(
        nn.Linear(channels * 49, fc_units), nn.ReLU(), nn.Dropout(),
        nn.Linear(fc_units, fc_units), nn.ReLU(), nn.Dropout(),
        nn.Linear(fc_units, num_classes))

  def forward(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def randomize_batch_norm(module: nn.Module, generator: torch.Generator) -> None:
  """Non-trivial BN parameters and running statistics, so that importing them is actually tested."""
  for m in module.modules():
    if isinstance(m, nn.BatchNorm2d):
      with torch.no_grad():
        m.weight.uniform_(0.5, 1.5, generator=generator)
        m.bias.normal_(0, 0.1, generator=generator)
        m.running_mean.normal_(0, 0.1, generator=generator)
        m.running_var.uniform_(0.5, 1.5, generator=generator)
