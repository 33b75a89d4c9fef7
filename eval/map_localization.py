"""Localization of a map without thresholds: does its mass or its peak fall on the object?

All functions take ``maps`` ``(N, H, W)`` (non-negative, as the runtime returns them, in [0, 1]) and
ground-truth ``masks`` ``(N, H, W)`` (boolean, True on the object), and return one value per image.
Empty masks are an error (Quantus returns NaN there). Sets with boxes only get masks from
:func:`boxes_to_masks`.

- :func:`pointing_game`: Zhang et al., "Top-down Neural Attention by Excitation Backprop" (ECCV 2016);
- :func:`energy_pointing_game`: Wang et al., "Score-CAM" (CVPR-W 2020), the energy-based pointing
  game; Arras et al. (2022) call it Relevance Mass Accuracy;
- :func:`relevance_rank_accuracy`: Arras et al., "CLEVR-XAI" (Information Fusion 2022);
- :func:`pixel_auc`: ROC AUC of the map as a pixel classifier of the mask (Fong & Vedaldi 2017);
- :func:`sparseness`: Chalasani et al., "Concise Explanations of Neural Networks using Adversarial
  Training" (ICML 2020): the Gini index of the map.

>>> import numpy as np
>>> maps = np.zeros((1, 4, 4)); maps[0, 0, 0] = 1.0; maps[0, 3, 3] = 0.5
>>> masks = np.zeros((1, 4, 4), bool); masks[0, 2:, 2:] = True
>>> pointing_game(maps, masks).tolist(), energy_pointing_game(maps, masks).round(3).tolist()
([False], [0.333])
>>> pointing_game(maps, masks, tolerance=3).tolist()  # (0, 0) is sqrt(8) pixels from (2, 2)
[True]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage, stats

from onnxcam.eval.boxes import check_boxes
from onnxcam.eval.map_arrays import check_maps, check_masks


def _nonnegative(maps: np.ndarray) -> np.ndarray:
    """The checked maps, which must be >= 0 (a signed map is scored on its magnitude: pass |map|)."""
    maps = check_maps(maps)
    negative = np.flatnonzero((maps < 0).any(axis=(1, 2)))
    if negative.size:
        raise ValueError(f"maps of images {negative[:10].tolist()} have negative values; pass np.abs(maps)")
    return maps


def pointing_game(maps: np.ndarray, masks: np.ndarray, tolerance: float = 0) -> np.ndarray:
    """Whether each map points at the object: ``(N,)`` bool.

    A hit when any pixel where the map takes its maximum lies inside the mask or within
    ``tolerance`` pixels of it (Euclidean distance between pixel centres to the nearest mask
    pixel; Zhang et al. use 15 px on 224 px images; Quantus' ``PointingGame`` is ``tolerance=0``).
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps.shape)
    peaks = maps == maps.max(axis=(1, 2), keepdims=True)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    if tolerance > 0:
        # distance_transform_edt gives each background pixel its distance to the nearest mask pixel.
        masks = np.stack([ndimage.distance_transform_edt(~mask) <= tolerance for mask in masks])
    return (peaks & masks).any(axis=(1, 2))


def energy_pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The fraction of each map's mass inside the mask, ``sum(map * mask) / sum(map)``: ``(N,)``
    float64 in [0, 1]; 0 for an all-zero map."""
    maps = _nonnegative(maps)
    masks = check_masks(masks, maps.shape)
    total = maps.sum(axis=(1, 2))
    inside = (maps * masks).sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def relevance_rank_accuracy(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The fraction of the ``|G|`` highest-valued pixels that lie in the mask ``G``: ``(N,)``
    float64 in [0, 1]. Pixels are ranked by value, ties in row-major pixel order (a stable sort;
    Quantus' unstable ``argsort`` may break ties at the cut differently)."""
    maps = check_maps(maps)
    masks = check_masks(masks, maps.shape)
    n = len(maps)
    flat_masks = masks.reshape(n, -1)
    order = np.argsort(-maps.reshape(n, -1), axis=1, kind="stable")
    sizes = flat_masks.sum(axis=1)
    in_top = np.arange(order.shape[1])[None, :] < sizes[:, None]
    return (np.take_along_axis(flat_masks, order, axis=1) & in_top).sum(axis=1) / sizes


def pixel_auc(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """ROC AUC of the map's values as a score of "pixel in the mask": ``(N,)`` float64 in [0, 1].

    Computed as the Mann-Whitney statistic with average ranks for ties, which equals the area under
    the ROC curve with ties counted half (scikit-learn's ``roc_auc_score``). Masks covering the
    whole image have no negatives and are an error.
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps.shape, allow_full=False)
    n = len(maps)
    flat_masks = masks.reshape(n, -1)
    ranks = stats.rankdata(maps.reshape(n, -1), axis=1)
    positives = flat_masks.sum(axis=1).astype(np.float64)
    negatives = flat_masks.shape[1] - positives
    rank_sum = (ranks * flat_masks).sum(axis=1)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def sparseness(maps: np.ndarray) -> np.ndarray:
    """The Gini index of each map's magnitudes, ``sum_k (2k - n - 1) a_(k) / (n sum_k a_(k))`` with
    ``a_(1) <= ... <= a_(n)`` sorted: ``(N,)`` float64 in [0, 1), 0 for a uniform or all-zero map,
    near 1 when one pixel holds all the mass. (Quantus adds 1e-7 to every value to avoid 0/0.)"""
    values = np.sort(np.abs(check_maps(maps)).reshape(len(maps), -1), axis=1)
    n = values.shape[1]
    weights = 2 * np.arange(1, n + 1) - n - 1
    total = values.sum(axis=1)
    return np.divide(values @ weights, n * total, out=np.zeros_like(total), where=total > 0)


def boxes_to_masks(boxes: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Masks ``(N, H, W)`` bool from each image's boxes: ``boxes[i]`` is an ``(M_i, 4)`` array of
    ``(x0, y0, x1, y1)`` boxes with inclusive bounds (:mod:`onnxcam.eval.boxes`), the mask the union
    of its boxes. ``shape`` is ``(H, W)``; a box reaching past it is an error."""
    height, width = shape
    masks = np.zeros((len(boxes), height, width), dtype=bool)
    for i, image_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in check_boxes(image_boxes, f"boxes[{i}]"):
            if x1 >= width or y1 >= height:
                raise ValueError(f"boxes[{i}] has box {(x0, y0, x1, y1)} outside the {height}x{width} image")
            masks[i, y0 : y1 + 1, x0 : x1 + 1] = True
    return masks
