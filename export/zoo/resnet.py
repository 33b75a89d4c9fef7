"""ResNet-18 and ResNet-50 (He et al., 2016) with torchvision's module names and state-dict keys.

Written in plain torch because torchvision cannot be imported here; the names (``conv1``, ``bn1``,
``layer1`` .. ``layer4``, ``fc``, blocks' ``conv1/bn1/conv2/bn2[/conv3/bn3]``,
``downsample.0/.1``) are torchvision's, so ``load_state_dict(strict=True)`` takes a torchvision
checkpoint as is. ResNet-50 is "v1.5": the stride sits on the 3x3 convolution, as in torchvision.
"""

from __future__ import annotations

import torch
from torch import nn

from onnxcam.export.zoo._init import init_like_torchvision


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus the shortcut: ``(N, C_in, H, W) -> (N, C, H/s, W/s)``."""

    expansion = 1

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, plus the shortcut:
    ``(N, C_in, H, W) -> (N, 4 C, H/s, W/s)``."""

    expansion = 4

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = _conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = _conv1x1(channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """``(N, 3, H, W) -> (N, num_classes)`` logits; ``layer4`` gives ``(N, 512 e, H/32, W/32)``
    with ``e`` the block's expansion (1 or 4), ``layer3`` ``(N, 256 e, H/16, W/16)``."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks_per_layer: tuple[int, int, int, int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, blocks_per_layer[0], stride=1)
        self.layer2 = self._make_layer(block, 128, blocks_per_layer[1], stride=2)
        self.layer3 = self._make_layer(block, 256, blocks_per_layer[2], stride=2)
        self.layer4 = self._make_layer(block, 512, blocks_per_layer[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        init_like_torchvision(self, linear_std=None)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], channels: int, blocks: int, stride: int
    ) -> nn.Sequential:
        out_channels = channels * block.expansion
        downsample = None
        # The shortcut needs a projection wherever the block changes resolution or width.
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(
                _conv1x1(self.in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
            )
        layers = [block(self.in_channels, channels, stride, downsample)]
        self.in_channels = out_channels
        layers += [block(out_channels, channels) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18, random init: ``(N, 3, 224, 224) -> (N, 1000)``; ``layer4`` ``(N, 512, 7, 7)``."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50, random init: ``(N, 3, 224, 224) -> (N, 1000)``; ``layer4`` ``(N, 2048, 7, 7)``."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)
