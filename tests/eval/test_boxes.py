"""Boxes from heatmaps (the papers' blob rule), IoU and box scaling, with hand-computed values."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxcam.eval import box_from_heatmap, box_iou, boxes_from_heatmap, scale_boxes


def test_box_of_a_single_blob_is_tight_and_inclusive():
    m = np.zeros((5, 6))
    m[1:3, 2:5] = 1.0
    assert box_from_heatmap(m).tolist() == [2, 1, 4, 2]


def test_threshold_is_inclusive_relative_to_the_max():
    m = np.zeros((4, 8))
    m[1, 1] = 10.0
    m[1, 2] = 1.5  # exactly 0.15 * max: kept
    m[1, 3] = 1.49  # below: dropped
    assert box_from_heatmap(m, 0.15).tolist() == [1, 1, 2, 1]
    assert box_from_heatmap(m, 0.2).tolist() == [1, 1, 1, 1]


def test_largest_component_wins_and_diagonal_pixels_connect():
    m = np.zeros((8, 8))
    m[0, 0] = m[1, 1] = m[2, 2] = 1.0  # 3 pixels, 8-connected along the diagonal
    m[5:7, 5] = 1.0  # 2 pixels
    assert box_from_heatmap(m).tolist() == [0, 0, 2, 2]


def test_ring_gives_its_outer_box_and_no_hole_box():
    m = np.zeros((9, 9))
    m[2:7, 2:7] = 1.0
    m[3:6, 3:6] = 0.0
    assert box_from_heatmap(m).tolist() == [2, 2, 6, 6]
    assert boxes_from_heatmap(m).tolist() == [[2, 2, 6, 6]]


def test_ties_go_to_the_first_component_in_row_major_order():
    m = np.zeros((10, 10))
    m[6:8, 0:2] = 1.0  # lower left
    m[1:3, 7:9] = 1.0  # upper right: first in row-major order
    assert box_from_heatmap(m).tolist() == [7, 1, 8, 2]
    m = np.zeros((10, 10))
    m[4:6, 6:8] = 1.0
    m[4:6, 1:3] = 1.0  # same rows, further left: first
    assert box_from_heatmap(m).tolist() == [1, 4, 2, 5]


def test_every_blob_in_row_major_order_of_first_pixel():
    m = np.zeros((10, 10))
    m[6:8, 0:2] = 1.0
    m[1:3, 7:9] = 1.0
    m[4, 4] = 1.0
    assert boxes_from_heatmap(m).tolist() == [[7, 1, 8, 2], [4, 4, 4, 4], [0, 6, 1, 7]]


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_empty_map_gives_the_zero_box(value):
    m = np.full((6, 7), value)
    assert box_from_heatmap(m).tolist() == [0, 0, 0, 0]
    assert boxes_from_heatmap(m).tolist() == [[0, 0, 0, 0]]


def test_box_touching_the_border_reaches_the_last_pixel():
    m = np.zeros((6, 7))
    m[3:, 4:] = 1.0
    assert box_from_heatmap(m).tolist() == [4, 3, 6, 5]
    assert box_from_heatmap(np.ones((6, 7))).tolist() == [0, 0, 6, 5]


def test_bad_maps_raise():
    with pytest.raises(ValueError, match="2-D"):
        box_from_heatmap(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        box_from_heatmap(np.full((3, 3), np.nan))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.floats(1e-3, 1e3),
    st.sampled_from([0.15, 0.2, 0.5]),
)
def test_boxes_do_not_change_under_positive_scaling(seed, factor, threshold):
    m = np.random.default_rng(seed).random((12, 15))
    assert box_from_heatmap(m * factor, threshold).tolist() == box_from_heatmap(m, threshold).tolist()
    assert boxes_from_heatmap(m * factor, threshold).tolist() == boxes_from_heatmap(m, threshold).tolist()


# IoU: the WSOL code's own test cases, then the pixel convention.


def test_iou_of_zero_boxes_is_one_with_shape_and_dtype():
    ious = box_iou(np.zeros((3, 4), dtype=int), np.zeros((5, 4), dtype=int))
    assert ious.shape == (3, 5) and ious.dtype == np.float64
    assert (ious == 1.0).all()


def test_iou_eye_boxes():
    boxes = np.array([[1, 1, 3, 3], [4, 4, 5, 5]])
    assert (box_iou(boxes, boxes) == np.eye(2)).all()


def test_iou_realistic_value():
    assert box_iou(np.array([[1, 2, 5, 6]]), np.array([[3, 1, 4, 5]]))[0, 0] == pytest.approx(8 / 27, abs=1e-12)


def test_iou_rejects_boxes_breaking_the_convention():
    with pytest.raises(ValueError, match="convention"):
        box_iou(np.array([[1, 1, 0, 0]]), np.array([[1, 1, 2, 2]]))
    with pytest.raises(ValueError, match="non-negative"):
        box_iou(np.array([[-1, 0, 2, 2]]), np.array([[1, 1, 2, 2]]))
    with pytest.raises(ValueError, match="shape"):
        box_iou(np.zeros((2, 3)), np.zeros((2, 4)))


def test_zero_width_ground_truth_box_is_one_pixel_column():
    gt = np.array([[3, 2, 3, 5]])  # x0 == x1: one column of 4 pixels
    assert box_iou(gt, gt)[0, 0] == 1.0
    assert box_iou(np.array([[3, 2, 4, 5]]), gt)[0, 0] == pytest.approx(4 / 8)
    assert box_iou(np.array([[4, 2, 6, 5]]), gt)[0, 0] == 0.0  # adjacent, no shared pixel


def test_one_pixel_overlap_counts():
    assert box_iou(np.array([0, 0, 2, 2]), np.array([2, 2, 4, 4]))[0, 0] == pytest.approx(1 / 17)


box_strategy = st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 20), st.integers(0, 20)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(box_strategy, min_size=1, max_size=5), st.lists(box_strategy, min_size=1, max_size=5))
def test_iou_properties(a, b):
    a, b = np.array(a), np.array(b)
    ious = box_iou(a, b)
    assert ious.shape == (len(a), len(b))
    assert ((ious >= 0) & (ious <= 1)).all()
    np.testing.assert_array_equal(ious, box_iou(b, a).T)
    np.testing.assert_array_equal(np.diag(box_iou(a, a)), np.ones(len(a)))


@settings(max_examples=100, deadline=None)
@given(box_strategy, st.integers(0, 30))
def test_iou_of_disjoint_boxes_is_zero(box, gap):
    shifted = [box[2] + 1 + gap, box[1], box[2] + 1 + gap + (box[2] - box[0]), box[3]]
    assert box_iou(np.array(box), np.array(shifted))[0, 0] == 0.0


# Box scaling: the WSOL resize_bbox cases.


def test_scale_boxes_truncates():
    assert scale_boxes(np.array([1, 2, 4, 3]), (10, 20), (35, 10)).tolist() == [[3, 1, 14, 1]]


def test_scale_boxes_identity_on_degenerate_box():
    assert scale_boxes(np.array([1, 2, 1, 2]), (3, 3), (3, 3)).tolist() == [[1, 2, 1, 2]]


def test_scale_boxes_to_224():
    # 500x375 ILSVRC image: int(111 * 224 / 500) = 49, int(108 * 224 / 375) = 64, ...
    assert scale_boxes(np.array([[111, 108, 441, 193]]), (500, 375), (224, 224)).tolist() == [[49, 64, 197, 115]]
