"""``train-synthetic`` objectives of the dense models: per-pixel segmentation and detection.

- :class:`SegmentationObjective` (``synthetic_segmenter``): the single-object set's instance masks
  as label maps (0 background, ``k + 1`` class ``k``), per-pixel cross-entropy; accuracy counts
  the images whose most frequent predicted object class is theirs; the record adds
  ``mean_iou``, the mean over the 1 + K classes of the held-out IoU (one confusion matrix over
  all pixels, as the PASCAL VOC segmentation benchmark computes it).
- :class:`DetectionObjective` (``synthetic_detector``): the set with up to three objects per
  image, CenterNet's targets (a Gaussian peak per object centre on its class's heatmap, the
  centre's offset and log size at the peak), its focal loss and an L1 regression loss; accuracy
  counts the images whose best peak has their class; the record adds COCO ``ap50`` and ``ap``
  (:func:`onnxcam.eval.detection_ap.detection_ap`) of the heatmap peaks.

Both follow :class:`onnxcam.apps.synthetic_objectives.SingleLabel`'s interface; ``predict``
gives what the held-out metrics read (label maps, or dense detections).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from onnxcam.eval.datasets.synthetic import SYNTHETIC_TEST_SEED, make_synthetic_dataset
from onnxcam.eval.detection_ap import GroundTruthBoxes, detection_ap
from onnxcam.eval.detections import Detections
from onnxcam.export.synthetic_detector import STRIDE, decode_boxes, peak_detections

DETECTION_INSTANCES = 3
"""Objects per image (1 to 3, one class) in the detector's training and held-out images."""


def label_maps(masks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Instance masks (N, H, W) (0 background, ``k + 1`` object k) and image classes (N,) ->
    int64 label maps (N, H, W): 0 background, ``class + 1`` on the objects."""
    return np.where(masks > 0, labels[:, None, None] + 1, 0).astype(np.int64)


def mean_iou(predicted: torch.Tensor, truth: torch.Tensor, classes: int) -> float:
    """Mean over ``classes`` of IoU = TP / (TP + FP + FN) from one confusion matrix over all pixels
    of ``predicted`` and ``truth`` (same shape, labels in [0, classes)); classes absent from both
    are left out."""
    confusion = torch.bincount(truth.flatten() * classes + predicted.flatten(), minlength=classes * classes)
    confusion = confusion.reshape(classes, classes).double()
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    return float((tp[union > 0] / union[union > 0]).mean())


def _majority_class(label_map: torch.Tensor) -> torch.Tensor:
    """(N, H, W) label maps -> (N,) the most frequent object class (-1 where none)."""
    counts = torch.stack([(label_map == k).flatten(1).sum(1) for k in range(1, int(label_map.max()) + 2)], 1)
    return torch.where(counts.sum(1) > 0, counts.argmax(1), torch.full_like(counts[:, 0], -1))


class SegmentationObjective:
    """Per-pixel cross-entropy over 1 + K classes (background first)."""

    test_seed: ClassVar[int] = SYNTHETIC_TEST_SEED

    def data(self, n: int, seed: int, image_size: int, num_classes: int) -> tuple[np.ndarray, torch.Tensor]:
        data = make_synthetic_dataset(n, seed, image_size, num_classes)
        return data.images, torch.from_numpy(label_maps(data.masks, data.labels))

    def prepare(self, model: nn.Module, options: dict[str, object]) -> None:
        """No options."""

    def loss(self, model, images, targets):
        logits = model(images)
        return nn.functional.cross_entropy(logits, targets), logits.detach().argmax(1)

    def predict(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W) predicted label maps."""
        return model(images).argmax(1)

    def correct(self, predicted: torch.Tensor, targets: torch.Tensor) -> int:
        return int((_majority_class(predicted) == _majority_class(targets)).sum())

    def test_metrics(self, predicted: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        classes = int(max(predicted.max(), targets.max())) + 1
        return {"mean_iou": 100.0 * mean_iou(predicted, targets, classes)}


@dataclass(frozen=True)
class DetectionTargets:
    """A batch of detection ground truth: ``encoded`` (N, K + 5, h, w) CenterNet targets (K
    heatmaps, offset x/y, log size w/h, a 1 at each object's centre cell), and each image's
    inclusive boxes (M_i, 4) and labels (M_i,). Indexing with a tensor of rows selects images."""

    encoded: torch.Tensor
    boxes: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, rows: torch.Tensor) -> DetectionTargets:
        rows_list = [int(r) for r in rows]
        return DetectionTargets(self.encoded[rows], tuple(self.boxes[r] for r in rows_list), tuple(self.labels[r] for r in rows_list))


def encode_centres(boxes: np.ndarray, label: int, num_classes: int, grid: tuple[int, int], stride: int) -> np.ndarray:
    """One image's CenterNet targets (K + 5, h, w) for inclusive ``boxes`` (M, 4) of class ``label``.

    Each object peaks at its centre cell with a Gaussian of sigma a sixth of its smaller side (at
    least half a cell), as CenterNet's size-adaptive radius; overlapping Gaussians keep the max.
    """
    height, width = grid
    encoded = np.zeros((num_classes + 5, height, width), dtype=np.float32)
    ys, xs = np.mgrid[0:height, 0:width]
    for x0, y0, x1, y1 in boxes:
        w, h = x1 + 1 - x0, y1 + 1 - y0
        cx, cy = (x0 + x1 + 1) / 2 / stride, (y0 + y1 + 1) / 2 / stride
        col, row = min(int(cx), width - 1), min(int(cy), height - 1)
        sigma = max(0.5, min(w, h) / stride / 6)
        peak = np.exp(-((xs - col) ** 2 + (ys - row) ** 2) / (2 * sigma**2))
        encoded[label] = np.maximum(encoded[label], peak)
        encoded[num_classes :, row, col] = (cx - col - 0.5, cy - row - 0.5, math.log(w / stride), math.log(h / stride), 1.0)
    return encoded


def focal_loss(logits: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), normalised by the object count."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = heatmap == 1
    positive_loss = -(torch.log(p) * (1 - p) ** 2)[positive].sum()
    negative_loss = -(torch.log(1 - p) * p**2 * (1 - heatmap) ** 4)[~positive].sum()
    return (positive_loss + negative_loss) / positive.sum().clamp(min=1)


def dense_detections(heatmap_logits: torch.Tensor, regression: torch.Tensor, stride: int) -> torch.Tensor:
    """Raw heads -> (N, D, 4 + K): the model's decoded boxes and scores side by side."""
    scores = torch.sigmoid(heatmap_logits).flatten(2).transpose(1, 2)
    return torch.cat([decode_boxes(regression, stride), scores], dim=2)


def inclusive_boxes(boxes: torch.Tensor, size: int) -> np.ndarray:
    """Continuous (M, 4) boxes -> inclusive int64 pixel boxes inside a ``size`` square image."""
    rounded = torch.round(boxes).numpy()
    rounded[:, 2:] -= 1
    rounded = np.clip(rounded, 0, size - 1)
    rounded[:, 2:] = np.maximum(rounded[:, 2:], rounded[:, :2])
    return rounded.astype(np.int64)


class DetectionObjective:
    """CenterNet's focal loss on the heatmaps plus L1 on the centre offsets and log sizes."""

    test_seed: ClassVar[int] = SYNTHETIC_TEST_SEED
    stride: ClassVar[int] = STRIDE

    def data(self, n: int, seed: int, image_size: int, num_classes: int) -> tuple[np.ndarray, DetectionTargets]:
        data = make_synthetic_dataset(n, seed, image_size, num_classes, max_instances=DETECTION_INSTANCES)
        grid = (image_size // self.stride, image_size // self.stride)
        encoded = np.stack(
            [encode_centres(boxes, int(label), num_classes, grid, self.stride) for boxes, label in zip(data.boxes, data.labels)]
        )
        labels = tuple(np.full(len(boxes), int(label)) for boxes, label in zip(data.boxes, data.labels))
        return data.images, DetectionTargets(torch.from_numpy(encoded), tuple(data.boxes), labels)

    def prepare(self, model: nn.Module, options: dict[str, object]) -> None:
        """No options."""

    def loss(self, model, images, targets):
        heatmap_logits, regression = model.raw(images)
        encoded = targets.encoded
        classes = heatmap_logits.shape[1]
        centres = encoded[:, classes + 4] > 0
        regression_loss = (regression - encoded[:, classes : classes + 4]).abs().sum(1)[centres].sum()
        loss = focal_loss(heatmap_logits, encoded[:, :classes]) + regression_loss / centres.sum().clamp(min=1)
        return loss, dense_detections(heatmap_logits.detach(), regression.detach(), self.stride)

    def predict(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return dense_detections(*model.raw(images), self.stride)

    def correct(self, dense: torch.Tensor, targets: DetectionTargets) -> int:
        scores = dense[..., 4:]
        best = scores.flatten(1).argmax(1) % scores.shape[2]
        return int(sum(int(b) == int(labels[0]) for b, labels in zip(best, targets.labels)))

    def test_metrics(self, dense: torch.Tensor, targets: DetectionTargets) -> dict[str, float]:
        classes = dense.shape[2] - 4
        side = int(round(math.sqrt(dense.shape[1])))
        size = side * self.stride
        found = peak_detections(dense[..., :4], dense[..., 4:], (side, side))
        detections = [Detections(inclusive_boxes(b, size), s.double().numpy(), l.numpy()) for b, s, l in found]
        truth = [GroundTruthBoxes(np.asarray(b, np.int64), np.asarray(l, np.int64)) for b, l in zip(targets.boxes, targets.labels)]
        result = detection_ap(truth, detections, classes)
        return {"ap50": result.ap50, "ap": result.ap}
