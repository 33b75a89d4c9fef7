"""``synthetic_segmenter``: a small encoder-decoder for the synthetic set, per-pixel logits.

``(N, 3, H, W) -> (N, 1 + num_classes, H, W)``: channel 0 is the background, channel ``k + 1``
the synthetic class ``k``. A strided encoder (``stem`` at H/2, ``down1`` at H/4, ``down2`` at
H/8, ``down3`` at H/16) sees whole objects; a U-Net-style decoder upsamples (bilinear) and adds
the skip features of the same resolution back at H/8, H/4 and H/2, and bilinear upsampling
brings the logits to the input size. Bilinear upsampling rather than transposed convolutions:
the exported gradient graph then needs no transposed-convolution backward.

Explained with ``SegmentationRegion`` at ``down2`` (``(N, 96, H/8, W/8)``), as pytorch-grad-cam's
segmentation tutorial explains a backbone stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from onnxcam.export.zoo._init import init_like_torchvision


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    """A strided conv then a plain one: half the resolution."""
    return nn.Sequential(_conv_bn_relu(in_channels, out_channels, 2), _conv_bn_relu(out_channels, out_channels))


class _Up(nn.Module):
    """Bilinear x2, concatenated with the skip features of that resolution, one conv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv = _conv_bn_relu(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class SyntheticSegmenter(nn.Module):
    """``(N, 3, H, W) -> (N, 1 + num_classes, H, W)`` per-pixel logits (background first);
    H and W multiples of 16."""

    def __init__(self, num_classes: int = 12, width: int = 16):
        super().__init__()
        w = width
        self.stem = _conv_bn_relu(3, w, 2)
        self.down1 = _stage(w, 2 * w)
        self.down2 = _stage(2 * w, 4 * w)
        self.down3 = _stage(4 * w, 6 * w)
        self.up3 = _Up(6 * w, 4 * w, 4 * w)
        self.up2 = _Up(4 * w, 2 * w, 2 * w)
        self.up1 = _Up(2 * w, w, w)
        self.classifier = nn.Conv2d(w, 1 + num_classes, 1)
        init_like_torchvision(self, linear_std=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.stem(x)
        s2 = self.down1(s1)
        s3 = self.down2(s2)
        y = self.up1(self.up2(self.up3(self.down3(s3), s3), s2), s1)
        return F.interpolate(self.classifier(y), size=x.shape[2:], mode="bilinear", align_corners=False)
