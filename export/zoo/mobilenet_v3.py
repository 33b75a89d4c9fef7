"""MobileNetV3-Large (Howard et al., 2019) with torchvision's module names and state-dict keys.

``features.0`` is the stem (conv 3x3/2, BN, Hardswish), ``features.1`` .. ``features.15`` are
inverted residual blocks (``features.N.block.*``, the squeeze-excite module at
``block.2``, as ``fc1`` / ``fc2`` convolutions), ``features.16`` the 1x1 head to 960 channels;
``classifier`` is Linear(960, 1280), Hardswish, Dropout, Linear(1280, K). BatchNorm eps 1e-3,
as torchvision (the TF reference values).
"""

from __future__ import annotations

import torch
from torch import nn

from onnxcam.export.zoo._init import init_like_torchvision

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01

# (kernel, expanded channels, output channels, squeeze-excite, activation, stride) of features.1
# .. features.15: torchvision's _mobilenet_v3_conf("mobilenet_v3_large") (dilation 1).
_LARGE_SETTING: tuple[tuple[int, int, int, bool, str, int], ...] = (
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """The channel rounding of the TF reference (and torchvision): the nearest multiple of
    ``divisor``, never below ``divisor`` nor more than 10% below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNActivation(nn.Sequential):
    """Conv (no bias), BatchNorm, activation (none for linear projections): torchvision's
    ``Conv2dNormActivation``, whose indices 0/1/2 are what the state-dict keys carry."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = nn.Hardswish,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                groups=groups, bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision's ``SqueezeExcitation`` with Hardsigmoid gating:
    ``x * hardsigmoid(fc2(relu(fc1(avgpool(x)))))``, ``(N, C, H, W) -> (N, C, H, W)``."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class InvertedResidual(nn.Module):
    """1x1 expand (absent when the width does not change), depthwise k x k (strided), optional
    squeeze-excite, 1x1 linear projection, identity shortcut when shapes allow:
    ``(N, C_in, H, W) -> (N, C_out, H/s, W/s)``."""

    def __init__(
        self,
        in_channels: int,
        kernel: int,
        expanded: int,
        out_channels: int,
        use_se: bool,
        activation: str,
        stride: int,
    ) -> None:
        super().__init__()
        act = nn.Hardswish if activation == "HS" else nn.ReLU
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expanded != in_channels:
            layers.append(ConvBNActivation(in_channels, expanded, activation=act))
        layers.append(ConvBNActivation(expanded, expanded, kernel, stride, expanded, activation=act))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(ConvBNActivation(expanded, out_channels, activation=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # use_res_connect is fixed at construction: structure, not data-dependent control flow.
        return x + self.block(x) if self.use_res_connect else self.block(x)


class MobileNetV3(nn.Module):
    """``(N, 3, H, W) -> (N, num_classes)`` logits; ``features.16`` gives ``(N, 960, H/32, W/32)``,
    ``features.12`` ``(N, 112, H/16, W/16)``, ``features.6`` ``(N, 40, H/8, W/8)``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        in_channels = 16
        features: list[nn.Module] = [ConvBNActivation(3, in_channels, 3, stride=2)]
        for kernel, expanded, out_channels, use_se, activation, stride in _LARGE_SETTING:
            features.append(
                InvertedResidual(in_channels, kernel, expanded, out_channels, use_se, activation, stride)
            )
            in_channels = out_channels
        features.append(ConvBNActivation(in_channels, 6 * in_channels))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(6 * in_channels, 1280),
            nn.Hardswish(inplace=True),
            nn.Dropout(dropout, inplace=True),
            nn.Linear(1280, num_classes),
        )
        init_like_torchvision(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def mobilenet_v3_large(num_classes: int = 1000) -> MobileNetV3:
    """MobileNetV3-Large, random init: ``(N, 3, 224, 224) -> (N, 1000)``; ``features.16``
    ``(N, 960, 7, 7)``."""
    return MobileNetV3(num_classes)

