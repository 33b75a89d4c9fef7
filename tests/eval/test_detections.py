"""Scored boxes from a map, NMS (against a plain reference and OpenCV) and maps to detections."""

import cv2
import numpy as np
import pytest

from onnxcam.eval import boxes_from_heatmap, detections_from_maps, nms, scored_boxes_from_heatmap
from onnxcam.eval.boxes import box_iou


def reference_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy NMS written out pair by pair, inclusive pixel areas, ties to the lower index."""

    def iou(a, b):
        w = min(a[2], b[2]) - max(a[0], b[0]) + 1
        h = min(a[3], b[3]) - max(a[1], b[1]) + 1
        inter = max(w, 0) * max(h, 0)
        area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
        return inter / (area(a) + area(b) - inter)

    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) <= iou_threshold for k in kept):
            kept.append(i)
    return kept


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Boxes in a 40 x 40 frame with many overlaps; every fourth nested in the one before it."""
    x0, y0 = rng.integers(0, 30, size=(2, n))
    w, h = rng.integers(1, 15, size=(2, n))
    boxes = np.stack([x0, y0, x0 + w - 1, y0 + h - 1], axis=1)
    for i in range(3, n, 4):
        outer = boxes[i - 1]
        inset_x = rng.integers(0, (outer[2] - outer[0]) // 2 + 1)
        inset_y = rng.integers(0, (outer[3] - outer[1]) // 2 + 1)
        boxes[i] = [outer[0] + inset_x, outer[1] + inset_y, outer[2] - inset_x, outer[3] - inset_y]
    return boxes


@pytest.mark.parametrize("seed", range(40))
def test_nms_equals_the_reference_on_random_boxes_with_ties_and_nesting(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    boxes = random_boxes(rng, n)
    scores = rng.integers(1, 6, size=n) / 5.0  # five levels: many ties
    if seed % 3 == 0:
        boxes[n // 2] = boxes[0]  # duplicate boxes
    for threshold in (0.0, 0.3, 0.5, 0.7, 1.0):
        assert nms(boxes, scores, threshold).tolist() == reference_nms(boxes, scores, threshold)


@pytest.mark.parametrize("seed", range(20))
def test_nms_equals_opencv_nmsboxes_on_inclusive_rectangles(seed):
    # OpenCV's rectangles are (x, y, width, height) over [x, x + width): the pixels of the
    # inclusive box when width = x1 - x0 + 1, so the IoUs agree exactly. Scores are float32
    # (OpenCV's type) and positive (it keeps scores above its score threshold, which must be >= 0).
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 60))
    boxes = random_boxes(rng, n)
    scores = (rng.integers(1, 8, size=n) / 8.0).astype(np.float32)
    rects = [(int(b[0]), int(b[1]), int(b[2] - b[0] + 1), int(b[3] - b[1] + 1)) for b in boxes]
    for threshold in (0.3, 0.5, 0.7):
        expected = np.asarray(cv2.dnn.NMSBoxes(rects, scores.tolist(), 0.0, threshold)).reshape(-1)
        assert nms(boxes, scores, threshold).tolist() == expected.tolist()


def test_nms_keeps_a_box_at_exactly_the_threshold_and_orders_by_score():
    boxes = np.array([[0, 0, 2, 0], [1, 0, 3, 0], [10, 10, 12, 12]])  # first two: IoU 2/4
    assert box_iou(boxes[0], boxes[1])[0, 0] == 0.5
    assert nms(boxes, np.array([0.2, 0.9, 0.5]), 0.5).tolist() == [1, 2, 0]
    assert nms(boxes, np.array([0.2, 0.9, 0.5]), 0.49).tolist() == [1, 2]
    assert nms(boxes, np.array([0.5, 0.5, 0.5]), 0.49).tolist() == [0, 2]


def test_nms_of_no_boxes_and_bad_input():
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    with pytest.raises(ValueError, match="scores must have shape"):
        nms(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        nms(np.zeros((1, 4)), np.array([np.nan]))
    with pytest.raises(ValueError, match="x1 >= x0"):
        nms(np.array([[5, 0, 4, 0]]), np.array([1.0]))


@pytest.mark.parametrize("seed", range(10))
def test_scored_boxes_are_the_blob_boxes_with_their_peak_and_mass(seed):
    rng = np.random.default_rng(seed)
    heatmap = cv2.GaussianBlur(rng.random((40, 50)).astype(np.float32), (0, 0), 2.0) ** 3
    boxes, peaks = scored_boxes_from_heatmap(heatmap, 0.5)
    _, masses = scored_boxes_from_heatmap(heatmap, 0.5, score="mass")
    assert boxes.tolist() == boxes_from_heatmap(heatmap, 0.5).tolist()
    count, labels = cv2.connectedComponents((heatmap >= 0.5 * heatmap.max()).astype(np.uint8), connectivity=8)
    for label in range(1, count):
        pixels = heatmap[labels == label]
        ys, xs = np.nonzero(labels == label)
        row = boxes.tolist().index([xs.min(), ys.min(), xs.max(), ys.max()])
        assert peaks[row] == pytest.approx(pixels.max())
        assert masses[row] == pytest.approx(pixels.sum(dtype=np.float64))


def test_scored_boxes_of_an_empty_map_are_none():
    boxes, scores = scored_boxes_from_heatmap(np.zeros((6, 6)), 0.2)
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    with pytest.raises(ValueError, match="score must be one of"):
        scored_boxes_from_heatmap(np.ones((2, 2)), 0.2, score="area")


def test_detections_from_maps_suppresses_nested_candidates_within_a_class():
    heatmap = np.zeros((20, 20))
    heatmap[2:12, 2:12] = 0.5
    heatmap[4:10, 4:10] = 1.0  # a core: at threshold 0.8 a nested box
    other = np.zeros((20, 20))
    other[4:10, 4:10] = 1.0  # the same core in class 3: NMS never crosses classes
    before = detections_from_maps({1: heatmap, 3: other}, thresholds=(0.3, 0.8), iou_threshold=None)
    assert before.labels.tolist() == [1, 1, 3, 3]
    after = detections_from_maps({1: heatmap, 3: other}, thresholds=(0.3, 0.8), iou_threshold=0.3,
                                 class_scores={1: 0.5, 3: 1.0})
    assert after.boxes.tolist() == [[2, 2, 11, 11], [4, 4, 9, 9]]
    assert after.labels.tolist() == [1, 3]
    assert after.scores.tolist() == [0.5, 1.0]
    assert len(detections_from_maps({0: np.zeros((5, 5))})) == 0


def test_sweep_scores_every_setting_and_names_the_best():
    from onnxcam.eval.detection_ap import GroundTruthBoxes
    from onnxcam.eval.detection_sweep import DetectionSetting, best_setting, predicted_classes, sweep_detection_ap

    # Two objects of class 0 whose maps touch at a low threshold: only a high box threshold
    # separates them, so that setting wins with AP 100.
    heatmap = np.zeros((20, 30))
    heatmap[5:15, 2:12] = 1.0
    heatmap[5:15, 14:24] = 1.0
    heatmap[8:12, 12:14] = 0.3  # a bridge
    truth = [GroundTruthBoxes(np.array([[2, 5, 11, 14], [14, 5, 23, 14]]), np.array([0, 0]))]
    settings = [DetectionSetting(0.2, 0.5), DetectionSetting(0.5, 0.5), DetectionSetting((0.2, 0.5), None)]
    table = sweep_detection_ap([{0: heatmap}], truth, num_classes=1, settings=settings)
    assert table["setting"].tolist() == ["box=0.2,nms=0.5", "box=0.5,nms=0.5", "box=0.2+0.5,nms=none"]
    assert table["AP"].tolist()[1] == pytest.approx(100.0) and table["AP"].tolist()[0] == pytest.approx(0.0)
    assert best_setting(table)["setting"] == "box=0.5,nms=0.5"
    assert "AP/0" in table.columns
    assert predicted_classes(np.array([0.2, 0.9, 0.6, 0.7]), top_k=2) == [1, 3]
    assert predicted_classes(np.array([0.2, 0.3])) == [1]


def test_doctests_run():
    import doctest

    from onnxcam.eval import boxes, detection_ap, detections

    for module in (boxes, detections, detection_ap):
        assert doctest.testmod(module).failed == 0
