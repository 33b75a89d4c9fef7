"""Class maps scored as detections: every (box threshold, NMS threshold) setting's COCO AP, and the best.

For each image, the maps of the classes to explain (the classes present, or those a multi-label
model predicts: :func:`predicted_classes`) become scored boxes and NMS keeps the best of
overlapping ones (:func:`onnxcam.eval.detections.detections_from_maps`); COCO AP scores them
against the ground truth (:func:`onnxcam.eval.detection_ap.detection_ap`). The settings are
swept and each gives one row whose ``setting`` column names it, e.g. ``box=0.3,nms=0.5``; the
best row by AP is the number to report, with its setting, as MaxBoxAcc reports its best threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from onnxcam.eval.detection_ap import GroundTruthBoxes, detection_ap
from onnxcam.eval.detections import detections_from_maps

BOX_THRESHOLDS: tuple[float | tuple[float, ...], ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, (0.3, 0.5, 0.7), (0.2, 0.4, 0.6, 0.8))
"""Default box thresholds (fractions of a map's maximum); a tuple pools the boxes of several. The
small synthetic objects favour high thresholds (0.5 was the best of 0.2-0.5 in a first run), so
the sweep reaches 0.8."""
NMS_THRESHOLDS: tuple[float | None, ...] = (0.3, 0.5, 0.7, None)
"""Default NMS IoU thresholds; None keeps every box (detections before NMS)."""


@dataclass(frozen=True)
class DetectionSetting:
    """One way of turning maps into detections: the box threshold(s), the NMS IoU threshold (None:
    no NMS) and the blob score (``peak`` or ``mass``)."""

    box_threshold: float | tuple[float, ...]
    nms_threshold: float | None
    score: str = "peak"

    @property
    def name(self) -> str:
        """The ``setting`` column's text, e.g. ``box=0.3,nms=0.5`` or ``box=0.2+0.4,nms=none``."""
        box = "+".join(f"{t:g}" for t in np.atleast_1d(self.box_threshold))
        nms = "none" if self.nms_threshold is None else f"{self.nms_threshold:g}"
        return f"box={box},nms={nms}" + ("" if self.score == "peak" else f",score={self.score}")


def predicted_classes(probabilities: np.ndarray, threshold: float = 0.5, top_k: int | None = None) -> list[int]:
    """The classes a multi-label model predicts from its ``(K,)`` probabilities: those at or above
    ``threshold``, at most ``top_k`` of them (highest first), and at least the top-1."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(-probabilities, kind="stable")
    chosen = [int(k) for k in order if probabilities[k] >= threshold][:top_k] if top_k != 0 else []
    return chosen or [int(order[0])]


def sweep_detection_ap(
    maps: Sequence[Mapping[int, np.ndarray]],
    ground_truth: Sequence[GroundTruthBoxes],
    num_classes: int,
    settings: Sequence[DetectionSetting] | None = None,
    class_scores: Sequence[Mapping[int, float]] | None = None,
) -> pd.DataFrame:
    """One row per setting: ``setting``, ``box_threshold``, ``nms_threshold``, ``score``, ``AP``,
    ``AP50``, ``AP75`` (percent) and ``AP/<class>`` for each class with ground truth.

    maps: per image, ``{class index: (H, W) map}`` in the ground truth's pixel frame (maps at
        input resolution, boxes scaled to it). class_scores: per image ``{class: score}``
        multiplying its boxes' scores (e.g. the class probability), or None. settings: default
        every pair of :data:`BOX_THRESHOLDS` and :data:`NMS_THRESHOLDS`.
    """
    if len(maps) != len(ground_truth):
        raise ValueError(f"{len(maps)} images of maps but {len(ground_truth)} of ground truth")
    if settings is None:
        settings = [DetectionSetting(box, nms) for box in BOX_THRESHOLDS for nms in NMS_THRESHOLDS]
    rows = []
    for setting in settings:
        detections = [
            detections_from_maps(
                image_maps, setting.box_threshold, setting.nms_threshold, setting.score,
                class_scores[i] if class_scores is not None else None,
            )
            for i, image_maps in enumerate(maps)
        ]
        result = detection_ap(ground_truth, detections, num_classes)
        rows.append({
            "setting": setting.name,
            "box_threshold": "+".join(f"{t:g}" for t in np.atleast_1d(setting.box_threshold)),
            "nms_threshold": setting.nms_threshold,
            "score": setting.score,
            "AP": result.ap,
            "AP50": result.ap50,
            "AP75": result.ap75,
            **{f"AP/{k}": v for k, v in sorted(result.per_class.items())},
        })
    return pd.DataFrame(rows)


def best_setting(table: pd.DataFrame, metric: str = "AP") -> pd.Series:
    """The row of :func:`sweep_detection_ap`'s table with the highest ``metric`` (first on ties)."""
    return table.loc[table[metric].idxmax()]
