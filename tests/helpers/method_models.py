"""Small CNNs exported once per test session, for methods whose references rerun the network
hundreds of times (Score-CAM, Ablation-CAM, occlusion): a zoo model would take minutes."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

INPUT_SIZE = (48, 48)


class SmallGapNet(nn.Module):
    """conv-ReLU-conv-ReLU ("features", (N, 16, 12, 12)) -> GAP -> linear: CAM applies."""

    def __init__(self, classes: int = 6):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.features = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(self.stem(x))), 1))


class SmallMlpNet(nn.Module):
    """conv-ReLU ("features", (N, 8, 12, 12)) -> maxpool -> flatten -> MLP with a ReLU: no CAM,
    and an ablation head with a real body."""

    def __init__(self, classes: int = 6):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.features = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 6 * 6, 20), nn.ReLU(), nn.Linear(20, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(self.stem(x))))


def export_small(model: nn.Module, folder: Path, name: str, **options) -> Path:
    from onnxcam.export import export_cam_model

    return export_cam_model(
        model.eval(), torch.zeros(1, 3, *INPUT_SIZE), ["features", "stem"], folder / f"{name}.onnx", **options
    )
