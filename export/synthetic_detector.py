"""``synthetic_detector``: a small single-stage, CenterNet-style detector for the synthetic set.

synthetic_resnet's backbone (:class:`~onnxcam.export.synthetic_backbone.SyntheticBackbone`,
``layer3`` at H/8, each position seeing a whole object) and two 1x1 heads on a shared
3x3 conv: a class heatmap (one sigmoid per class and position, peaking at object centres; Zhou et
al., "Objects as Points", 2019) and a regression of each position's box (the centre's offset
within the cell and the log of the box size in cells).

``forward`` returns the decoded dense detections, one per position, the format
``onnxcam.export.targets.DetectionBoxScore`` reads: ``boxes`` ``(N, D, 4)`` continuous input
coordinates ``x0, y0, x1, y1`` (torchvision's convention) and ``scores`` ``(N, D, K)``
probabilities, ``D = (H/8) * (W/8)``. :meth:`SyntheticDetector.raw` gives the heads before
decoding, for training. Peaks of the heatmap (a 3x3 local maximum, as CenterNet keeps) are the
detections: :func:`peak_detections`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from onnxcam.export.synthetic_backbone import SyntheticBackbone
from onnxcam.export.zoo._init import init_like_torchvision

STRIDE = 8
PRIOR = 0.1
"""Initial heatmap probability (the focal-loss prior of RetinaNet and CenterNet)."""


class SyntheticDetector(SyntheticBackbone):
    """``(N, 3, H, W) -> (boxes (N, D, 4), scores (N, D, K))``; H, W multiples of 16."""

    stride = STRIDE

    def __init__(self, num_classes: int = 12):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(128, 64, 3, padding=1), nn.ReLU(inplace=True))
        self.heatmap = nn.Conv2d(64, num_classes, 1)
        self.regression = nn.Conv2d(64, 4, 1)
        init_like_torchvision(self, linear_std=None)
        nn.init.constant_(self.heatmap.bias, math.log(PRIOR / (1 - PRIOR)))
        nn.init.normal_(self.heatmap.weight, 0.0, 0.01)
        nn.init.normal_(self.regression.weight, 0.0, 0.01)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits ``(N, K, h, w)`` and regression ``(N, 4, h, w)``: centre offset in
        cells (x, y, from the cell's centre) and log box size in cells (width, height)."""
        x = self.head(self.stages(x)[2])
        return self.heatmap(x), self.regression(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heatmap, regression = self.raw(x)
        return decode_boxes(regression, self.stride), torch.sigmoid(heatmap).flatten(2).transpose(1, 2)


def cell_centres(height: int, width: int, stride: int) -> torch.Tensor:
    """(2, h, w) input coordinates (x, y) of each cell's centre."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    return torch.stack([xs, ys]) * stride


def decode_boxes(regression: torch.Tensor, stride: int) -> torch.Tensor:
    """Regression ``(N, 4, h, w)`` -> boxes ``(N, h*w, 4)`` ``x0, y0, x1, y1``, row-major cells."""
    height, width = (int(v) for v in regression.shape[2:])
    centres = cell_centres(height, width, stride).to(regression.dtype)[None] + regression[:, :2] * stride
    half = torch.exp(regression[:, 2:].clamp(max=4.0)) * (stride / 2)
    return torch.cat([centres - half, centres + half], dim=1).flatten(2).transpose(1, 2)


def peak_detections(
    boxes: torch.Tensor, scores: torch.Tensor, grid: tuple[int, int], top: int = 100, min_score: float = 0.05
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """CenterNet's decoding: per image, the (position, class) pairs that are a 3x3 local maximum
    of their class's heatmap, best ``top`` above ``min_score``, as ``(boxes (M, 4), scores (M,),
    labels (M,))``. boxes (N, D, 4), scores (N, D, K) as ``forward`` returns them, grid = (h, w)."""
    heat = scores.transpose(1, 2).unflatten(2, grid)  # (N, K, h, w)
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    flat = peaks.flatten(1)  # (N, K * D), class-major
    found = []
    for i in range(len(flat)):
        values, order = flat[i].topk(min(top, flat.shape[1]))
        keep = values > min_score
        values, order = values[keep], order[keep]
        positions, labels = order % boxes.shape[1], order // boxes.shape[1]
        found.append((boxes[i, positions], values, labels))
    return found
