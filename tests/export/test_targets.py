"""Targets traced into the export (``onnxcam.export.targets``): d(target)/dA against torch
autograd in float64 for each target, batch 1 and 4 through one file, by the kink rule of
``torch_reference.assert_gradients_match``; the targets' bad inputs refused at export."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers.target_models import (  # noqa: E402
    NUM_CLASSES,
    SIZE,
    build_models,
    detection_box,
    reference_gradients,
    segmentation_mask,
)
from helpers.torch_reference import (  # noqa: E402
    assert_gradients_match,
    exact_session,
    float64_copy,
    nudged_inputs,
    summary_line,
)

from onnxcam.contract import (  # noqa: E402
    CLASS_INDEX,
    DETECTION_BOXES,
    INPUT,
    LOGITS,
    METADATA_KEY,
    TARGET_BOX,
    TARGET_CLASS,
    TARGET_MASK,
    TARGET_SCORE,
    ModelMetadata,
    gradients_name,
)
from onnxcam.export import export_cam_model  # noqa: E402
from onnxcam.export.targets import (  # noqa: E402
    DetectionBoxScore,
    SegmentationRegion,
    TargetError,
    UserTarget,
)

TARGET_INPUT = {"segmentation": TARGET_MASK, "detection": TARGET_BOX}


def target_input_for(kind: str, model, batch: torch.Tensor) -> np.ndarray | None:
    if kind == "segmentation":
        return segmentation_mask(len(batch), seed=len(batch))
    if kind == "detection":
        return detection_box(model, batch)
    return None


@pytest.mark.parametrize("kind", ["probability", "segmentation", "detection", "user"])
def test_target_gradients_match_autograd(exported_targets, kind):
    exported = exported_targets[kind]
    session = exact_session(exported.path)
    model64 = float64_copy(exported.model)
    name = gradients_name(exported.layer)
    for batch_size in (1, 4):
        x = torch.randn(batch_size, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch_size))
        requested = np.array([-1, 2, -1, 0][:batch_size], dtype=np.int64)
        extra = target_input_for(kind, exported.model, x)
        feeds = {INPUT: x.numpy(), CLASS_INDEX: requested}
        if extra is not None:
            feeds[TARGET_INPUT[kind]] = extra
        if kind == "detection":  # explicit classes of detections that match the box
            (top,) = session.run([TARGET_CLASS], {**feeds, CLASS_INDEX: np.full(batch_size, -1)})
            requested = np.where(requested < 0, requested, top)
            feeds[CLASS_INDEX] = requested
        grads, scores, classes = session.run([name, TARGET_SCORE, TARGET_CLASS], feeds)
        extra_torch = None if extra is None else torch.from_numpy(extra)
        torch_grads, torch_classes = reference_gradients(kind, exported.model, exported.layer, x, extra_torch, requested)
        truth, truth_classes = reference_gradients(
            kind, model64, exported.layer, x.double(), None if extra is None else extra_torch.double(), requested
        )
        expected_classes = requested if kind == "user" else truth_classes
        assert np.array_equal(classes, expected_classes), (kind, classes, expected_classes)
        assert np.all(scores != 0), (kind, scores)  # every detection target matched: a real gradient
        nudges = nudged_inputs(x.numpy())
        nudged_feeds = {INPUT: nudges.reshape(-1, 3, SIZE, SIZE), CLASS_INDEX: np.tile(classes, len(nudges))}
        if extra is not None:
            nudged_feeds[TARGET_INPUT[kind]] = np.concatenate([extra] * len(nudges))
        (nudged,) = session.run([name], nudged_feeds)
        result = assert_gradients_match(
            grads, nudged.reshape(len(nudges), *grads.shape), truth, torch_grads, (kind, batch_size)
        )
        print(summary_line((kind, batch_size), result))


def test_outputs_and_metadata_name_the_target(exported_targets):
    segmentation = exact_session(exported_targets["segmentation"].path)
    detection = exact_session(exported_targets["detection"].path)
    assert [i.name for i in segmentation.get_inputs()] == [INPUT, CLASS_INDEX, TARGET_MASK]
    assert [i.name for i in detection.get_inputs()] == [INPUT, CLASS_INDEX, TARGET_BOX]
    assert detection.get_outputs()[1].name == DETECTION_BOXES
    metadata = ModelMetadata.from_json(segmentation.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert metadata.target.kind == "segmentation"
    assert metadata.target.inputs[0].name == TARGET_MASK and metadata.target.inputs[0].shape == (SIZE, SIZE)
    assert metadata.num_classes == 1 + NUM_CLASSES
    x = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    (logits,) = segmentation.run([LOGITS], {INPUT: x, CLASS_INDEX: np.full(2, -1), TARGET_MASK: np.ones((2, SIZE, SIZE), np.float32)})
    with torch.no_grad():
        expected = exported_targets["segmentation"].model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)  # the model's own output
    metadata = ModelMetadata.from_json(detection.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert metadata.target.options == {"iou_threshold": 0.5, "score_threshold": 0.05}


def test_old_metadata_without_a_target_reads_as_the_logit():
    document = ModelMetadata(layers=(), num_classes=3).to_json().replace('"target": ', '"unused": ')
    assert ModelMetadata.from_json(document).target.kind == "logit"


def test_detection_without_a_match_gives_a_zero_gradient(exported_targets):
    exported = exported_targets["detection"]
    session = exact_session(exported.path)
    x = np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    feeds = {INPUT: x, CLASS_INDEX: np.array([-1]), TARGET_BOX: np.array([[0, 0, 0, 0]], np.float32)}
    grads, score = session.run([gradients_name(exported.layer), TARGET_SCORE], feeds)
    assert score[0] == 0 and not grads.any()


def test_segmentation_target_on_a_classifier_is_refused(tmp_path):
    model, layer = build_models()["classifier"]
    with pytest.raises(TargetError, match=r"SegmentationRegion needs per-pixel class scores \(N, K, H, W\).*ClassLogit"):
        export_cam_model(model, torch.zeros(1, 3, SIZE, SIZE), layer, tmp_path / "x.onnx", target=SegmentationRegion())
    with pytest.raises(TargetError, match=r"DetectionBoxScore needs a model returning \(boxes"):
        export_cam_model(model, torch.zeros(1, 3, SIZE, SIZE), layer, tmp_path / "x.onnx", target=DetectionBoxScore())


def test_user_target_must_return_one_scalar_per_sample(tmp_path):
    model, layer = build_models()["classifier"]
    with pytest.raises(TargetError, match=r"target 'total' returned torch.float32 \(\) for a batch of 2.*shape \(2,\)"):
        export_cam_model(
            model, torch.zeros(1, 3, SIZE, SIZE), layer, tmp_path / "x.onnx", target=UserTarget(lambda o: o.sum(), "total")
        )
    with pytest.raises(TargetError, match=r"returned torch.float32 \(2, 4\)"):
        export_cam_model(model, torch.zeros(1, 3, SIZE, SIZE), layer, tmp_path / "x.onnx", target=UserTarget(lambda o: o))
