"""The README's target pictures: the trained ``synthetic_segmenter`` and ``synthetic_detector``,
exported with their targets, explaining one object of a held-out synthetic image each.

- segmentation (``SegmentationRegion``): the image, the model's per-pixel classes, and Grad-CAM
  of the predicted class summed over one object's predicted pixels (``target_mask``);
- detection (``DetectionBoxScore``): an image with several objects, the ground-truth box of one
  (green) and the detection that matched it (red), and Grad-CAM of that detection's score plus
  IoU (``target_box``).

``python -m onnxcam.apps.target_examples SEGMENTER.onnx DETECTOR.onnx OUT_DIR`` writes
``target_segmentation.png`` and ``target_detection.png`` (each panel 192 px, the 96 px model input
enlarged).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from onnxcam.apps.drawing import PREDICTED_COLOUR, TRUTH_COLOUR, draw_box

SCALE = 2
EXAMPLE_SEED = 20_261_207
"""Seed of the example images (not a training seed: those are ``seed * 100_000 + epoch``)."""


def _enlarge(image: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(image, SCALE, axis=0), SCALE, axis=1)


def _class_colours(labels: np.ndarray) -> np.ndarray:
    """(H, W) class labels (0 background) -> RGB uint8, one fixed colour per class."""
    palette = np.random.default_rng(0).integers(60, 255, size=(int(labels.max()) + 1, 3)).astype(np.uint8)
    palette[0] = 0
    return palette[labels]


def _row(panels: list[np.ndarray]) -> np.ndarray:
    gap = np.full((panels[0].shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)


def segmentation_example(path: str | Path, out: Path) -> Path:
    """Explain the largest predicted object of a held-out image through its predicted pixels."""
    from onnxcam.eval.datasets.synthetic import make_synthetic_dataset
    from onnxcam.runtime import CamSession
    from onnxcam.runtime.image_io import heatmap_overlay, write_png

    session = CamSession(path, providers="cpu")
    data = make_synthetic_dataset(1, EXAMPLE_SEED, session.metadata.preprocessing.input_size[0])
    image = data.images[0]
    logits = session.explain([image]).logits  # (1, 1 + K, H, W): the model's own output
    labels = logits[0].argmax(axis=0)
    predicted = np.bincount(labels[labels > 0].ravel(), minlength=logits.shape[1]).argmax()
    mask = (labels == predicted).astype(np.float32)
    result = session.explain([image], "gradcam", class_index=int(predicted), target_mask=mask[None])
    panels = [image, _class_colours(labels), heatmap_overlay(image, result.maps[0])]
    return write_png(out / "target_segmentation.png", _row([_enlarge(p) for p in panels]))


def detection_example(path: str | Path, out: Path) -> Path:
    """Explain the detection that matches the first ground-truth box of a held-out image."""
    from onnxcam.apps.synthetic_dense_objectives import DETECTION_INSTANCES
    from onnxcam.contract import CLASS_INDEX, DETECTION_BOXES, INPUT, LOGITS, TARGET_BOX
    from onnxcam.eval.datasets.synthetic import make_synthetic_dataset
    from onnxcam.runtime import CamSession
    from onnxcam.runtime.image_io import heatmap_overlay, write_png

    session = CamSession(path, providers="cpu")
    size = session.metadata.preprocessing.input_size[0]
    # The first of a few example images that holds several objects: the map must pick the box's.
    data = make_synthetic_dataset(8, EXAMPLE_SEED, size, max_instances=DETECTION_INSTANCES)
    index = next((i for i, boxes in enumerate(data.boxes) if len(boxes) > 1), 0)
    image, truth = data.images[index], data.boxes[index][0]
    result = session.explain([image], "gradcam", target_box=truth)
    batch, _ = session.prepare([image])
    feeds = {INPUT: batch, CLASS_INDEX: result.class_index, TARGET_BOX: truth[None].astype(np.float32)}
    boxes, scores = session.run([DETECTION_BOXES, LOGITS], feeds)
    ious = _iou(truth + np.array([0, 0, 1, 1]), boxes[0])
    candidates = (scores[0].max(axis=1) > 0.05) & (scores[0].argmax(axis=1) == result.class_index[0])
    matched = boxes[0][np.where(candidates, ious, -1).argmax()]
    boxed = draw_box(draw_box(_enlarge(image), truth * SCALE, TRUTH_COLOUR, 2), matched * SCALE, PREDICTED_COLOUR, 2)
    panels = [boxed, _enlarge(heatmap_overlay(image, result.maps[0]))]
    return write_png(out / "target_detection.png", _row(panels))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Continuous-coordinate IoU of ``box`` (4,) with ``boxes`` (D, 4)."""
    width = (np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])).clip(0)
    height = (np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])).clip(0)
    inter = width * height
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / union


if __name__ == "__main__":
    segmenter, detector, folder = sys.argv[1:4]
    Path(folder).mkdir(parents=True, exist_ok=True)
    print(segmentation_example(segmenter, Path(folder)), detection_example(detector, Path(folder)))
