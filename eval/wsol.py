"""The WSOL evaluation protocol: MaxBoxAcc, MaxBoxAccV2 and PxAP over a threshold sweep.

Mirrors the public code of Choe et al., "Evaluating Weakly Supervised Object Localization
Methods Right" (CVPR 2020, github.com/clovaai/wsolevaluation, ``evaluation.py``,
``inference.py``, ``util.py``), convention for convention:

- a score map is resized to 224 x 224 with bicubic interpolation (``cv2.INTER_CUBIC``) and
  min-max normalised to ``[0, 1]``; a constant map, or one holding NaN, becomes all zeros
  (:func:`wsol_scoremap`);
- the thresholds are ``np.arange(0, 1, step)``, ``step = 0.001`` in the paper's runs
  (:func:`scoremap_thresholds`);
- at threshold ``tau`` the map is quantised ``u8 = uint8(trunc(map * 255))`` and the foreground is
  ``u8 > int(tau * u8.max())``, strictly greater;
- contours come from ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``, so holes are contours
  too; the largest is the first with the largest ``cv2.contourArea`` (polygon area: a one-pixel-wide
  blob has area 0), in OpenCV's order (which lists later-found contours first). The same boxes
  and largest contour are computed for all thresholds at once from connected components
  (:mod:`onnxcam.eval.component_sweep`), OpenCV settling the rare cuts the components leave open,
  because a noisy map has thousands of contours per sweep;
- a contour's box is ``(x, y, min(x + w, W - 1), min(y + h, H - 1))`` from ``cv2.boundingRect``:
  one pixel wider and taller than the tight inclusive box except at the right and bottom border;
  no contour gives the box ``(0, 0, 0, 0)``;
- IoU uses inclusive pixel coordinates (:func:`onnxcam.eval.boxes.box_iou`), a threshold's IoU for
  an image is the best over its predicted boxes and its ground-truth boxes, and an image counts as
  correct when that IoU is ``>=`` the IoU threshold;
- accuracies are percentages ``100 * correct / images``; MaxBoxAcc is the best over the sweep at
  IoU 0.5 with the largest contour only; MaxBoxAccV2 uses every contour and averages the best
  accuracies found separately at IoU 0.3, 0.5 and 0.7;
- PxAP is the area under the pixel precision-recall curve built from score histograms over the
  bins ``[t_0, t_1), ..., [t_{T-1}, 1), [1, 2), [2, 3]``, as ``MaskEvaluator`` does.

``rule="native"`` swaps the contour rule for :func:`onnxcam.eval.boxes.blob_boxes` (foreground
``map >= tau * max``, 8-connected components by pixel count, tight inclusive boxes, no hole boxes)
and is meant for maps kept at each image's own size; everything else stays as above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import cv2
import numpy as np

from onnxcam.eval.boxes import blob_boxes, box_iou, check_boxes, foreground_blob_boxes
from onnxcam.eval.component_sweep import EMPTY, component_sweep

WSOL_SIZE = 224
V2_IOU_THRESHOLDS = (0.3, 0.5, 0.7)
Rule = Literal["wsol", "native"]


def scoremap_thresholds(step: float = 0.001) -> np.ndarray:
    """Return the sweep ``np.arange(0, 1, step)`` of score-map thresholds, float64 ``(T,)``."""
    if not 0 < step < 1:
        raise ValueError(f"threshold step must be in (0, 1), got {step}")
    return np.arange(0, 1, step)


def normalize_scoremap(scoremap: np.ndarray) -> np.ndarray:
    """Return ``(m - m.min()) / (m.max() - m.min())`` as float64, the WSOL ``normalize_scoremap``.

    A map holding NaN, or a constant map, becomes zeros (of the same shape).
    """
    cam = np.array(scoremap, dtype=np.float64)
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def wsol_scoremap(scoremap: np.ndarray, size: int = WSOL_SIZE) -> np.ndarray:
    """Return a raw 2-D map resized to ``size x size`` (bicubic, float64) and min-max normalised."""
    cam = np.asarray(scoremap, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"score map must be 2-D, got shape {cam.shape}")
    return normalize_scoremap(cv2.resize(cam, (size, size), interpolation=cv2.INTER_CUBIC))


def check_scoremap(scoremap: np.ndarray) -> np.ndarray:
    """Return ``scoremap`` as float64 after the WSOL validity checks: 2-D, no NaN, in ``[0, 1]``."""
    cam = np.asarray(scoremap, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"score map must be 2-D, got shape {cam.shape}")
    if np.isnan(cam).any():
        raise ValueError("score map must not contain NaN")
    if cam.size and (cam.min() < 0 or cam.max() > 1):
        raise ValueError(f"score map must lie in [0, 1], got [{cam.min()}, {cam.max()}]")
    return cam


Crop = tuple[int, int, int, int]
"""A window ``(x0, y0, x1, y1)`` of a map, exclusive ends: rows ``y0:y1``, columns ``x0:x1``."""


def foreground_contours(quantised: np.ndarray, cut: int, crop: Crop | None = None) -> tuple[np.ndarray, ...]:
    """The WSOL contours of the foreground ``quantised > cut``, in OpenCV's order.

    ``quantised``: uint8 ``(H, W)``. ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` runs on the
    ``crop`` window only (default: the whole map); the points come back in the whole map's frame.
    A window holding every foreground pixel with one pixel of margin (or reaching the map's border)
    gives exactly the contours, order and points of the whole map (OpenCV scans rows, then columns,
    and follows each border through its 8 neighbours, none of which lies outside that window).
    """
    x0, y0, x1, y1 = crop or (0, 0, quantised.shape[1], quantised.shape[0])
    # cv2.threshold with THRESH_BINARY keeps u8 > cut, strictly, as the WSOL code does.
    _, foreground = cv2.threshold(quantised[y0:y1, x0:x1], cut, 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(foreground, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
    return contours


def contour_geometry(contours: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Bounding rects and polygon areas of OpenCV contours, all in one numpy pass.

    ``contours``: K integer point arrays ``(n_k, 1, 2)`` from ``cv2.findContours``. Returns rects
    ``(K, 4)`` int64 ``(x, y, w, h)`` equal to ``cv2.boundingRect`` (``w = max x - min x + 1``) and
    areas ``(K,)`` float64 equal to ``cv2.contourArea`` (the shoelace formula, exact for integer
    points).
    """
    if len(contours) == 0:
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.float64)
    lengths = np.fromiter(map(len, contours), dtype=np.intp, count=len(contours))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    points = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
    low = np.minimum.reduceat(points, starts, axis=0)
    high = np.maximum.reduceat(points, starts, axis=0)
    following = np.arange(1, len(points) + 1)
    following[ends - 1] = starts  # each polygon closes on its own first point
    cross = points[:, 0] * points[following, 1] - points[following, 0] * points[:, 1]
    areas = np.abs(np.add.reduceat(cross, starts)) / 2.0
    return np.concatenate([low, high - low + 1], axis=1), areas


class SweepBoxes(NamedTuple):
    """Boxes of a map at every threshold of a sweep, flat: threshold ``t`` has the rows
    ``starts[t]:starts[t] + counts[t]`` of ``boxes`` ``(K, 4)`` (``counts >= 1``; thresholds with the
    same foreground share rows) and its largest box is row ``largest[t]``."""

    boxes: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    largest: np.ndarray

    def at(self, t: int) -> np.ndarray:
        """The ``(counts[t], 4)`` boxes of threshold ``t``."""
        return self.boxes[self.starts[t] : self.starts[t] + self.counts[t]]


def wsol_boxes_of_rects(rects: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """WSOL boxes ``(K, 4)`` of contours' ``boundingRect`` values ``(K, 4)`` ``(x, y, w, h)`` on a
    map of ``shape`` ``(H, W)``: ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``."""
    x, y, w, h = np.asarray(rects, dtype=np.int64).reshape(-1, 4).T
    return np.stack([x, y, np.minimum(x + w, shape[1] - 1), np.minimum(y + h, shape[0] - 1)], axis=1)


def _largest_by_opencv(quantised: np.ndarray, cut: int, boxes: np.ndarray) -> np.ndarray:
    """The WSOL box ``(4,)`` of the first largest contour of ``quantised > cut`` by OpenCV itself,
    searched in the window one pixel around the cut's WSOL ``boxes`` ``(K, 4)``."""
    height, width = quantised.shape
    # A box ends one pixel past its contour (or at the border): +1 more for the window's margin.
    window = (
        max(int(boxes[:, 0].min()) - 1, 0), max(int(boxes[:, 1].min()) - 1, 0),
        min(int(boxes[:, 2].max()) + 1, width), min(int(boxes[:, 3].max()) + 1, height),
    )
    rects, areas = contour_geometry(foreground_contours(quantised, cut, window))
    return wsol_boxes_of_rects(rects[int(np.argmax(areas))], quantised.shape)[0]  # the first of equal areas, like max()


def _wsol_sweep_boxes(cam: np.ndarray, thresholds: np.ndarray) -> SweepBoxes:
    quantised = (cam * 255).astype(np.uint8)
    cuts, cut_of = np.unique(np.trunc(thresholds * int(quantised.max())).astype(np.int64), return_inverse=True)
    found = component_sweep(quantised, cuts)
    u, x0, y0, x1, y1 = found.outer.T
    outer = wsol_boxes_of_rects(np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1), cam.shape)
    hole_u, hx0, hy0, hx1, hy1 = found.holes.T
    # A hole's border runs through the foreground pixels around it: its rect is one pixel larger.
    holes = wsol_boxes_of_rects(np.stack([hx0 - 1, hy0 - 1, hx1 - hx0 + 3, hy1 - hy0 + 3], axis=1), cam.shape)
    empty = np.flatnonzero(found.largest == EMPTY)  # no contour: the box (0, 0, 0, 0)
    cut_of_row = np.concatenate([u, hole_u, empty])
    order = np.argsort(cut_of_row, kind="stable")
    boxes = np.concatenate([outer, holes, np.zeros((len(empty), 4), dtype=np.int64)])[order]
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    counts = np.bincount(cut_of_row, minlength=len(cuts))
    starts = np.cumsum(counts) - counts
    largest = position[np.maximum(found.largest, 0)]  # every cut has a row: an empty one its (0, 0, 0, 0)
    largest[empty] = position[len(u) + len(hole_u) + np.arange(len(empty))]
    for cut in np.flatnonzero(found.ask_opencv).tolist():
        segment = boxes[starts[cut] : starts[cut] + counts[cut]]
        box = _largest_by_opencv(quantised, int(cuts[cut]), segment)
        largest[cut] = starts[cut] + int(np.flatnonzero((segment == box).all(axis=1))[0])
    return SweepBoxes(boxes, starts[cut_of], counts[cut_of], largest[cut_of])


def _native_sweep_boxes(cam: np.ndarray, thresholds: np.ndarray) -> SweepBoxes:
    if cam.max() <= 0:
        per_threshold = [blob_boxes(cam, 0.0)] * len(thresholds)
    else:
        foreground = np.empty(cam.shape, dtype=bool)
        peak = cam.max()
        per_threshold = [foreground_blob_boxes(np.greater_equal(cam, tau * peak, out=foreground)) for tau in thresholds]
    counts = np.array([len(boxes) for boxes, _ in per_threshold], dtype=np.int64)
    starts = np.cumsum(counts) - counts
    largest = starts + np.array([index for _, index in per_threshold], dtype=np.int64)
    return SweepBoxes(np.concatenate([boxes for boxes, _ in per_threshold]), starts, counts, largest)


def sweep_boxes(scoremap: np.ndarray, thresholds: Sequence[float], rule: Rule = "wsol") -> SweepBoxes:
    """The boxes of a ``[0, 1]`` map at every threshold, by the WSOL contour rule or the native
    blob rule (see the module docstring)."""
    cam = check_scoremap(scoremap)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if rule == "wsol":
        return _wsol_sweep_boxes(cam, thresholds)
    if rule == "native":
        return _native_sweep_boxes(cam, thresholds)
    raise ValueError(f"unknown box rule {rule!r}; expected 'wsol' or 'native'")


def wsol_boxes_from_scoremap(
    scoremap: np.ndarray, thresholds: Sequence[float], multi_contour: bool = False
) -> list[np.ndarray]:
    """Return, per threshold, the ``(K, 4)`` inclusive boxes the WSOL code estimates.

    ``scoremap`` is 2-D in ``[0, 1]`` (see :func:`check_scoremap`); the rule is the module's
    (uint8 quantisation, strict ``>``, ``RETR_TREE`` contours, ``boundingRect`` boxes clipped to
    ``W - 1``, ``H - 1``). With ``multi_contour=False`` each entry holds the largest contour's
    box only (``K = 1``); with ``True`` one box per contour, holes included, components before holes
    (not OpenCV's order: only the set and the largest count). No contour gives
    ``[(0, 0, 0, 0)]``.
    """
    swept = sweep_boxes(scoremap, thresholds, "wsol")
    if multi_contour:
        return [swept.at(t) for t in range(len(swept.starts))]
    return [swept.boxes[index : index + 1] for index in swept.largest.tolist()]


class IouCurves(NamedTuple):
    """Best IoU per threshold for one image: ``largest`` (largest blob only) and ``every`` box."""

    largest: np.ndarray
    every: np.ndarray


def iou_curves(
    scoremap: np.ndarray, gt_boxes: np.ndarray, thresholds: Sequence[float], rule: Rule = "wsol"
) -> IouCurves:
    """Return the best IoU with ``gt_boxes`` at each threshold, for the largest and for all boxes.

    ``scoremap`` is 2-D in ``[0, 1]``, ``gt_boxes`` ``(M, 4)`` inclusive boxes in the map's pixel
    frame; the result holds two float64 ``(T,)`` arrays. ``rule="wsol"`` estimates boxes as
    :func:`wsol_boxes_from_scoremap` does; ``rule="native"`` as
    :func:`onnxcam.eval.boxes.blob_boxes` does, at ``tau * max``.
    """
    gt = check_boxes(gt_boxes, "gt_boxes")
    if len(gt) == 0:
        raise ValueError("an image needs at least one ground-truth box")
    swept = sweep_boxes(scoremap, thresholds, rule)
    best = box_iou(swept.boxes, gt).max(axis=1)
    # reduceat needs ascending, non-repeating offsets: one per distinct segment, then expanded.
    segments, segment_of = np.unique(swept.starts, return_inverse=True)
    every = np.maximum.reduceat(best, segments)[segment_of]
    return IouCurves(largest=best[swept.largest], every=every)


@dataclass(frozen=True)
class BoxAccuracy:
    """Box accuracy (percent) along the threshold sweep at one IoU threshold, and its best point."""

    iou_threshold: float
    thresholds: np.ndarray
    curve: np.ndarray

    @property
    def value(self) -> float:
        """The best accuracy over the sweep (percent)."""
        return float(self.curve.max())

    @property
    def best_threshold(self) -> float:
        """The first score-map threshold that reaches :attr:`value`."""
        return float(self.thresholds[int(np.argmax(self.curve))])


@dataclass(frozen=True)
class BoxAccuracyV2:
    """MaxBoxAccV2: the mean of the best accuracies found at several IoU thresholds."""

    per_iou: tuple[BoxAccuracy, ...]

    @property
    def value(self) -> float:
        """Mean of the per-IoU best accuracies (percent)."""
        return float(np.mean([accuracy.value for accuracy in self.per_iou]))


def box_accuracy(ious: np.ndarray, thresholds: Sequence[float], iou_threshold: float = 0.5) -> BoxAccuracy:
    """Return the box accuracy curve from per-image IoU curves ``ious`` of shape ``(N, T)``.

    The curve at threshold ``t`` is ``100 * #{images with ious[:, t] >= iou_threshold} / N``.
    Build ``ious`` by stacking :func:`iou_curves`; ``largest`` gives MaxBoxAcc's curves.
    """
    ious = np.asarray(ious, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if ious.ndim != 2 or ious.shape[1] != len(thresholds) or ious.shape[0] == 0:
        raise ValueError(f"ious must have shape (N >= 1, {len(thresholds)}), got {ious.shape}")
    correct = (ious >= iou_threshold).sum(axis=0)
    return BoxAccuracy(iou_threshold, thresholds, correct * 100.0 / float(ious.shape[0]))


def max_box_acc(ious_largest: np.ndarray, thresholds: Sequence[float]) -> BoxAccuracy:
    """MaxBoxAcc: box accuracy at IoU 0.5 from the largest-blob IoU curves ``(N, T)``."""
    return box_accuracy(ious_largest, thresholds, 0.5)


def max_box_acc_v2(
    ious_every: np.ndarray, thresholds: Sequence[float], iou_thresholds: Sequence[float] = V2_IOU_THRESHOLDS
) -> BoxAccuracyV2:
    """MaxBoxAccV2: from the all-boxes IoU curves ``(N, T)``, best accuracy per IoU threshold, averaged."""
    return BoxAccuracyV2(tuple(box_accuracy(ious_every, thresholds, delta) for delta in iou_thresholds))


@dataclass(frozen=True)
class PixelAP:
    """PxAP (percent) with its precision-recall curve, from the highest threshold down.

    ``thresholds[i]`` is the score a pixel must reach to count as predicted foreground at point
    ``i`` (2.0, 1.0, then the sweep in descending order); ``precision[0]`` is NaN (no prediction).
    """

    value: float
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


def pxap(
    scoremaps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    thresholds: Sequence[float],
    ignore: Sequence[np.ndarray] | None = None,
) -> PixelAP:
    """Return PxAP, the pixel-level average precision of score maps against foreground masks.

    ``scoremaps[i]`` is 2-D in ``[0, 1]``; ``masks[i]`` a boolean map of the same shape (true on
    the object); ``ignore[i]``, if given, marks pixels left out of the count unless they are
    foreground (the WSOL ignore region is ``ignore & ~mask``). Scores are histogrammed over the
    bins ``[t_0, t_1), ..., [t_{T-1}, 1), [1, 2), [2, 3]``; precision and recall are taken at each
    bin's left edge from the top, and PxAP is ``100 * sum_i precision[i] * (recall[i] - recall[i-1])``
    over the points where something is predicted. Raises ``ValueError`` when no pixel is foreground.
    """
    edges = pixel_histogram_edges(thresholds)
    true_hist = np.zeros(len(edges) - 1)
    false_hist = np.zeros(len(edges) - 1)
    ignore = [None] * len(scoremaps) if ignore is None else ignore
    if not len(scoremaps) == len(masks) == len(ignore):
        raise ValueError("scoremaps, masks and ignore must have the same length")
    for scoremap, mask, ignored in zip(scoremaps, masks, ignore):
        true_part, false_part = pixel_histograms(scoremap, mask, thresholds, ignored)
        true_hist += true_part
        false_hist += false_part
    return pxap_from_histograms(true_hist, false_hist, thresholds)


def pixel_histogram_edges(thresholds: Sequence[float]) -> np.ndarray:
    """The PxAP bin edges ``(T + 3,)``: the sweep, then 1, 2, 3 (the WSOL ``MaskEvaluator`` bins)."""
    return np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])


def pixel_histograms(
    scoremap: np.ndarray, mask: np.ndarray, thresholds: Sequence[float], ignore: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One image's ``(true, false)`` pixel-score histograms ``(T + 2,)`` int64 over the PxAP bins.

    ``true`` counts the foreground pixels of ``mask``, ``false`` the others minus ``ignore``.
    PxAP over images is :func:`pxap_from_histograms` of the summed histograms, so per-image
    histograms are all a bootstrap needs.
    """
    cam = check_scoremap(scoremap)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != cam.shape:
        raise ValueError(f"mask shape {mask.shape} differs from score map shape {cam.shape}")
    negative = ~mask if ignore is None else ~mask & ~np.asarray(ignore, dtype=bool)
    edges = pixel_histogram_edges(thresholds)
    return np.histogram(cam[mask], bins=edges)[0], np.histogram(cam[negative], bins=edges)[0]


def pxap_from_histograms(true_hist: np.ndarray, false_hist: np.ndarray, thresholds: Sequence[float]) -> PixelAP:
    """PxAP from summed ``(T + 2,)`` foreground / background histograms (see :func:`pxap`)."""
    edges = pixel_histogram_edges(thresholds)
    true_hist = np.asarray(true_hist, dtype=np.float64)
    false_hist = np.asarray(false_hist, dtype=np.float64)
    tp = true_hist[::-1].cumsum()
    fp = false_hist[::-1].cumsum()
    if tp[-1] <= 0:
        raise ValueError("PxAP needs at least one foreground pixel")
    predicted = tp + fp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / predicted
    recall = tp / tp[-1]
    value = (precision[1:] * np.diff(recall))[predicted[1:] != 0].sum() * 100
    return PixelAP(float(value), edges[-2::-1], precision, recall)
