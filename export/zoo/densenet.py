"""DenseNet-121 (Huang et al., 2017) with torchvision's module names and state-dict keys.

``features`` holds ``conv0``, ``norm0``, ``relu0``, ``pool0``, then ``denseblock1`` ..
``denseblock4`` (each ``denselayerN`` with ``norm1/relu1/conv1/norm2/relu2/conv2``) separated by
``transition1`` .. ``transition3`` (``norm/relu/conv/pool``), and ``norm5``; ``classifier`` is
Linear(1024, K). As in torchvision, the final ReLU is functional (``F.relu`` after ``features``),
so no module outputs the activated last map: the last target layer is ``features.norm5``,
before that ReLU, which is also where pytorch-grad-cam users point Grad-CAM. CAM (classifier
rows) does not apply there, since the head sees ReLU(norm5), not norm5.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (to ``bn_size * growth``), BN-ReLU-3x3 conv (to ``growth``) over the
    concatenation of every earlier map: ``[(N, C_i, H, W)] -> (N, growth, H, W)``."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        out = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(out)))


class _DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers, each fed every earlier output:
    ``(N, C, H, W) -> (N, C + num_layers * growth, H, W)``."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(
                f"denselayer{i + 1}", _DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """BN, ReLU, 1x1 conv (halving the width), 2x2 average pool: ``(N, C, H, W) -> (N, C/2, H/2,
    W/2)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """``(N, 3, H, W) -> (N, num_classes)`` logits; for DenseNet-121 ``features.norm5`` gives
    ``(N, 1024, H/32, W/32)``, ``features.denseblock3`` ``(N, 1024, H/16, W/16)``,
    ``features.denseblock2`` ``(N, 512, H/8, W/8)``."""

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, num_init_features, 7, 2, 3, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(
                f"denseblock{i + 1}", _DenseBlock(num_layers, channels, growth_rate, bn_size)
            )
            channels += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        # torchvision's DenseNet init: Kaiming-normal with the default fan_in (not ResNet's
        # fan_out), unit/zero BatchNorm, zero Linear bias with PyTorch's default Linear weights.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Functional in-place ReLU, as torchvision: it overwrites norm5's output, which the
        # exporter's capture has already cloned.
        out = F.relu(self.features(x), inplace=True)
        out = torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
        return self.classifier(out)


def densenet121(num_classes: int = 1000) -> DenseNet:
    """DenseNet-121, random init: ``(N, 3, 224, 224) -> (N, 1000)``; ``features.norm5``
    ``(N, 1024, 7, 7)``."""
    return DenseNet(32, (6, 12, 24, 16), 64, 4, num_classes)
