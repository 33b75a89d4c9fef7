"""``synthetic_segmenter``: a small encoder-decoder for the synthetic set, per-pixel logits.

``(N, 3, H, W) -> (N, 1 + num_classes, H, W)``: channel 0 is the background, channel ``k + 1``
the synthetic class ``k``. The encoder is synthetic_resnet's backbone
(:class:`~onnxcam.export.synthetic_backbone.SyntheticBackbone`: ``layer3`` at H/8, each position
seeing a whole object); a U-Net-style decoder upsamples (bilinear) and concatenates the encoder's
features of the same resolution at H/4 (``layer1``) and H/2 (the stem), and bilinear upsampling
brings the logits to the input size. Bilinear upsampling rather than transposed convolutions: the
exported gradient graph then needs no transposed-convolution backward.

Explained with ``SegmentationRegion`` at ``layer3`` (``(N, 128, H/8, W/8)``), as
pytorch-grad-cam's segmentation tutorial explains a backbone stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from onnxcam.export.synthetic_backbone import SyntheticBackbone
from onnxcam.export.zoo._init import init_like_torchvision


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _Up(nn.Module):
    """Bilinear up to the skip features' size, concatenated with them, one conv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv = _conv_bn_relu(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class SyntheticSegmenter(SyntheticBackbone):
    """``(N, 3, H, W) -> (N, 1 + num_classes, H, W)`` per-pixel logits (background first);
    H and W multiples of 16."""

    def __init__(self, num_classes: int = 12):
        super().__init__()
        self.up2 = _Up(128, 32, 64)
        self.up1 = _Up(64, 24, 32)
        self.classifier = nn.Conv2d(32, 1 + num_classes, 1)
        init_like_torchvision(self, linear_std=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem, quarter, features = self.stages(x)
        y = self.up1(self.up2(features, quarter), stem)
        return F.interpolate(self.classifier(y), size=x.shape[2:], mode="bilinear", align_corners=False)
