"""Boxes from heatmaps, and IoU between box sets.

Conventions used throughout ``onnxcam.eval``:

- a heatmap is a 2-D array indexed ``[y, x]`` (rows, then columns);
- a box is ``(x0, y0, x1, y1)`` in integer pixel coordinates with **inclusive** bounds: the box
  covers the pixels ``x0 <= x <= x1`` and ``y0 <= y <= y1``, so its width is ``x1 - x0 + 1``.
  A box with ``x0 == x1`` is one pixel wide, never empty. Box sets are ``(N, 4)`` integer arrays.

The rule here is the one the Grad-CAM and CAM papers state: keep the pixels whose value is at least
``threshold * heatmap.max()``, take the largest 8-connected component of them, return its tight
bounding box. The public WSOL evaluation code uses a slightly different, contour-based rule; see
:mod:`onnxcam.eval.wsol` for that one.
"""

from __future__ import annotations

import cv2
import numpy as np

EMPTY_BOX = np.zeros(4, dtype=np.int64)


def check_boxes(boxes: np.ndarray, name: str = "boxes") -> np.ndarray:
    """Return ``boxes`` as an ``(N, 4)`` int64 array after checking the box convention.

    Accepts a single ``(4,)`` box or an ``(N, 4)`` array of ``(x0, y0, x1, y1)`` inclusive pixel
    boxes. Raises ``ValueError`` if a coordinate is negative, not integral, or if ``x1 < x0`` or
    ``y1 < y0`` (the checks of the WSOL code's ``check_box_convention``).
    """
    array = np.asarray(boxes)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must have shape (4,) or (N, 4), got {np.shape(boxes)}")
    if array.size and not np.array_equal(array, np.round(array)):
        raise ValueError(f"{name} must hold integer pixel coordinates")
    array = array.astype(np.int64)
    if (array < 0).any():
        raise ValueError(f"{name} coordinates must be non-negative")
    if (array[:, 2] < array[:, 0]).any() or (array[:, 3] < array[:, 1]).any():
        raise ValueError(f"{name} must follow the (x0, y0, x1, y1) convention with x1 >= x0, y1 >= y0")
    return array


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Return the ``(N, M)`` matrix of intersection-over-union between two box sets.

    Boxes are ``(x0, y0, x1, y1)`` with inclusive pixel bounds, so side lengths are
    ``x1 - x0 + 1`` and ``y1 - y0 + 1`` (as in the WSOL code's ``calculate_multiple_iou``): two
    identical one-pixel boxes ``(3, 3, 3, 3)`` have IoU 1. ``boxes_a`` is ``(N, 4)`` (or ``(4,)``),
    ``boxes_b`` is ``(M, 4)``; the result is float64 in ``[0, 1]``.
    """
    a = check_boxes(boxes_a, "boxes_a")[:, None, :]
    b = check_boxes(boxes_b, "boxes_b")[None, :, :]
    inter_w = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    inter_h = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    intersection = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return intersection / (area_a + area_b - intersection)


def scale_boxes(boxes: np.ndarray, image_size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
    """Return ``boxes`` rescaled from an image of ``image_size`` to one of ``new_size``.

    Sizes are ``(width, height)``. Every coordinate is multiplied by ``new / old`` along its axis and
    truncated towards zero, ``int(x * new_w / w)``: the WSOL code's ``resize_bbox`` rule, which it
    applies to scale ground-truth boxes to 224 x 224.
    """
    array = check_boxes(boxes)
    (width, height), (new_width, new_height) = image_size, new_size
    factors = np.array([new_width / width, new_height / height] * 2)
    return np.trunc(array.astype(np.float64) * factors).astype(np.int64)


def _check_heatmap(heatmap: np.ndarray) -> np.ndarray:
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {heatmap.shape}")
    if np.isnan(heatmap).any():
        raise ValueError("heatmap contains NaN")
    return heatmap


def foreground_blob_boxes(foreground: np.ndarray) -> tuple[np.ndarray, int]:
    """Return the boxes of a boolean/uint8 mask's 8-connected blobs and the index of the largest.

    Boxes are ``(K, 4)`` tight inclusive boxes ordered by each blob's first pixel in row-major
    order; the index is that of the first blob with the largest pixel count. An empty mask gives
    ``[(0, 0, 0, 0)]`` and index 0.
    """
    mask = np.asarray(foreground)
    mask = (mask if mask.dtype == bool else mask != 0).view(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    stats = stats[1:]
    if len(stats) == 0:
        return EMPTY_BOX[None, :].copy(), 0
    if len(stats) > 1:
        tops = stats[:, cv2.CC_STAT_TOP].astype(np.int64)
        rows = labels[tops] == np.arange(1, len(stats) + 1)[:, None]
        stats = stats[np.argsort(tops * labels.shape[1] + np.argmax(rows, axis=1))]
    x, y, w, h = (stats[:, i].astype(np.int64) for i in range(4))
    boxes = np.stack([x, y, x + w - 1, y + h - 1], axis=1)
    return boxes, int(np.argmax(stats[:, cv2.CC_STAT_AREA]))


def blob_boxes(heatmap: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """Return every blob's box and the index of the largest blob, see :func:`box_from_heatmap`.

    The blobs are the 8-connected components of ``heatmap >= threshold * heatmap.max()`` (none
    when the maximum is ``<= 0``); see :func:`foreground_blob_boxes` for the order and ties.
    """
    heatmap = _check_heatmap(heatmap)
    peak = heatmap.max()
    if peak <= 0:
        return EMPTY_BOX[None, :].copy(), 0
    return foreground_blob_boxes(heatmap >= threshold * peak)


def box_from_heatmap(heatmap: np.ndarray, threshold: float = 0.15) -> np.ndarray:
    """Return the ``(4,)`` box ``(x0, y0, x1, y1)`` (inclusive) of the heatmap's largest blob.

    The foreground is ``heatmap >= threshold * heatmap.max()``; its 8-connected components are
    ranked by pixel count and the tight inclusive bounding box of the largest is returned. Ties go
    to the component whose first pixel comes first in row-major order (topmost, then leftmost).
    A heatmap whose maximum is ``<= 0`` (e.g. all zeros) has no foreground and gives
    ``(0, 0, 0, 0)``, the WSOL code's "no box". ``threshold`` is 0.15 in the Grad-CAM paper and
    0.20 in the CAM paper. Multiplying the heatmap by a positive constant leaves the box unchanged
    (up to floating-point rounding of values exactly at the threshold). Raises ``ValueError`` for a map that is not 2-D or holds NaN.

    Examples
    --------
    >>> m = np.zeros((5, 6)); m[1:3, 2:5] = 1.0
    >>> box_from_heatmap(m).tolist()
    [2, 1, 4, 2]
    """
    boxes, largest = blob_boxes(heatmap, threshold)
    return boxes[largest]


def boxes_from_heatmap(heatmap: np.ndarray, threshold: float = 0.15) -> np.ndarray:
    """Return the ``(K, 4)`` boxes of every blob of ``heatmap >= threshold * heatmap.max()``.

    The multi-contour variant of :func:`box_from_heatmap`: one tight inclusive box per
    8-connected component, ordered by the component's first pixel in row-major order. Holes in a
    component give no box of their own (unlike the WSOL code's ``RETR_TREE`` contours). No
    foreground gives the single box ``(0, 0, 0, 0)``, so ``K >= 1``.
    """
    return blob_boxes(heatmap, threshold)[0]


BLOB_SCORES = ("peak", "mass")
"""How :func:`scored_boxes_from_heatmap` scores a blob: its largest map value, or its sum."""


def scored_boxes_from_heatmap(
    heatmap: np.ndarray, threshold: float = 0.15, score: str = "peak"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(boxes (K, 4) int64, scores (K,) float64)``: every blob's box and its score.

    The blobs and boxes are those of :func:`boxes_from_heatmap` (the 8-connected components of
    ``heatmap >= threshold * heatmap.max()``, tight inclusive boxes, in row-major order of each
    component's first pixel), except that a map with no foreground (maximum ``<= 0``) gives no box,
    ``K = 0``, rather than ``(0, 0, 0, 0)``. A blob's score is the map's largest value on its pixels
    (``score="peak"``) or their sum (``"mass"``): in detection terms, the confidence of the box.

    Examples
    --------
    >>> m = np.zeros((4, 7)); m[1, 1:3] = [1.0, 0.5]; m[2, 5] = 0.8
    >>> boxes, scores = scored_boxes_from_heatmap(m, 0.2, score="mass")
    >>> boxes.tolist(), scores.tolist()
    ([[1, 1, 2, 1], [5, 2, 5, 2]], [1.5, 0.8])
    """
    if score not in BLOB_SCORES:
        raise ValueError(f"score must be one of {BLOB_SCORES}, got {score!r}")
    heatmap = _check_heatmap(heatmap)
    peak = heatmap.max() if heatmap.size else 0.0
    if peak <= 0:
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.float64)
    foreground = (heatmap >= threshold * peak).view(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    flat_labels = labels.ravel()
    values = heatmap.ravel().astype(np.float64)
    if score == "mass":
        scores = np.bincount(flat_labels, weights=values, minlength=count)[1:]
    else:
        scores = np.full(count, -np.inf)
        np.maximum.at(scores, flat_labels, values)
        scores = scores[1:]
    # np.unique's first occurrences give each label's first pixel in row-major order: the order
    # of foreground_blob_boxes, whatever order OpenCV numbered the components in.
    present, first_index = np.unique(flat_labels, return_index=True)
    first_pixel = np.zeros(count, dtype=np.int64)
    first_pixel[present] = first_index  # label 0 (background) is absent when all is foreground
    order = np.argsort(first_pixel[1:], kind="stable")
    x, y, w, h = (stats[1:, i].astype(np.int64)[order] for i in range(4))
    return np.stack([x, y, x + w - 1, y + h - 1], axis=1), scores[order]
