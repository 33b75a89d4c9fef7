"""Score heatmaps against a WSOL-eval metadata split: the engine behind ``onnxcam score``.

Two protocols (see :mod:`onnxcam.eval.wsol` for the rules):

- ``"wsol"``, the public WSOL code's pipeline: each map is resized to 224 x 224 (bicubic) and
  min-max normalised; ground-truth boxes are scaled to 224 x 224 by truncation
  (:func:`onnxcam.eval.boxes.scale_boxes`) and masks by nearest-neighbour; boxes follow the WSOL
  contour rule. Maps may have any size.
- ``"native"``: each map must already have its image's size (``image_sizes.txt``, or the masks'
  size); it is min-max normalised, boxes and masks stay unscaled, and boxes follow the blob rule
  (``map >= tau``, 8-connected components, tight boxes).

In both the thresholds are ``np.arange(0, 1, step)`` and every number is a percentage.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from onnxcam.eval.boxes import scale_boxes
from onnxcam.eval.datasets.wsol_metadata import WSOLMetadata, read_wsol_mask
from onnxcam.eval.wsol import (
    WSOL_SIZE,
    BoxAccuracy,
    IouCurves,
    iou_curves,
    max_box_acc,
    max_box_acc_v2,
    normalize_scoremap,
    pxap,
    scoremap_thresholds,
    wsol_scoremap,
)

Protocol = Literal["wsol", "native"]
PROTOCOLS = ("wsol", "native")


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def _check_ids(maps: Mapping[str, np.ndarray], metadata: WSOLMetadata) -> None:
    missing = [i for i in metadata.image_ids if i not in maps]
    extra = sorted(set(maps) - set(metadata.image_ids))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} image ids have no map (e.g. {missing[:3]})")
        if extra:
            parts.append(f"{len(extra)} maps match no image id (e.g. {extra[:3]})")
        raise ValueError("maps and metadata disagree: " + "; ".join(parts))


def _native_map(image_id: str, raw: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"map of {image_id!r} must be 2-D, got shape {raw.shape}")
    if size is not None and raw.shape != (size[1], size[0]):
        raise ValueError(
            f"protocol 'native' needs maps at image size: {image_id!r} is {size[0]}x{size[1]} "
            f"but its map is {raw.shape[1]}x{raw.shape[0]} (use --protocol wsol to resize)"
        )
    return normalize_scoremap(raw)


def prepared_scoremap(image_id: str, raw: np.ndarray, metadata: WSOLMetadata, protocol: Protocol) -> np.ndarray:
    """Return the map of ``image_id`` as the protocol scores it: float64 in ``[0, 1]``."""
    _check_protocol(protocol)
    if protocol == "wsol":
        return wsol_scoremap(raw)
    return _native_map(image_id, raw, metadata.image_sizes.get(image_id))


def image_iou_curves(
    scoremap: np.ndarray, gt_boxes: np.ndarray, image_size: tuple[int, int] | None, protocol: Protocol, thresholds: np.ndarray
) -> IouCurves:
    """One image's best IoU per threshold, largest box and every box (two ``(T,)`` arrays).

    ``scoremap``: as :func:`prepared_scoremap` returns it; ``gt_boxes``: ``(M, 4)`` inclusive boxes
    in the image's frame, scaled to 224 x 224 by truncation under ``"wsol"``, which needs the
    image's ``(width, height)``.
    """
    if protocol == "wsol":
        if image_size is None:
            raise ValueError("protocol 'wsol' scales boxes to 224x224 and needs the image size")
        gt_boxes = scale_boxes(gt_boxes, image_size, (WSOL_SIZE, WSOL_SIZE))
    return iou_curves(scoremap, gt_boxes, thresholds, rule=protocol)


def box_iou_curves(
    maps: Mapping[str, np.ndarray], metadata: WSOLMetadata, protocol: Protocol = "wsol", step: float = 0.001
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(thresholds (T,), largest (N, T), every (N, T))``: per-image best IoU per threshold.

    Rows follow ``metadata.image_ids``; ``largest`` uses the largest blob's box only (MaxBoxAcc),
    ``every`` all boxes (MaxBoxAccV2). Per-image rows make bootstrap intervals easy.
    """
    _check_protocol(protocol)
    _check_ids(maps, metadata)
    thresholds = scoremap_thresholds(step)
    largest, every = [], []
    for image_id in metadata.image_ids:
        if image_id not in metadata.boxes:
            raise ValueError(f"image {image_id!r} has no ground-truth box in the metadata")
        if protocol == "wsol" and image_id not in metadata.image_sizes:
            raise ValueError(f"protocol 'wsol' scales boxes to 224x224 and needs the size of {image_id!r}")
        scoremap = prepared_scoremap(image_id, maps[image_id], metadata, protocol)
        curves = image_iou_curves(
            scoremap, metadata.boxes[image_id], metadata.image_sizes.get(image_id), protocol, thresholds
        )
        largest.append(curves.largest)
        every.append(curves.every)
    return thresholds, np.array(largest), np.array(every)


def _accuracy_json(accuracy: BoxAccuracy) -> dict[str, object]:
    return {"value": accuracy.value, "best_threshold": accuracy.best_threshold, "curve": accuracy.curve.tolist()}


def score_boxes(
    maps: Mapping[str, np.ndarray], metadata: WSOLMetadata, protocol: Protocol = "wsol", step: float = 0.001
) -> dict[str, object]:
    """Return MaxBoxAcc and MaxBoxAccV2 (percent) with their curves and best thresholds.

    Keys: ``MaxBoxAcc``, ``MaxBoxAccV2``, ``MaxBoxAccV2_IoU30``, ``MaxBoxAccV2_IoU50``,
    ``MaxBoxAccV2_IoU70`` (numbers), and ``curves`` with ``thresholds`` and, per metric,
    ``value``, ``best_threshold`` and ``curve`` (accuracy at every threshold).
    """
    thresholds, largest, every = box_iou_curves(maps, metadata, protocol, step)
    single = max_box_acc(largest, thresholds)
    v2 = max_box_acc_v2(every, thresholds)
    scores: dict[str, object] = {"MaxBoxAcc": single.value, "MaxBoxAccV2": v2.value}
    curves: dict[str, object] = {"thresholds": thresholds.tolist(), "MaxBoxAcc": _accuracy_json(single)}
    for accuracy in v2.per_iou:
        name = f"MaxBoxAccV2_IoU{round(accuracy.iou_threshold * 100)}"
        scores[name] = accuracy.value
        curves[name] = _accuracy_json(accuracy)
    scores["curves"] = curves
    return scores


def score_masks(
    maps: Mapping[str, np.ndarray],
    metadata: WSOLMetadata,
    mask_root: str | Path,
    protocol: Protocol = "wsol",
    step: float = 0.001,
) -> dict[str, object]:
    """Return ``PxAP`` (percent) and its precision-recall curve for a mask-layout split.

    Mask paths are relative to ``mask_root``; the curve lists thresholds from the top down and
    leaves out the first point, where nothing is predicted and precision is undefined.
    """
    _check_protocol(protocol)
    _check_ids(maps, metadata)
    scoremaps, foregrounds, ignores = [], [], []
    for image_id in metadata.image_ids:
        size = (WSOL_SIZE, WSOL_SIZE) if protocol == "wsol" else None
        foreground, ignore = read_wsol_mask(metadata, image_id, mask_root, size)
        raw = maps[image_id]
        if protocol == "native":
            scoremap = _native_map(image_id, raw, (foreground.shape[1], foreground.shape[0]))
        else:
            scoremap = prepared_scoremap(image_id, raw, metadata, protocol)
        scoremaps.append(scoremap)
        foregrounds.append(foreground)
        ignores.append(ignore)
    result = pxap(scoremaps, foregrounds, scoremap_thresholds(step), ignores)
    finite = np.isfinite(result.precision)
    return {
        "PxAP": result.value,
        "curves": {
            "PxAP": {
                "thresholds": result.thresholds[finite].tolist(),
                "precision": result.precision[finite].tolist(),
                "recall": result.recall[finite].tolist(),
            }
        },
    }
