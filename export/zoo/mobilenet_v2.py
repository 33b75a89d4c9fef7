"""MobileNetV2 (Sandler et al., 2018) with torchvision's module names and state-dict keys.

``features.0`` is the stem (conv, BN, ReLU6 as an ``nn.Sequential``, so ``features.0.0.weight``),
``features.1`` .. ``features.17`` are inverted residual blocks (``features.N.conv.*``) and
``features.18`` the 1x1 head convolution to 1280 channels; ``classifier`` is Dropout + Linear.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from onnxcam.export.zoo._init import init_like_torchvision

# (expansion t, output channels c, repeats n, stride s of the first repeat): the paper's Table 2.
_INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias), BatchNorm, ReLU6: torchvision's ``Conv2dNormActivation``, whose
    ``nn.Sequential`` indices 0/1/2 are what the state-dict keys carry."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                groups=groups, bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when t = 1), 3x3 depthwise (strided), 1x1 linear projection, and the
    identity shortcut when shapes allow: ``(N, C_in, H, W) -> (N, C_out, H/s, W/s)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # use_res_connect is fixed at construction, so this branch is structure, not data.
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """``(N, 3, H, W) -> (N, num_classes)`` logits; ``features.18`` gives ``(N, 1280, H/32, W/32)``,
    ``features.13`` (the last block at stride 16) ``(N, 96, H/16, W/16)``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        in_channels = 32
        features: list[nn.Module] = [ConvBNReLU6(3, in_channels, stride=2)]
        for expand_ratio, out_channels, repeats, stride in _INVERTED_RESIDUAL_SETTING:
            for i in range(repeats):
                features.append(
                    InvertedResidual(in_channels, out_channels, stride if i == 0 else 1, expand_ratio)
                )
                in_channels = out_channels
        features.append(ConvBNReLU6(in_channels, 1280, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
        init_like_torchvision(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Functional pooling, as in torchvision: the model has no "avgpool" module to name.
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    """MobileNetV2 (width 1.0), random init: ``(N, 3, 224, 224) -> (N, 1000)``;
    ``features.18`` ``(N, 1280, 7, 7)``."""
    return MobileNetV2(num_classes)
