"""One (method, chunk) of an evaluation scored and stored: the result file's format and how it is
filled.

Per image and weighting a chunk file keeps:

- the WSOL protocol's box curves (:func:`onnxcam.eval.scoring.image_iou_curves` on the raw
  layer-resolution map: bicubic to 224 x 224, min-max, the contour rule, boxes scaled to 224),
  packed as one ``uint8`` per threshold: bits 0-1 count the IoU thresholds 0.3/0.5/0.7 that the best
  of all contour boxes reaches (they are nested), bit 2 says the largest contour's box reaches 0.5;
- the fixed-threshold boxes of the CAM / Grad-CAM papers (largest blob of the map at the image's own
  size, at 0.15 and 0.20 of its maximum) and their best IoU with the class's ground-truth boxes;
- with masks, the per-image PxAP pixel histograms;
- the raw map itself (small: the layer's resolution), for overlays.

Arrays are keyed ``<weighting>__<name>``; each file is written atomically (:func:`save_npz`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from onnxcam.atomic_write import write_atomically
from onnxcam.eval.boxes import box_from_heatmap, box_iou
from onnxcam.eval.localization import CAM_THRESHOLD, GRAD_CAM_THRESHOLD
from onnxcam.eval.scoring import image_iou_curves
from onnxcam.eval.wsol import V2_IOU_THRESHOLDS, WSOL_SIZE, pixel_histograms, scoremap_thresholds, wsol_scoremap

FIXED_THRESHOLDS = (GRAD_CAM_THRESHOLD, CAM_THRESHOLD)
LARGEST_BIT = 4


def pack_levels(largest: np.ndarray, every: np.ndarray) -> np.ndarray:
    """Per-threshold IoU curves ``(N, T)`` -> ``uint8`` ``(N, T)`` codes (see the module docstring).

    ``code & 3`` is the number of IoU thresholds in :data:`V2_IOU_THRESHOLDS` reached by ``every``;
    ``code & 4`` is set where ``largest >= 0.5``.
    """
    levels = sum((np.asarray(every) >= delta).astype(np.uint8) for delta in V2_IOU_THRESHOLDS)
    return (levels + LARGEST_BIT * (np.asarray(largest) >= 0.5)).astype(np.uint8)


def unpack_hits(codes: np.ndarray, metric: str) -> np.ndarray:
    """Boolean ``(N, T)`` hits of a box metric from :func:`pack_levels` codes.

    ``metric``: ``"MaxBoxAcc"`` (largest box, IoU 0.5) or ``"MaxBoxAccV2_IoU30"`` / ``_IoU50`` /
    ``_IoU70`` (every box at that IoU).
    """
    if metric == "MaxBoxAcc":
        return (codes & LARGEST_BIT) != 0
    rank = {f"MaxBoxAccV2_IoU{round(d * 100)}": k + 1 for k, d in enumerate(V2_IOU_THRESHOLDS)}
    if metric not in rank:
        raise ValueError(f"unknown box metric {metric!r}; valid: MaxBoxAcc, {', '.join(rank)}")
    return (codes & 3) >= rank[metric]


@dataclass(frozen=True)
class ChunkTruth:
    """What scoring one chunk needs besides the maps (picklable, for the worker processes):
    per image its ground-truth boxes ``(M, 4)``, its ``(width, height)`` and, optionally, its
    boolean ``(H, W)`` mask (a list, or a lazy source of an on-disk set until :meth:`decoded`)."""

    gt_boxes: list[np.ndarray]
    sizes: list[tuple[int, int]]
    masks: Sequence[np.ndarray] | None

    def decoded(self) -> ChunkTruth:
        """The truth with every mask read (once, where a worker scores the chunk)."""
        if self.masks is None:
            return self
        return replace(self, masks=[np.asarray(self.masks[i]) for i in range(len(self.masks))])

    def rows(self, images: Sequence[int]) -> ChunkTruth:
        """The truth of ``images`` (indices into the chunk, repeats allowed), in that order."""
        return ChunkTruth(
            gt_boxes=[self.gt_boxes[i] for i in images],
            sizes=[self.sizes[i] for i in images],
            masks=None if self.masks is None else [self.masks[i] for i in images],
        )


def score_variant(raw: np.ndarray, maps: Sequence[np.ndarray], truth: ChunkTruth, step: float) -> dict[str, np.ndarray]:
    """Score maps, one per image of ``truth``: raw maps ``(n, h, w)``, maps at image size.

    Every array returned has one row per map, computed from that map and its image's truth alone.
    """
    thresholds = scoremap_thresholds(step)
    largest, every, true_hists, false_hists = [], [], [], []
    for i, raw_map in enumerate(raw):
        scoremap = wsol_scoremap(raw_map)
        curves = image_iou_curves(scoremap, truth.gt_boxes[i], truth.sizes[i], "wsol", thresholds)
        largest.append(curves.largest)
        every.append(curves.every)
        if truth.masks is not None:
            mask = truth.masks[i].astype(np.uint8)
            mask224 = cv2.resize(mask, (WSOL_SIZE, WSOL_SIZE), interpolation=cv2.INTER_NEAREST) > 0
            t, f = pixel_histograms(scoremap, mask224, thresholds)
            true_hists.append(t)
            false_hists.append(f)
    scored: dict[str, np.ndarray] = {"levels": pack_levels(largest, every), "raw": raw.astype(np.float32)}
    for tau in FIXED_THRESHOLDS:
        boxes = np.stack([box_from_heatmap(m, tau) for m in maps])
        scored[f"box_{tau:.2f}"] = boxes
        scored[f"iou_{tau:.2f}"] = np.array([box_iou(b, g).max() for b, g in zip(boxes, truth.gt_boxes)])
    if truth.masks is not None:
        scored["px_true"] = np.array(true_hists, dtype=np.int32)
        scored["px_false"] = np.array(false_hists, dtype=np.int32)
    return scored


def distinct_maps(variants: dict[str, tuple[np.ndarray, Sequence[np.ndarray]]]) -> tuple[list[tuple[str, int]], dict[str, np.ndarray]]:
    """The maps of a chunk worth scoring: each image's maps that differ from one another.

    ``variants``: per weighting, raw maps ``(n, h, w)`` and the maps at image size. Returns the
    ``(weighting, image)`` of each distinct map, and per weighting the ``(n,)`` positions in that
    list of its images' maps (equal raw maps and equal maps of the same image share a position:
    Grad-CAM++'s ``relu`` and ``abs`` maps, say, whenever the signed map is nowhere negative).
    """
    first: dict[tuple[int, bytes, bytes], int] = {}
    distinct: list[tuple[str, int]] = []
    positions = {}
    for weighting, (raw, maps) in variants.items():
        picks = []
        for image in range(len(raw)):
            key = (image, raw[image].tobytes(), np.asarray(maps[image]).tobytes())
            if key not in first:
                first[key] = len(distinct)
                distinct.append((weighting, image))
            picks.append(first[key])
        positions[weighting] = np.array(picks, dtype=np.int64)
    return distinct, positions


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an ``.npz`` atomically, uncompressed: the raw maps of the input-gradient
    methods are noise to zlib (9.8 instead of 11.1 MB a chunk) and cost it half a second."""

    def save(temporary: str) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    return write_atomically(path, save)


def score_chunk(
    path: Path,
    start: int,
    variants: dict[str, tuple[np.ndarray, list[np.ndarray]]],
    truth: ChunkTruth,
    step: float,
    more: Callable[[list[np.ndarray], list[int]], dict[str, np.ndarray]] | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Score every weighting of one (method, chunk) and write ``path``.

    Maps that another weighting already gave for the same image are scored once (:func:`distinct_maps`).
    ``more(maps, images)``, given, scores the distinct maps (at image size) of the chunk's
    ``images`` further (:mod:`onnxcam.eval.chunk_metrics`): one row per map for each of its keys,
    stored per weighting like the box metrics. ``extra`` arrays are stored as they are (read after
    ``more`` ran: it may add its own, such as the seconds it took).
    """
    distinct, positions = distinct_maps(variants)
    raw = np.stack([variants[weighting][0][image] for weighting, image in distinct])
    maps = [variants[weighting][1][image] for weighting, image in distinct]
    images = [image for _, image in distinct]
    scored = score_variant(raw, maps, truth.rows(images), step)
    if more is not None:
        scored.update(more(maps, images))
    arrays: dict[str, np.ndarray] = {"start": np.array(start), **(extra or {})}
    for weighting, picks in positions.items():
        for key, value in scored.items():
            arrays[f"{weighting}__{key}"] = value[picks]
    return save_npz(path, arrays)
