"""COCO average precision of detections (AP, AP50, AP75, per-class AP), COCO's own evaluation.

The COCO protocol (Lin et al., ECCV 2014; ``pycocotools.cocoeval.COCOeval``, iouType ``bbox``):
detections of each class are ranked by score over all images and matched greedily to unmatched
ground-truth boxes at IoU >= t; precision is interpolated at 101 recall points and averaged over
the IoU thresholds t = 0.50:0.05:0.95 (AP), or taken at t = 0.5 (AP50) and 0.75 (AP75); at most
100 detections per image and class count, area range "all". Values are percentages, as every
accuracy in :mod:`onnxcam.eval`.

Two backends compute the same numbers: ``faster-coco-eval`` (default: its C++ ``COCOeval_faster``
gave the same AP, AP50, AP75 and per-class AP as pycocotools on 2,000 images x 12 classes, in a
quarter to a fifth of the time on this 2-core machine, which matters when a sweep scores many
settings) and ``pycocotools`` (the reference; ``tests/eval/test_detection_ap.py`` checks they agree).

Boxes go to COCO as ``[x0, y0, x1 - x0 + 1, y1 - y0 + 1]``: the continuous box that covers an
inclusive pixel box's pixels exactly, so COCO's continuous IoU equals
:func:`onnxcam.eval.boxes.box_iou` on the pixel boxes.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onnxcam.eval.boxes import check_boxes
from onnxcam.eval.detections import Detections


def coco_xywh(boxes: np.ndarray) -> np.ndarray:
    """Inclusive ``(x0, y0, x1, y1)`` pixel boxes ``(N, 4)`` -> COCO ``[x, y, width, height]``
    float64 ``(N, 4)``, width ``x1 - x0 + 1`` (a one-pixel box is 1 x 1)."""
    array = check_boxes(boxes).astype(np.float64)
    return np.concatenate([array[:, :2], array[:, 2:] - array[:, :2] + 1], axis=1)


@dataclass(frozen=True)
class GroundTruthBoxes:
    """One image's ground truth: ``boxes`` ``(K, 4)`` inclusive int64, ``labels`` ``(K,)`` int64."""

    boxes: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class DetectionAP:
    """COCO AP in percent: ``ap`` (IoU 0.50:0.95), ``ap50``, ``ap75``, and ``per_class``
    ``{class index: AP}`` for every class with a ground-truth box (classes without one have no
    defined AP and are left out, as COCOeval leaves them out of the mean)."""

    ap: float
    ap50: float
    ap75: float
    per_class: dict[int, float]


def _coco_documents(
    ground_truth: Sequence[GroundTruthBoxes], detections: Sequence[Detections], num_classes: int
) -> tuple[dict, list[dict]]:
    """The ground truth as a COCO dataset document and the detections as a COCO results list."""
    images, annotations, results = [], [], []
    for image_id, (truth, found) in enumerate(zip(ground_truth, detections)):
        images.append({"id": image_id})
        for box, label in zip(coco_xywh(truth.boxes), np.asarray(truth.labels)):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                "bbox": box.tolist(), "area": float(box[2] * box[3]), "iscrowd": 0,
            })
        for box, score, label in zip(coco_xywh(found.boxes), found.scores, found.labels):
            results.append({"image_id": image_id, "category_id": int(label), "bbox": box.tolist(), "score": float(score)})
    categories = [{"id": k, "name": str(k)} for k in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _check_labels(labels: np.ndarray, num_classes: int, what: str) -> None:
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} labels must be class indices in [0, {num_classes}), got {labels.min()}..{labels.max()}")


COCO_BACKENDS = ("faster-coco-eval", "pycocotools")


def _coco_evaluation(dataset: dict, results: list[dict], backend: str):
    """A COCOeval (of ``backend``) of ``results`` against ``dataset``, evaluated and summarised."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
            truth = COCO()
            truth.dataset = dataset
            truth.createIndex()
            evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        return evaluation
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(dataset)
        evaluation = COCOeval_faster(truth, truth.loadRes(results), "bbox", print_function=lambda *_: None)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def detection_ap(
    ground_truth: Sequence[GroundTruthBoxes],
    detections: Sequence[Detections],
    num_classes: int,
    backend: str = "faster-coco-eval",
) -> DetectionAP:
    """COCO box AP of ``detections`` against ``ground_truth``, one entry of each per image.

    Labels are class indices in ``[0, num_classes)`` (COCO category ids are the same numbers).
    A class with ground truth and no detection has AP 0; with no detection at all every AP is 0.
    ``backend``: one of :data:`COCO_BACKENDS` (same numbers, see the module docstring).

    Examples
    --------
    >>> truth = [GroundTruthBoxes(np.array([[0, 0, 9, 9]]), np.array([0]))]
    >>> found = [Detections(np.array([[0, 0, 9, 9]]), np.array([0.9]), np.array([0]))]
    >>> detection_ap(truth, found, num_classes=1).ap
    100.0
    """
    if backend not in COCO_BACKENDS:
        raise ValueError(f"backend must be one of {COCO_BACKENDS}, got {backend!r}")
    if len(ground_truth) != len(detections):
        raise ValueError(f"{len(ground_truth)} ground-truth images but {len(detections)} detection lists")
    for truth, found in zip(ground_truth, detections):
        _check_labels(truth.labels, num_classes, "ground-truth")
        _check_labels(found.labels, num_classes, "detection")
    dataset, results = _coco_documents(ground_truth, detections, num_classes)
    present = sorted({a["category_id"] for a in dataset["annotations"]})
    if not results or not present:
        return DetectionAP(0.0, 0.0, 0.0, dict.fromkeys(present, 0.0))
    evaluation = _coco_evaluation(dataset, results, backend)
    # precision: (IoU thresholds, recall points, categories, area ranges, max dets); -1 = no GT.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for column, category in enumerate(evaluation.params.catIds):
        values = precision[:, :, column]
        if category in present:
            per_class[int(category)] = 100.0 * float(values[values > -1].mean())
    stats = 100.0 * np.maximum(evaluation.stats[:3], 0.0)
    return DetectionAP(float(stats[0]), float(stats[1]), float(stats[2]), per_class)
