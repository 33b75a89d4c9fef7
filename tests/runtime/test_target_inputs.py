"""Models exported with a target, explained through ``CamSession``: maps equal pytorch-grad-cam's
with its ``SemanticSegmentationTarget`` and, through a thin torchvision-format wrapper, its
``FasterRCNNBoxScoreTarget``; the re-running methods score the same target; the target inputs'
bad values refused with clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers.target_models import (  # noqa: E402
    SIZE,
    box_iou_continuous,
    detection_box,
    segmentation_mask,
)
from helpers.torchvision_standin import import_pytorch_grad_cam  # noqa: E402

from onnxcam.runtime import CamSession  # noqa: E402
from onnxcam.runtime.inputs import InputError  # noqa: E402
from onnxcam.runtime.methods import ScoreCAM  # noqa: E402

pgc = import_pytorch_grad_cam()
TOLERANCE = 1e-4


def batch(n: int = 3, seed: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def reference_maps(cam_class, model, layer: str, x: np.ndarray, targets, **kwargs) -> np.ndarray:
    with cam_class(model=model, target_layers=[model.get_submodule(layer)], **kwargs) as cam:
        return cam(input_tensor=torch.from_numpy(x), targets=targets)


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "scorecam"])
def test_segmentation_maps_equal_pytorch_grad_cam(exported_targets, method):
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    exported = exported_targets["segmentation"]
    n = 1 if method == "scorecam" else 3  # Score-CAM: 128 masked passes per image, in both libraries
    x, masks = batch(n), segmentation_mask(n)
    ours = ScoreCAM(batch_size=16) if method == "scorecam" else method
    result = CamSession(exported.path, providers="cpu").explain(x, ours, target_mask=masks)
    targets = [SemanticSegmentationTarget(int(c), mask) for c, mask in zip(result.class_index, masks)]
    cam_class = {"gradcam": pgc.GradCAM, "hirescam": pgc.HiResCAM, "scorecam": pgc.ScoreCAM}[method]
    expected = reference_maps(cam_class, exported.model, exported.layer, x, targets)
    assert np.abs(result.maps - expected).max() <= TOLERANCE


class TorchvisionFormat(torch.nn.Module):
    """The thin wrapper: our detector's dense ``(boxes, scores)`` as torchvision's detection output
    (one dict of ``boxes``, ``scores``, ``labels`` per image), keeping the detections our target
    considers (top class ``classes[i]``, score above 0.05). ``FasterRCNNBoxScoreTarget`` then takes
    the best-IoU one of them, as ``DetectionBoxScore`` does in the graph."""

    def __init__(self, model: torch.nn.Module, classes: np.ndarray):
        super().__init__()
        self.model, self.classes = model, [int(c) for c in classes]

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        boxes, scores = self.model(x)
        best, labels = scores.max(dim=2)
        outputs = []
        for i, c in enumerate(self.classes):
            keep = (best[i] > 0.05) & (labels[i] == c)
            outputs.append({"boxes": boxes[i][keep], "scores": best[i][keep], "labels": labels[i][keep]})
        return outputs


def test_detection_maps_equal_pytorch_grad_cam_box_score_target(exported_targets, monkeypatch):
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    ops = sys.modules["torchvision.ops"]
    if getattr(sys.modules["torchvision"], "__onnxcam_standin__", False):
        monkeypatch.setattr(ops, "box_iou", box_iou_continuous)  # torchvision's formula, written out
    exported = exported_targets["detection"]
    x = batch()
    boxes = detection_box(exported.model, torch.from_numpy(x))
    result = CamSession(exported.path, providers="cpu").explain(x, "gradcam", target_box=boxes)
    assert (result.target_scores > 0.5).all()  # every box matched a detection
    # The inclusive pixel box (x1, y1 its last pixels) as the continuous box torchvision takes.
    targets = [
        FasterRCNNBoxScoreTarget([int(c)], [box + np.array([0, 0, 1, 1], np.float32)], iou_threshold=0.5)
        for c, box in zip(result.class_index, boxes)
    ]
    wrapper = TorchvisionFormat(exported.model, result.class_index)
    with pgc.GradCAM(model=wrapper, target_layers=[exported.model.get_submodule(exported.layer)]) as cam:
        expected = cam(input_tensor=torch.from_numpy(x), targets=targets)
    assert np.abs(result.maps - expected).max() <= TOLERANCE


def test_detection_without_a_match_warns_and_gives_zero_maps(exported_targets):
    session = CamSession(exported_targets["detection"].path, providers="cpu")
    with pytest.warns(UserWarning, match=r"no detection of the explained class matches target_box above IoU 0.5 in images \[0, 1\]"):
        result = session.explain(batch(2), "gradcam", target_box=[0, 0, 0, 0])
    assert not result.maps.any() and not result.target_scores.any()


def test_occlusion_scores_the_segmentation_target(exported_targets):
    """Occlusion's drops are differences of the target itself, mask and class fixed."""
    from onnxcam.runtime.methods import Occlusion

    exported = exported_targets["segmentation"]
    x, masks = batch(1), segmentation_mask(1)
    result = CamSession(exported.path, providers="cpu").explain(
        x, Occlusion(window=SIZE // 2, stride=SIZE // 2), "none", target_mask=masks
    )
    c = int(result.class_index[0])
    occluded = x.copy()
    occluded[:, :, : SIZE // 2, : SIZE // 2] = 0
    with torch.no_grad():
        outputs = exported.model(torch.from_numpy(np.concatenate([x, occluded])))
    scores = (outputs[:, c] * torch.from_numpy(masks[0])).sum(dim=(1, 2)).numpy()
    assert abs(result.raw_maps[0, 0, 0] - (scores[0] - scores[1])) <= 1e-3 * abs(scores[0])


def test_bad_target_inputs_are_refused_clearly(exported_targets):
    segmentation = CamSession(exported_targets["segmentation"].path, providers="cpu")
    detection = CamSession(exported_targets["detection"].path, providers="cpu")
    classifier = CamSession(exported_targets["probability"].path, providers="cpu")
    x = batch(2)
    with pytest.raises(InputError, match=rf"target_mask has shape \(2, 24, 24\); this model takes \(2, {SIZE}, {SIZE}\)"):
        segmentation.explain(x, target_mask=np.ones((2, 24, 24)))
    with pytest.raises(InputError, match=r"target_box \[0.0, 0.0, 48.0, 10.0\] \(image 0\) is not a box inside the 48x48 input"):
        detection.explain(x, target_box=[0, 0, SIZE, 10])
    with pytest.raises(InputError, match=r"x0 <= x1"):
        detection.explain(x, target_box=[[5, 5, 2, 9], [0, 0, 3, 3]])
    with pytest.raises(InputError, match=r"pass target_box=\(x0, y0, x1, y1\)"):
        detection.explain(x)
    with pytest.raises(InputError, match=r"target_mask is for a model exported with the segmentation target; this model was exported with the 'probability' target"):
        classifier.explain(x, target_mask=np.ones((SIZE, SIZE)))
    with pytest.raises(InputError, match=r"target_box is for a model exported with the detection target"):
        segmentation.explain(x, target_box=[0, 0, 3, 3])
    with pytest.raises(ValueError, match=r"'ablationcam' re-runs the classifier head for the class logit only.*'segmentation' target"):
        segmentation.explain(x, "ablationcam")
    with pytest.raises(ValueError, match=r"'reciprocam' re-runs the classifier head for the class logit only"):
        segmentation.explain(x, "reciprocam")
    with pytest.raises(ValueError, match=r"aug_smooth flips the images"):
        segmentation.explain(x, aug_smooth=True)
