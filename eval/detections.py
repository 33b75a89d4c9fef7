"""Maps to detections: scored boxes from every class's map, then non-maximum suppression.

The detection framing of the R-CNN family: an image gives many scored, labelled boxes; boxes of
one class that overlap a better one (IoU above a threshold) are suppressed. Boxes are inclusive
``(x0, y0, x1, y1)`` integer pixel boxes as everywhere in :mod:`onnxcam.eval`; IoU is
:func:`onnxcam.eval.boxes.box_iou` (side lengths ``x1 - x0 + 1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from onnxcam.eval.boxes import box_iou, check_boxes, scored_boxes_from_heatmap


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """Greedy non-maximum suppression: the ``(M,)`` int64 indices of the boxes kept.

    ``boxes`` ``(N, 4)`` inclusive, ``scores`` ``(N,)``. Boxes are visited by decreasing score
    (ties: lower index first); a box is kept unless its IoU with a box already kept *exceeds*
    ``iou_threshold`` (a box at exactly the threshold stays). The indices come highest score first.
    This is OpenCV's ``cv2.dnn.NMSBoxes`` rule for rectangles ``(x0, y0, x1 - x0 + 1, y1 - y0 + 1)``
    with ``eta=1`` and no score filter (see docs/detection.md for where the two differ).

    Examples
    --------
    >>> boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [20, 20, 29, 29]])
    >>> nms(boxes, np.array([0.9, 0.8, 0.7])).tolist()
    [0, 2]
    """
    boxes = check_boxes(boxes)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(boxes),):
        raise ValueError(f"scores must have shape ({len(boxes)},) to match boxes, got {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    order = np.argsort(-scores, kind="stable")
    overlaps = box_iou(boxes, boxes) > iou_threshold
    suppressed = np.zeros(len(boxes), dtype=bool)
    kept = []
    for index in order:
        if not suppressed[index]:
            kept.append(index)
            suppressed |= overlaps[index]
    return np.asarray(kept, dtype=np.int64)


@dataclass(frozen=True)
class Detections:
    """One image's detections: ``boxes`` ``(D, 4)`` inclusive int64, ``scores`` ``(D,)`` float64,
    ``labels`` ``(D,)`` int64 class indices."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.int64), np.zeros(0), np.zeros(0, np.int64))


def detections_from_maps(
    maps: Mapping[int, np.ndarray],
    thresholds: float | Sequence[float] = 0.15,
    iou_threshold: float | None = 0.5,
    score: str = "peak",
    class_scores: Mapping[int, float] | None = None,
) -> Detections:
    """One image's detections from one ``(H, W)`` map per class: ``{class index: map}``.

    Each map gives the scored blob boxes of :func:`~onnxcam.eval.boxes.scored_boxes_from_heatmap`
    at every threshold of ``thresholds`` (several thresholds give nested candidates, which is what
    NMS chooses among), each score times ``class_scores[c]`` when given (e.g. the class's
    probability, so that boxes of a confident class rank first across images); then :func:`nms`
    at ``iou_threshold`` within each class (``None``: no suppression, the "before NMS" set).
    Detections come class by class in the order of ``maps``, each class highest score first.
    """
    thresholds = [thresholds] if np.isscalar(thresholds) else list(thresholds)
    parts = []
    for label, heatmap in maps.items():
        found = [scored_boxes_from_heatmap(heatmap, threshold, score) for threshold in thresholds]
        boxes = np.concatenate([b for b, _ in found]) if found else np.zeros((0, 4), np.int64)
        scores = np.concatenate([s for _, s in found]) if found else np.zeros(0)
        if class_scores is not None:
            scores = scores * float(class_scores[label])
        keep = nms(boxes, scores, iou_threshold) if iou_threshold is not None else np.argsort(-scores, kind="stable")
        parts.append(Detections(boxes[keep], scores[keep], np.full(len(keep), label, dtype=np.int64)))
    if not parts:
        return Detections.empty()
    return Detections(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("boxes", "scores", "labels")))
