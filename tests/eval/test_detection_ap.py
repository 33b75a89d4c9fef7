"""COCO AP through pycocotools on hand-made detections whose AP is computed by hand.

COCO interpolates precision at 101 recall points 0, 0.01, ..., 1 (the best precision at any recall
at or above each point) and averages them; AP averages 10 IoU thresholds 0.50:0.05:0.95.
"""

import numpy as np
import pytest

from onnxcam.eval import Detections
from onnxcam.eval.detection_ap import GroundTruthBoxes, coco_xywh, detection_ap


def truth(boxes, labels):
    return GroundTruthBoxes(np.array(boxes).reshape(-1, 4), np.array(labels, dtype=np.int64))


def found(boxes, scores, labels):
    return Detections(np.array(boxes).reshape(-1, 4), np.array(scores, dtype=np.float64), np.array(labels, dtype=np.int64))


def test_inclusive_boxes_become_coco_xywh_with_the_extra_pixel():
    assert coco_xywh(np.array([[3, 4, 3, 4], [0, 0, 9, 4]])).tolist() == [[3, 4, 1, 1], [0, 0, 10, 5]]


def test_ranked_true_false_true_gives_the_interpolated_precision_by_hand():
    # Two images, one box each; ranked detections: TP (P 1, R 1/2), FP (P 1/2), TP (P 2/3, R 1).
    # Interpolated: precision 1 at the 51 recall points <= 0.5, 2/3 at the 50 above.
    gt = [truth([[0, 0, 9, 9]], [0]), truth([[5, 5, 14, 14]], [0])]
    dets = [found([[0, 0, 9, 9], [30, 30, 39, 39]], [0.9, 0.8], [0, 0]), found([[5, 5, 14, 14]], [0.7], [0])]
    expected = 100 * (51 * 1 + 50 * 2 / 3) / 101
    result = detection_ap(gt, dets, num_classes=1)
    assert result.ap == pytest.approx(expected)
    assert result.ap50 == pytest.approx(expected)
    assert result.ap75 == pytest.approx(expected)
    assert result.per_class == {0: pytest.approx(expected)}


def test_the_iou_thresholds_use_inclusive_pixel_areas():
    # GT 6 x 6 pixels, detection 6 x 7 pixels sharing 36: IoU 36/42 = 0.857, a match at the
    # thresholds 0.50 ... 0.85 (8 of 10): AP 80. Without the extra pixel (5x5 vs 5x6) the IoU
    # would be 0.833 and AP 70.
    result = detection_ap([truth([[0, 0, 5, 5]], [2])], [found([[0, 0, 5, 6]], [0.5], [2])], num_classes=3)
    assert result.ap == pytest.approx(80.0)
    assert (result.ap50, result.ap75) == (pytest.approx(100.0), pytest.approx(100.0))
    assert result.per_class == {2: pytest.approx(80.0)}


def test_classes_are_scored_apart_and_averaged_over_classes_with_ground_truth():
    # Class 0 found perfectly (AP 100); class 1 has a box and no detection (AP 0); class 2 has a
    # detection and no box: no AP, out of the mean.
    gt = [truth([[0, 0, 9, 9], [20, 0, 29, 9]], [0, 1])]
    dets = [found([[0, 0, 9, 9], [20, 0, 29, 9], [40, 40, 45, 45]], [0.9, 0.8, 0.7], [0, 0, 2])]
    result = detection_ap(gt, dets, num_classes=3)
    # Class 0 also has a false positive ranked second (the class-1 box detected as class 0):
    # precision 1 up to recall 1, so its AP stays 100.
    assert result.per_class == {0: pytest.approx(100.0), 1: pytest.approx(0.0)}
    assert result.ap == pytest.approx(50.0)


def test_a_low_ranked_duplicate_does_not_lower_ap_but_a_high_ranked_false_positive_does():
    gt = [truth([[0, 0, 9, 9]], [0])]
    late = detection_ap(gt, [found([[0, 0, 9, 9], [0, 0, 9, 9]], [0.9, 0.1], [0, 0])], num_classes=1)
    assert late.ap == pytest.approx(100.0)
    # A false positive ranked first: precision 1/2 at recall 1, so every recall point gets 1/2.
    early = detection_ap(gt, [found([[50, 50, 59, 59], [0, 0, 9, 9]], [0.9, 0.1], [0, 0])], num_classes=1)
    assert early.ap == pytest.approx(50.0)


def test_no_detections_give_zero_and_bad_labels_are_refused():
    gt = [truth([[0, 0, 9, 9]], [0])]
    result = detection_ap(gt, [Detections.empty()], num_classes=1)
    assert (result.ap, result.ap50, result.ap75, result.per_class) == (0.0, 0.0, 0.0, {0: 0.0})
    with pytest.raises(ValueError, match="class indices in"):
        detection_ap(gt, [found([[0, 0, 1, 1]], [1.0], [4])], num_classes=2)
    with pytest.raises(ValueError, match="detection lists"):
        detection_ap(gt, [], num_classes=1)


def random_problem(seed: int, images: int = 60, classes: int = 4):
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(images):
        k = int(rng.integers(1, 5))
        corner = rng.integers(0, 60, (k, 2))
        boxes = np.concatenate([corner, corner + rng.integers(5, 35, (k, 2)) - 1], axis=1)
        labels = rng.integers(0, classes, k)
        gts.append(GroundTruthBoxes(boxes, labels))
        d = int(rng.integers(0, 12))
        pick = rng.integers(0, k, d)
        moved = np.clip(boxes[pick] + rng.integers(-4, 5, (d, 4)), 0, None)
        moved[:, 2:] = np.maximum(moved[:, 2:], moved[:, :2])
        wrong = rng.random(d) < 0.2
        dets.append(Detections(moved, rng.integers(1, 20, d) / 20.0, np.where(wrong, rng.integers(0, classes, d), labels[pick])))
    return gts, dets


@pytest.mark.parametrize("seed", range(3))
def test_faster_coco_eval_gives_pycocotools_numbers(seed):
    gts, dets = random_problem(seed)
    fast = detection_ap(gts, dets, num_classes=4)
    reference = detection_ap(gts, dets, num_classes=4, backend="pycocotools")
    assert fast.ap == pytest.approx(reference.ap, abs=1e-9)
    assert (fast.ap50, fast.ap75) == (pytest.approx(reference.ap50, abs=1e-9), pytest.approx(reference.ap75, abs=1e-9))
    assert fast.per_class == pytest.approx(reference.per_class, abs=1e-9)
    assert 0 < reference.ap < 100
