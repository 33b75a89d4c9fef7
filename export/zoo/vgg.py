"""VGG-16 (Simonyan & Zisserman, 2015, configuration "D", no BatchNorm) with torchvision's layout.

``features`` is one flat ``nn.Sequential`` (conv, ReLU pairs and max-pools), so the indices, and
with them the state-dict keys ``features.N.weight`` and ``classifier.{0,3,6}.weight``, are
torchvision's. Index map of ``features``: conv5_3 is ``features.28``, its ReLU ``features.29``
(the last conv feature map, ``(N, 512, H/16, W/16)``), then pool5 ``features.30``; conv4_3's ReLU is
``features.22`` (``(N, 512, H/8, W/8)``).
"""

from __future__ import annotations

import torch
from torch import nn

from onnxcam.export.zoo._init import init_like_torchvision

# Output channels of each 3x3 conv; "M" is a 2x2 max-pool. torchvision's cfgs["D"].
_VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


def _make_features(config: tuple[int | str, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(item), 3, padding=1), nn.ReLU(inplace=True)]
            in_channels = int(item)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``(N, 3, H, W) -> (N, num_classes)`` logits through ``features`` ``(N, 512, H/32, W/32)``,
    ``avgpool`` (adaptive, to 7x7, so any input size reaches the fixed-size classifier) and the
    three-layer ``classifier``."""

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        init_like_torchvision(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg16(num_classes: int = 1000) -> VGG:
    """VGG-16, random init: ``(N, 3, 224, 224) -> (N, 1000)``; ``features.29`` ``(N, 512, 14, 14)``."""
    return VGG(_make_features(_VGG16_CONFIG), num_classes)
