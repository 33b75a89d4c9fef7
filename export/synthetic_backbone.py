"""synthetic_resnet's convolutional layers: the base of the classifier
(:class:`onnxcam.export.synthetic_models.SyntheticResNet`) and of the dense synthetic models.

``conv1`` at H/2, ``layer1`` at H/4, ``layer2`` and ``layer3`` at H/8, one set of module names and
shapes for all of them, so that
``train-synthetic --init-from models/synthetic/synthetic_resnet.pt`` starts the segmenter and the
detector from the trained classifier's features (as segmentation and detection networks start from
an ImageNet-trained backbone). Each ``layer3`` position sees 103 px: a whole object.
"""

from __future__ import annotations

import torch
from torch import nn

from onnxcam.export.zoo.resnet import BasicBlock


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))


class SyntheticBackbone(nn.Module):
    """``(N, 3, H, W)`` -> the stem ``(N, 24, H/2, W/2)``, ``layer1`` ``(N, 32, H/4, W/4)`` and
    ``layer3`` ``(N, 128, H/8, W/8)`` features (:meth:`stages`)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(24, 32, 2, _projection(24, 32, 2))
        self.layer2 = nn.Sequential(BasicBlock(32, 64, 2, _projection(32, 64, 2)), BasicBlock(64, 64))
        self.layer3 = BasicBlock(64, 128, 1, _projection(64, 128, 1))

    def stages(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        quarter = self.layer1(stem)
        return stem, quarter, self.layer3(self.layer2(quarter))
