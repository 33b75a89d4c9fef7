"""The WSOL protocol: box rule, curves, MaxBoxAcc/V2 and PxAP, against hand-computed values and
the public WSOL code's own test cases (clovaai/wsolevaluation, evaluation_test.py)."""

import numpy as np
import pytest

from onnxcam.eval import (
    iou_curves,
    max_box_acc,
    max_box_acc_v2,
    normalize_scoremap,
    pxap,
    scoremap_thresholds,
    wsol_boxes_from_scoremap,
    wsol_scoremap,
)
from onnxcam.eval.wsol import box_accuracy

THRESHOLDS_02 = np.arange(0, 1, 0.2)

UNIMODAL = np.array(
    [[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.4, 0.4, 0.4, 0.6], [0.0, 0.4, 1.0, 0.8, 0.6], [0.0, 0.4, 0.4, 0.4, 0.6]]
)
MULTIMODAL = np.array(
    [[0.4, 0.0, 0.2, 0.2, 0.2], [0.4, 0.4, 0.0, 0.4, 0.0], [0.0, 0.0, 0.0, 0.4, 0.0], [1.0, 0.6, 0.8, 0.2, 0.2]]
)


def as_lists(boxes):
    return [b.tolist() for b in boxes]


def test_wsol_degenerate_map_gives_zero_boxes():
    assert as_lists(wsol_boxes_from_scoremap(np.zeros((3, 3)), THRESHOLDS_02)) == [[[0, 0, 0, 0]]] * 5


def test_wsol_unimodal_boxes():
    assert as_lists(wsol_boxes_from_scoremap(UNIMODAL, THRESHOLDS_02)) == [
        [[1, 1, 4, 3]], [[1, 1, 4, 3]], [[2, 1, 4, 3]], [[2, 2, 4, 3]], [[2, 2, 3, 3]]
    ]


def test_wsol_multimodal_boxes():
    assert as_lists(wsol_boxes_from_scoremap(MULTIMODAL, THRESHOLDS_02)) == [
        [[0, 0, 4, 3]], [[0, 0, 2, 2]], [[0, 3, 3, 3]], [[2, 3, 3, 3]], [[0, 3, 1, 3]]
    ]


def test_wsol_nan_map_raises():
    with pytest.raises(ValueError, match="NaN"):
        wsol_boxes_from_scoremap(np.full((3, 3), np.nan), THRESHOLDS_02)


def test_wsol_out_of_range_map_raises():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        wsol_boxes_from_scoremap(np.full((3, 3), 2.0), THRESHOLDS_02)


def test_wsol_box_is_one_pixel_larger_except_at_the_border():
    m = np.zeros((10, 12))
    m[2:5, 3:7] = 1.0  # tight inclusive box (3, 2, 6, 4)
    assert as_lists(wsol_boxes_from_scoremap(m, [0.5])) == [[[3, 2, 7, 5]]]
    m = np.zeros((10, 12))
    m[6:, 8:] = 1.0  # touches the right and bottom border: clipped to (W - 1, H - 1)
    assert as_lists(wsol_boxes_from_scoremap(m, [0.5])) == [[[8, 6, 11, 9]]]


def test_wsol_foreground_is_strictly_above_the_truncated_cut():
    m = np.zeros((4, 8))
    m[1, 1] = 1.0  # u8 255
    m[1, 4] = 38 / 255 + 1e-9  # u8 38; cut at tau=0.15 is int(0.15 * 255) = 38: 38 > 38 fails
    m[1, 6] = 39 / 255 + 1e-9  # u8 39: kept
    boxes = wsol_boxes_from_scoremap(m, [0.15], multi_contour=True)[0]
    assert sorted(boxes.tolist()) == [[1, 1, 2, 2], [6, 1, 7, 2]]


def test_wsol_ring_has_a_hole_contour_in_multi_contour_mode():
    m = np.zeros((12, 12))
    m[2:9, 2:9] = 1.0
    m[4:7, 4:7] = 0.0
    single = wsol_boxes_from_scoremap(m, [0.5])[0]
    every = wsol_boxes_from_scoremap(m, [0.5], multi_contour=True)[0]
    assert single.tolist() == [[2, 2, 9, 9]]  # the outer contour, one pixel larger
    # RETR_TREE also returns the hole: its contour runs on the ring pixels around the hole.
    assert sorted(every.tolist()) == [[2, 2, 9, 9], [3, 3, 8, 8]]


def test_wsol_ties_go_to_the_contour_opencv_lists_first():
    m = np.zeros((10, 10))
    m[1:3, 1:3] = 1.0
    m[5:7, 5:7] = 1.0  # equal contour areas; OpenCV lists the later-found contour first
    assert as_lists(wsol_boxes_from_scoremap(m, [0.5])) == [[[5, 5, 7, 7]]]


def test_wsol_largest_contour_is_by_polygon_area_not_pixel_count():
    m = np.zeros((10, 20))
    m[1, 1:19] = 1.0  # 18-pixel line: contour area 0
    m[5:7, 5:7] = 1.0  # 4-pixel square: contour area 1
    assert as_lists(wsol_boxes_from_scoremap(m, [0.5])) == [[[5, 5, 7, 7]]]


def test_normalize_scoremap():
    np.testing.assert_array_equal(normalize_scoremap(np.array([[1.0, 3.0], [2.0, 5.0]])), [[0, 0.5], [0.25, 1]])
    np.testing.assert_array_equal(normalize_scoremap(np.full((2, 3), 7.0)), np.zeros((2, 3)))
    np.testing.assert_array_equal(normalize_scoremap(np.array([[np.nan, 1.0]])), np.zeros((1, 2)))


def test_wsol_scoremap_resizes_to_224_and_keeps_a_normalised_224_map():
    assert wsol_scoremap(np.random.default_rng(0).random((7, 7))).shape == (224, 224)
    m = np.random.default_rng(1).random((224, 224))
    m = normalize_scoremap(m)
    np.testing.assert_array_equal(wsol_scoremap(m), m)


def test_thresholds_are_arange():
    np.testing.assert_array_equal(scoremap_thresholds(0.25), [0, 0.25, 0.5, 0.75])
    assert len(scoremap_thresholds()) == 1000
    with pytest.raises(ValueError):
        scoremap_thresholds(0)


def test_iou_curves_by_hand():
    m = np.zeros((10, 10))
    m[2:6, 2:6] = 0.5  # box (2, 2, 6, 6) in the WSOL rule
    m[2:4, 2:4] = 1.0  # box (2, 2, 4, 4)
    m[8, 8] = 1.0  # a single pixel: area 0, box (8, 8, 9, 9)
    gt = np.array([[2, 2, 6, 6]])
    curves = iou_curves(m, gt, [0.0, 0.6])
    # tau=0: cut 0, foreground is the 4x4 square and the dot; largest is the square -> IoU 1.
    # tau=0.6: cut int(0.6 * 255) = 153: the 2x2 core (box 3x3 = 9 px) and the dot (box 4 px).
    np.testing.assert_allclose(curves.largest, [1.0, 9 / 25])
    np.testing.assert_allclose(curves.every, [1.0, 9 / 25])
    native = iou_curves(m, np.array([[2, 2, 5, 5]]), [0.0, 0.6], rule="native")
    # native: tau=0 keeps every pixel (>= 0): one blob, box (0, 0, 9, 9) -> 16 / 100.
    np.testing.assert_allclose(native.largest, [16 / 100, 4 / 16])


def test_box_accuracy_curves_and_best_threshold():
    ious = np.array([[0.2, 0.6, 0.8, 0.0], [0.5, 0.5, 0.4, 0.0], [0.9, 0.3, 0.71, 0.0]])
    thresholds = [0.0, 0.25, 0.5, 0.75]
    acc = max_box_acc(ious, thresholds)
    np.testing.assert_allclose(acc.curve, [200 / 3, 200 / 3, 200 / 3, 0])
    assert acc.value == pytest.approx(200 / 3)
    assert acc.best_threshold == 0.0  # the first best
    v2 = max_box_acc_v2(ious, thresholds)
    np.testing.assert_allclose(v2.per_iou[0].curve, [200 / 3, 100, 100, 0])  # IoU 0.3
    np.testing.assert_allclose(v2.per_iou[2].curve, [100 / 3, 0, 200 / 3, 0])  # IoU 0.7
    assert v2.per_iou[0].best_threshold == 0.25
    assert v2.per_iou[2].best_threshold == 0.5
    assert v2.value == pytest.approx((100 + 200 / 3 + 200 / 3) / 3)


def test_box_accuracy_counts_iou_equal_to_the_threshold():
    assert box_accuracy(np.array([[0.5]]), [0.0], 0.5).value == 100.0


def test_box_accuracy_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        box_accuracy(np.zeros((2, 3)), [0.0, 0.5])


# PxAP


def test_pxap_by_hand():
    scores = np.array([[0.9, 0.8, 0.3, 0.1]])
    mask = np.array([[True, False, True, False]])
    # cuts from the top: {0.9}: P=1 R=.5; {0.9,0.8}: P=.5 R=.5; +0.3: P=2/3 R=1; +0.1: P=.5 R=1
    result = pxap([scores], [mask], np.arange(0, 1, 0.1))
    assert result.value == pytest.approx(100 * (1 * 0.5 + 2 / 3 * 0.5))


def test_pxap_perfect_map_is_100_whatever_the_ignore_region_scores():
    mask = np.zeros((20, 20), bool)
    mask[5:12, 3:9] = True
    ignore = np.zeros_like(mask)
    ignore[0:15, 0:15] = True
    for ignore_score in (0.0, 1.0):
        scoremap = mask.astype(float)
        scoremap[ignore & ~mask] = ignore_score
        assert pxap([scoremap], [mask], np.arange(0, 1, 0.01), [ignore]).value == 100.0


@pytest.mark.parametrize(("positives", "negatives"), [(43031, 7145), (833, 49342), (347, 13909)])
@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_pxap_constant_map_is_the_foreground_fraction(positives, negatives, value):
    # The WSOL MaskEvaluator tests: a constant map scores #fg / (#fg + #bg) on its three masks.
    flat = np.zeros(224 * 224, dtype=np.uint8)  # 0 background, 1 foreground, 2 ignored
    flat[:positives] = 1
    flat[positives + negatives :] = 2
    labels = flat.reshape(224, 224)
    result = pxap([np.full((224, 224), value)], [labels == 1], np.arange(0, 1, 0.01), [labels == 2])
    assert result.value == pytest.approx(100 * positives / (positives + negatives), abs=1e-9)


def test_pxap_without_foreground_raises():
    with pytest.raises(ValueError, match="foreground"):
        pxap([np.zeros((4, 4))], [np.zeros((4, 4), bool)], np.arange(0, 1, 0.01))


def test_pxap_with_nan_map_raises():
    with pytest.raises(ValueError, match="NaN"):
        pxap([np.full((4, 4), np.nan)], [np.ones((4, 4), bool)], np.arange(0, 1, 0.01))
