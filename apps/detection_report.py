"""The detection section of a report: a model's class maps on the multi-object set, scored as detections.

For every image of a :class:`~onnxcam.eval.datasets.MultiObjectDataset`, each method x weighting
explains the classes present (``classes="present"``, the GT-known framing) or the classes the
model predicts (``"predicted"``: sigmoid probability >= 0.5, at least the top-1). Each map's box
scores are multiplied by the class's probability, so that boxes rank across images by how sure
the model is of the class. Every setting of :func:`onnxcam.eval.detection_sweep.sweep_detection_ap`
then gives one row. :func:`best_rows` keeps each method x weighting's best setting, the row the
report shows with its ``setting`` column.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from onnxcam.apps.drawing import PREDICTED_COLOUR, TRUTH_COLOUR, draw_box
from onnxcam.eval.datasets.multi_object import MultiObjectDataset
from onnxcam.eval.detection_ap import GroundTruthBoxes
from onnxcam.eval.detection_sweep import DetectionSetting, predicted_classes, sweep_detection_ap
from onnxcam.eval.detections import Detections
from onnxcam.runtime import CamSession

CLASS_CHOICES = ("present", "predicted")


def _probabilities(logits: np.ndarray, multilabel: bool) -> np.ndarray:
    """(N, K) logits -> class probabilities: one sigmoid per class, or a softmax."""
    logits = logits.astype(np.float64)
    if multilabel:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def class_maps(
    session: CamSession,
    data: MultiObjectDataset,
    method: str,
    weightings: Sequence[str],
    classes: str = "present",
    multilabel: bool = True,
    batch_size: int = 32,
) -> tuple[dict[str, list[dict[int, np.ndarray]]], list[dict[int, float]]]:
    """``({weighting: per image {class: (H, W) map}}, per image {class: probability})``.

    One forward pass gives every image's probabilities; then each (image, class) pair to explain
    is one row of a batch (the same image repeated with another ``class_index``).
    """
    if classes not in CLASS_CHOICES:
        raise ValueError(f"classes must be one of {CLASS_CHOICES}, got {classes!r}")
    logits = session.forward_logits(session.prepare(list(data.images))[0])
    probabilities = _probabilities(logits, multilabel)
    pairs = [
        (i, c)
        for i in range(len(data))
        for c in (sorted(set(data.labels[i].tolist())) if classes == "present" else predicted_classes(probabilities[i]))
    ]
    maps: dict[str, list[dict[int, np.ndarray]]] = {w: [{} for _ in range(len(data))] for w in weightings}
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        images = [data.images[i] for i, _ in chunk]
        results = session.explain_weightings(images, method, weightings, class_index=[c for _, c in chunk])
        for weighting, result in results.items():
            for (i, c), heatmap in zip(chunk, result.maps):
                maps[weighting][i][c] = heatmap
    scores = [{c: float(probabilities[i, c]) for c in next(iter(maps.values()))[i]} for i in range(len(data))]
    return maps, scores


def ground_truth(data: MultiObjectDataset) -> list[GroundTruthBoxes]:
    """The set's boxes and labels as :func:`~onnxcam.eval.detection_ap.detection_ap` takes them."""
    return [GroundTruthBoxes(boxes, labels) for boxes, labels in zip(data.boxes, data.labels)]


def detection_rows(
    session: CamSession,
    data: MultiObjectDataset,
    methods: Sequence[str],
    weightings: Sequence[str],
    classes: str = "present",
    multilabel: bool = True,
    settings: Sequence[DetectionSetting] | None = None,
) -> pd.DataFrame:
    """Every method x weighting x setting: ``method``, ``weighting``, ``classes`` and the columns of
    :func:`~onnxcam.eval.detection_sweep.sweep_detection_ap` (``setting``, ``AP``, ``AP50``, ...).
    A method takes the weightings it accepts among ``weightings``."""
    from onnxcam.runtime.methods import get_method

    truth = ground_truth(data)
    tables = []
    for method in methods:
        accepted = [w for w in weightings if w in get_method(method).weightings]
        maps, scores = class_maps(session, data, method, accepted, classes, multilabel)
        for weighting in accepted:
            table = sweep_detection_ap(maps[weighting], truth, len(data.class_names), settings, scores)
            tables.append(table.assign(method=method, weighting=weighting, classes=classes))
    table = pd.concat(tables, ignore_index=True)
    return table[["method", "weighting", "classes", *[c for c in table.columns if c not in ("method", "weighting", "classes")]]]


def best_rows(table: pd.DataFrame, metric: str = "AP") -> pd.DataFrame:
    """Each method x weighting x classes' row with the highest ``metric``, with its ``setting``."""
    best = table.loc[table.groupby(["method", "weighting", "classes"], sort=False)[metric].idxmax()]
    return best.reset_index(drop=True)


def draw_detections(image: np.ndarray, truth: GroundTruthBoxes, detections: Detections, top: int | None = None) -> np.ndarray:
    """A copy of ``image`` with the ground-truth boxes (green) and the ``top`` best detections (red);
    draw the same image with the detections before and after NMS to show what NMS removes."""
    order = np.argsort(-detections.scores, kind="stable")[:top]
    for box in truth.boxes:
        image = draw_box(image, box, TRUTH_COLOUR, width=1)
    for index in order:
        image = draw_box(image, detections.boxes[index], PREDICTED_COLOUR, width=1)
    return image
