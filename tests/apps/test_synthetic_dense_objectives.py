"""The dense synthetic models (segmenter, detector): shapes, and their training objectives'
pieces pinned on hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from onnxcam.apps.synthetic_dense_objectives import (  # noqa: E402
    DetectionObjective,
    encode_centres,
    inclusive_boxes,
    label_maps,
    mean_iou,
)
from onnxcam.export.synthetic_models import SYNTHETIC_ARCHITECTURES, build_synthetic_model  # noqa: E402


def test_segmenter_gives_per_pixel_logits_and_a_12x12_target_layer():
    model = build_synthetic_model("synthetic_segmenter").eval()
    layer = model.get_submodule(SYNTHETIC_ARCHITECTURES["synthetic_segmenter"].target_layer)
    captured = {}
    layer.register_forward_hook(lambda module, inputs, output: captured.__setitem__("a", output))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 96, 96))
    assert logits.shape == (2, 13, 96, 96)  # background + 12 classes
    assert captured["a"].shape[2:] == (12, 12)


def test_detector_gives_one_box_and_class_scores_per_cell():
    model = build_synthetic_model("synthetic_detector").eval()
    with torch.no_grad():
        boxes, scores = model(torch.randn(2, 3, 96, 96))
    assert boxes.shape == (2, 144, 4) and scores.shape == (2, 144, 12)
    assert (boxes[..., 2:] > boxes[..., :2]).all() and ((scores > 0) & (scores < 1)).all()


def test_label_maps_and_mean_iou():
    masks = np.array([[[0, 1], [1, 2]]], dtype=np.uint8)
    assert label_maps(masks, np.array([4])).tolist() == [[[0, 5], [5, 5]]]
    truth = torch.tensor([[0, 0, 1, 1]])
    predicted = torch.tensor([[0, 1, 1, 1]])
    # background: 1 / 2; class 1: 2 / 3
    assert mean_iou(predicted, truth, 2) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_centre_encoding_puts_the_offset_and_log_size_at_the_centre_cell():
    # A 16 x 8 pixel box from (8, 0): centre (16, 4) in pixels, (2, 0.5) in cells of 8.
    encoded = encode_centres(np.array([[8, 0, 23, 7]]), label=1, num_classes=2, grid=(4, 4), stride=8)
    assert encoded[1, 0, 2] == 1.0 and encoded[0].max() == 0.0
    offset_x, offset_y, log_w, log_h, centre = encoded[2:, 0, 2]
    assert (offset_x, offset_y, centre) == (-0.5, 0.0, 1.0)
    assert log_w == pytest.approx(math.log(2)) and log_h == pytest.approx(0.0)


def test_continuous_boxes_round_to_inclusive_pixels():
    assert inclusive_boxes(torch.tensor([[8.0, 0.0, 24.0, 8.0], [-3.0, 90.2, 200.0, 99.0]]), 96).tolist() == [
        [8, 0, 23, 7],
        [0, 90, 95, 95],
    ]


def test_detection_objective_scores_a_perfect_prediction_at_ap50_100():
    objective = DetectionObjective()
    _, targets = objective.data(4, seed=3, image_size=96, num_classes=12)
    encoded = targets.encoded
    # Decode the targets themselves: the heatmap peaks and the regressed boxes are the truth.
    heat = torch.logit(encoded[:, :12].clamp(1e-4, 1 - 1e-4))
    from onnxcam.apps.synthetic_dense_objectives import dense_detections

    dense = dense_detections(heat, encoded[:, 12:16], objective.stride)
    metrics = objective.test_metrics(dense, targets)
    assert metrics["ap50"] == pytest.approx(100.0)
