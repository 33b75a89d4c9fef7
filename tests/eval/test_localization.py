"""Top-1 and GT-known localization at fixed thresholds, by hand."""

import numpy as np
import pytest

from onnxcam.eval import gt_known_loc, top1_loc


def blob_map(x0, y0, x1, y1, size=20):
    m = np.zeros((size, size))
    m[y0 : y1 + 1, x0 : x1 + 1] = 1.0
    return m


MAPS = [blob_map(2, 2, 9, 9), blob_map(10, 10, 19, 19), blob_map(0, 0, 3, 3)]
GT = [np.array([[2, 2, 9, 9]]), np.array([[0, 0, 5, 5], [10, 10, 19, 15]]), np.array([[10, 10, 12, 12]])]
# IoUs: image 0: 1.0; image 1: best with its second box, 60 / 100 = 0.6; image 2: 0.


def test_gt_known_loc():
    assert gt_known_loc(MAPS, GT) == pytest.approx(200 / 3)
    assert gt_known_loc(MAPS, GT, iou_threshold=0.7) == pytest.approx(100 / 3)


def test_top1_loc_needs_the_right_class():
    assert top1_loc(MAPS, GT, predicted=[1, 0, 2], labels=[1, 2, 2]) == pytest.approx(100 / 3)


def test_the_threshold_changes_the_box():
    m = np.zeros((20, 20))
    m[0:10, 0:10] = 0.18  # kept at 0.15, dropped at 0.20
    m[4:6, 4:6] = 1.0
    gt = [np.array([[0, 0, 9, 9]])]
    assert gt_known_loc([m], gt, threshold=0.15) == 100.0
    assert gt_known_loc([m], gt, threshold=0.20) == 0.0


def test_mismatched_inputs_raise():
    with pytest.raises(ValueError):
        gt_known_loc(MAPS, GT[:2])
    with pytest.raises(ValueError):
        top1_loc(MAPS, GT, predicted=[1, 2], labels=[1, 2, 3])
    with pytest.raises(ValueError):
        gt_known_loc([], [])
