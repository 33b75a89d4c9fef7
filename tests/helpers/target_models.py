"""Small models exported once per test session with each target of ``onnxcam.export.targets``,
and the targets' arithmetic written out independently in plain torch, per sample, as the
references (pytorch-grad-cam's ``SemanticSegmentationTarget``, ``FasterRCNNBoxScoreTarget`` and
``ClassifierOutputSoftmaxTarget`` compute the same numbers one image at a time).

The synthetic segmenter and detector run at 48 x 48 with few channels (random init, BatchNorm
calibrated on noise so activations have trained-like scales): the architectures users export,
at a size that keeps the suite quick.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

try:  # conftest imports this module for its fixture; the torch-free runtime tests must still run
    import torch
except ImportError:  # pragma: no cover - the fixtures and references below need torch
    torch = None

SIZE = 48
NUM_CLASSES = 4


@dataclass(frozen=True)
class ExportedTarget:
    """A model, its target layer, the target and the CAM-ready file exported with it."""

    model: torch.nn.Module
    layer: str
    target: object
    path: Path


def build_models() -> dict[str, tuple[torch.nn.Module, str]]:
    from helpers.method_models import SmallGapNet
    from helpers.torch_reference import calibrate_batchnorm
    from onnxcam.export.synthetic_detector import SyntheticDetector
    from onnxcam.export.synthetic_segmenter import SyntheticSegmenter

    torch.manual_seed(5)
    noise = torch.randn(8, 3, SIZE, SIZE)
    return {
        "segmentation": (calibrate_batchnorm(SyntheticSegmenter(NUM_CLASSES), noise), "layer3"),
        "detection": (calibrate_batchnorm(SyntheticDetector(NUM_CLASSES), noise), "layer3"),
        "classifier": (SmallGapNet(NUM_CLASSES).eval(), "features"),
    }


def user_function(logits: torch.Tensor) -> torch.Tensor:
    """A user target: the margin of class 1 over class 2, one scalar per sample."""
    return logits[:, 1] - 0.5 * logits[:, 2]


@pytest.fixture(scope="session")
def exported_targets(tmp_path_factory) -> dict[str, ExportedTarget]:
    """``{kind: ExportedTarget}`` for probability, segmentation, detection and user targets."""
    pytest.importorskip("torch")
    from onnxcam.export import export_cam_model
    from onnxcam.export.targets import ClassProbability, DetectionBoxScore, SegmentationRegion, UserTarget

    folder = tmp_path_factory.mktemp("targets")
    models = build_models()
    plan = {
        "probability": ("classifier", ClassProbability()),
        "segmentation": ("segmentation", SegmentationRegion()),
        "detection": ("detection", DetectionBoxScore(iou_threshold=0.5)),
        "user": ("classifier", UserTarget(user_function, label="margin")),
    }
    exported = {}
    for kind, (name, target) in plan.items():
        model, layer = models[name]
        path = export_cam_model(model, torch.zeros(1, 3, SIZE, SIZE), layer, folder / f"{kind}.onnx", target=target)
        exported[kind] = ExportedTarget(model, layer, target, path)
    return exported


def box_iou_continuous(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``torchvision.ops.box_iou`` written out: (M, 4) x (D, 4) continuous boxes -> (M, D)."""
    area1 = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    area2 = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    top_left = torch.max(box[:, None, :2], boxes[:, :2])
    bottom_right = torch.min(box[:, None, 2:], boxes[:, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2 - inter)


def reference_score(kind: str, outputs, i: int, c: int, target_input: torch.Tensor | None) -> torch.Tensor:
    """Sample ``i``'s target for class ``c`` (resolved), from the model's ``outputs`` of a batch."""
    if kind == "probability":
        return torch.softmax(outputs[i], dim=0)[c]
    if kind == "user":
        return user_function(outputs[i : i + 1])[0]
    if kind == "segmentation":
        return (outputs[i, c] * target_input[i]).sum()
    boxes, scores = outputs[0][i], outputs[1][i]
    best, labels = scores.max(dim=1)
    keep = (best > 0.05) & (labels == c)
    if not keep.any():
        return scores.sum() * 0
    ious = box_iou_continuous(target_input[i : i + 1] + target_input.new_tensor([0, 0, 1, 1]), boxes[keep])[0]
    d = int(ious.argmax())
    if ious[d] <= 0.5:
        return scores.sum() * 0
    return scores[keep][d, c] + ious[d]


def reference_class(kind: str, outputs, i: int, target_input: torch.Tensor | None) -> int:
    """The class a top-1 (-1) request resolves to, by the target's rule."""
    if kind in ("probability", "user"):
        return int(outputs[i].argmax())
    if kind == "segmentation":
        return int((outputs[i] * target_input[i]).sum(dim=(1, 2)).argmax())
    boxes, scores = outputs[0][i], outputs[1][i]
    best, labels = scores.max(dim=1)
    ious = box_iou_continuous(target_input[i : i + 1] + target_input.new_tensor([0, 0, 1, 1]), boxes)[0]
    return int(labels[torch.where(best > 0.05, ious, torch.full_like(ious, -1)).argmax()])


def reference_gradients(
    kind: str,
    model: torch.nn.Module,
    layer: str,
    batch: torch.Tensor,
    target_input: torch.Tensor | None,
    requested: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(d target / d layer (N, C, h, w), resolved classes (N,)) by torch autograd, in the model's
    dtype, for the ``requested`` classes (N,) (-1: the target's top class)."""
    from helpers.torch_reference import outputs_with_layer_leaf

    outputs, leaf = outputs_with_layer_leaf(model, layer, batch)
    classes = [
        int(c) if c >= 0 else reference_class(kind, outputs, i, target_input) for i, c in enumerate(requested)
    ]
    total = sum(reference_score(kind, outputs, i, c, target_input) for i, c in enumerate(classes))
    (gradients,) = torch.autograd.grad(total, leaf)
    return gradients.numpy(), np.asarray(classes)


def detection_box(model: torch.nn.Module, batch: torch.Tensor) -> np.ndarray:
    """(N, 4) inclusive pixel boxes: each image's most confident detection, rounded outwards to
    pixels and clipped, so that the detection target has a match."""
    with torch.no_grad():
        boxes, scores = model(batch)
    best = scores.max(dim=2).values.argmax(dim=1)
    chosen = boxes[torch.arange(len(batch)), best].numpy()
    inclusive = np.concatenate([np.floor(chosen[:, :2]), np.ceil(chosen[:, 2:]) - 1], axis=1)
    return np.clip(inclusive, 0, SIZE - 1).astype(np.float32)


def segmentation_mask(n: int, seed: int = 0) -> np.ndarray:
    """(N, SIZE, SIZE) float32 masks: a random rectangle per image."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, SIZE, SIZE), dtype=np.float32)
    for mask in masks:
        x0, y0 = rng.integers(0, SIZE // 2, size=2)
        mask[y0 : y0 + rng.integers(8, SIZE // 2), x0 : x0 + rng.integers(8, SIZE // 2)] = 1
    return masks
