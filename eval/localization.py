"""Top-1 and GT-known localization accuracy at a fixed heatmap threshold.

The rule of the CAM (threshold 0.20) and Grad-CAM (threshold 0.15) papers: the box of the largest
blob of ``heatmap >= threshold * heatmap.max()`` (:func:`onnxcam.eval.boxes.box_from_heatmap`) is
correct when its IoU with one of the image's ground-truth boxes is ``>= iou_threshold`` (0.5).
GT-known localization maps the ground-truth class; top-1 localization maps the predicted class and
also needs the prediction to be right. Both are percentages of images. Heatmaps and boxes must share
one pixel frame (the boxes given in the heatmap's pixel coordinates).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcam.eval.boxes import box_from_heatmap, box_iou

CAM_THRESHOLD = 0.20
GRAD_CAM_THRESHOLD = 0.15


def localization_hits(
    heatmaps: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    threshold: float = GRAD_CAM_THRESHOLD,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Return a boolean ``(N,)`` array: does image ``i``'s heatmap box hit one of ``gt_boxes[i]``?

    ``heatmaps[i]`` is a 2-D map, ``gt_boxes[i]`` an ``(M_i, 4)`` array of inclusive boxes
    ``(x0, y0, x1, y1)`` of the class the map is for.
    """
    if len(heatmaps) == 0:
        raise ValueError("localization accuracy needs at least one image")
    if len(heatmaps) != len(gt_boxes):
        raise ValueError(f"{len(heatmaps)} heatmaps but {len(gt_boxes)} ground-truth box sets")
    best = [box_iou(box_from_heatmap(m, threshold), boxes).max() for m, boxes in zip(heatmaps, gt_boxes)]
    return np.array(best) >= iou_threshold


def gt_known_loc(
    heatmaps: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    threshold: float = GRAD_CAM_THRESHOLD,
    iou_threshold: float = 0.5,
) -> float:
    """Return GT-known localization accuracy (percent): maps of the ground-truth class."""
    hits = localization_hits(heatmaps, gt_boxes, threshold, iou_threshold)
    return float(hits.sum() * 100.0 / len(hits))


def top1_loc(
    heatmaps: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    predicted: Sequence[int],
    labels: Sequence[int],
    threshold: float = GRAD_CAM_THRESHOLD,
    iou_threshold: float = 0.5,
) -> float:
    """Return top-1 localization accuracy (percent): right top-1 class and a hit.

    ``heatmaps[i]`` maps the predicted class ``predicted[i]``; the image counts when
    ``predicted[i] == labels[i]`` and the box hits one of ``gt_boxes[i]`` (the boxes of class
    ``labels[i]``).
    """
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != (len(heatmaps),) or labels.shape != (len(heatmaps),):
        raise ValueError("predicted and labels must hold one class per heatmap")
    hits = localization_hits(heatmaps, gt_boxes, threshold, iou_threshold) & (predicted == labels)
    return float(hits.sum() * 100.0 / len(hits))


BEST_THRESHOLDS = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2))
"""The thresholds :func:`best_threshold_box` tries, as fractions of the map's maximum."""


def best_threshold_box(
    heatmap: np.ndarray, gt_boxes: np.ndarray, thresholds: Sequence[float] = BEST_THRESHOLDS
) -> tuple[float, np.ndarray, float]:
    """The threshold whose largest-blob box best matches the ground truth: ``(threshold, box, IoU)``.

    ``heatmap`` is 2-D, ``gt_boxes`` ``(M, 4)`` inclusive boxes in its pixel frame. This is the
    oracle choice that MaxBoxAcc makes for a whole data set, made for one image: it shows how well
    the map *could* localize, apart from the fixed threshold of the papers. Ties go to the lowest
    threshold.

    Examples
    --------
    >>> m = np.zeros((10, 10)); m[2:8, 2:8] = 0.3; m[4:6, 4:6] = 1.0
    >>> threshold, box, iou = best_threshold_box(m, np.array([[2, 2, 7, 7]]))
    >>> float(threshold), box.tolist(), float(iou)
    (0.05, [2, 2, 7, 7], 1.0)
    """
    ious = [float(box_iou(box_from_heatmap(heatmap, t)[None], gt_boxes).max()) for t in thresholds]
    best = int(np.argmax(ious))
    return float(thresholds[best]), box_from_heatmap(heatmap, thresholds[best]), ious[best]
