"""Faithfulness metrics against torchcam 0.5 and pytorch-grad-cam 1.5, image by image, on the same
ONNX model (wrapped as a torch module for the references) and the same maps."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torchcam.metrics import ClassificationMetric, DeletionInsertionMetric  # noqa: E402

from helpers.fixed_maps import FixedMaps  # noqa: E402
from helpers.onnx_torch_module import OnnxForward  # noqa: E402
from helpers.torchvision_standin import import_pytorch_grad_cam  # noqa: E402
from onnxcam.eval import (  # noqa: E402
    average_drop_increase,
    deletion_insertion,
    road,
    road_combined,
)
from onnxcam.eval.faithfulness import road_keep_mask  # noqa: E402
from onnxcam.eval.road_imputation import linear_imputation  # noqa: E402
from onnxcam.runtime import CamSession  # noqa: E402

N = 4


@pytest.fixture(scope="module")
def setup(tiny_cam_model):
    """(session, batch, {name: maps}, class_index, torch model): Grad-CAM maps (ties at 0 from the
    ReLU) and smooth random maps (no ties), for the explained top-1 classes and other classes."""
    session = CamSession(tiny_cam_model, providers="cpu")
    rng = np.random.default_rng(3)
    batch = rng.standard_normal((N, 3, 32, 32)).astype(np.float32)
    result = session.explain(batch, "gradcam", "relu")
    smooth = np.stack([np.kron(rng.random((8, 8)), np.ones((4, 4))) for _ in range(N)])
    smooth = (smooth + 1e-3 * rng.random(smooth.shape)).astype(np.float32)
    smooth /= smooth.max(axis=(1, 2), keepdims=True)
    classes = {"top1": result.class_index, "other": (result.class_index + 3) % 10}
    return session, batch, {"gradcam": result.maps, "smooth": smooth}, classes, OnnxForward(tiny_cam_model)


def _torch(batch: np.ndarray, i: int) -> torch.Tensor:
    return torch.from_numpy(batch[i : i + 1])


@pytest.mark.parametrize("maps_name", ["gradcam", "smooth"])
@pytest.mark.parametrize("classes", ["top1", "other"])
def test_average_drop_increase_equals_torchcam_and_grad_cam(setup, maps_name, classes):
    session, batch, all_maps, all_classes, model = setup
    maps, class_index = all_maps[maps_name], all_classes[classes]
    drop, increase = average_drop_increase(session, batch, maps, class_index)
    softmax = torch.nn.Softmax(dim=-1)
    for i in range(N):
        metric = ClassificationMetric(FixedMaps(model, maps[i : i + 1]), softmax)
        metric.update(_torch(batch, i), class_idx=int(class_index[i]))
        summary = metric.summary()
        assert drop[i] == pytest.approx(100 * summary["avg_drop"], rel=1e-4, abs=1e-4)
        assert increase[i] == 100 * summary["conf_increase"]
    gradcam = import_pytorch_grad_cam()
    metrics = importlib.import_module("pytorch_grad_cam.metrics.cam_mult_image")
    targets_module = importlib.import_module("pytorch_grad_cam.utils.model_targets")
    targets = [targets_module.ClassifierOutputSoftmaxTarget(int(c)) for c in class_index]
    change = metrics.CamMultImageConfidenceChange()(torch.from_numpy(batch), maps, targets, model)
    assert gradcam is not None
    before = torch.softmax(model(torch.from_numpy(batch)), -1).numpy()[np.arange(N), class_index]
    np.testing.assert_allclose(drop, 100 * np.maximum(0, -change) / before, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(increase, 100 * (change > 0))


@pytest.mark.parametrize("maps_name", ["gradcam", "smooth"])
@pytest.mark.parametrize("steps", [20, 7])
def test_deletion_insertion_equals_torchcam(setup, maps_name, steps):
    session, batch, all_maps, all_classes, model = setup
    maps, class_index = all_maps[maps_name], all_classes["other"]
    baseline = np.float32(-0.5) if steps == 7 else 0.0
    deletion, insertion = deletion_insertion(session, batch, maps, class_index, steps=steps, baseline=baseline)
    for i in range(N):
        metric = DeletionInsertionMetric(
            FixedMaps(model, maps[i : i + 1]),
            torch.nn.Softmax(dim=-1),
            steps=steps,
            baseline=None if steps == 20 else torch.tensor(baseline),
        )
        metric.update(_torch(batch, i), class_idx=int(class_index[i]))
        summary = metric.summary()
        assert deletion[i] == pytest.approx(summary["deletion_auc"], rel=1e-5, abs=1e-6)
        assert insertion[i] == pytest.approx(summary["insertion_auc"], rel=1e-5, abs=1e-6)


def test_deletion_insertion_array_baseline_and_rise_protocol(setup):
    """An array baseline equal to a number gives that number's result; the RISE protocol equals a
    transcription of the RISE code's CausalMetric loop (one pixel block of 224 at a time)."""
    session, batch, all_maps, all_classes, model = setup
    maps, class_index = all_maps["smooth"], all_classes["top1"]
    by_number = deletion_insertion(session, batch, maps, class_index, baseline=0.25)
    by_array = deletion_insertion(session, batch, maps, class_index, baseline=np.full_like(batch, 0.25))
    np.testing.assert_allclose(by_number, by_array)
    deletion, insertion = deletion_insertion(session, batch, maps, class_index, protocol="rise")
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1
    kernel = torch.zeros(3, 3, 11, 11)
    for c in range(3):
        kernel[c, c] = torch.from_numpy(gaussian_filter(impulse, 5).astype(np.float32))
    for i in range(N):
        image = _torch(batch, i)
        order = np.argsort(-maps[i].reshape(-1), kind="stable")  # RISE flips an unstable argsort
        for mode, start, finish in (
            ("del", image.clone(), torch.zeros_like(image)),
            ("ins", torch.nn.functional.conv2d(image, kernel, padding=5), image.clone()),
        ):
            steps = (1024 + 223) // 224
            scores = []
            for step in range(steps + 1):
                scores.append(torch.softmax(model(start), -1)[0, class_index[i]].item())
                coords = order[224 * step : 224 * (step + 1)]
                start.view(1, 3, -1)[0][:, coords] = finish.view(1, 3, -1)[0][:, coords]
            scores = np.array(scores)
            auc = (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (len(scores) - 1)
            assert (deletion if mode == "del" else insertion)[i] == pytest.approx(auc, rel=1e-5)


def test_linear_imputation_equals_the_road_authors_imputer(setup):
    _, batch, all_maps, _, _ = setup
    import_pytorch_grad_cam()
    road_module = importlib.import_module("pytorch_grad_cam.metrics.road")
    imputer = road_module.NoisyLinearImputer(noise=0.0)
    for percentile, order in ((10, "morf"), (50, "lerf"), (90, "morf")):
        keep = road_keep_mask(all_maps["smooth"][0], percentile, order)
        expected = imputer(torch.from_numpy(batch[0]), torch.from_numpy(keep.astype(np.float32))).numpy()
        np.testing.assert_allclose(linear_imputation(batch[0], keep), expected, rtol=1e-5, atol=1e-6)
    untouched = linear_imputation(batch[0], np.ones((32, 32), bool))
    np.testing.assert_array_equal(untouched, batch[0])
    nothing_kept = linear_imputation(batch[0], np.zeros((32, 32), bool))
    np.testing.assert_array_equal(nothing_kept, 0)


@pytest.mark.parametrize("maps_name", ["gradcam", "smooth"])
def test_road_equals_grad_cam_with_noise_off(setup, maps_name):
    session, batch, all_maps, all_classes, model = setup
    maps, class_index = all_maps[maps_name], all_classes["top1"]
    import_pytorch_grad_cam()
    road_module = importlib.import_module("pytorch_grad_cam.metrics.road")
    targets_module = importlib.import_module("pytorch_grad_cam.utils.model_targets")
    targets = [targets_module.ClassifierOutputSoftmaxTarget(int(c)) for c in class_index]
    percentiles = (10, 50, 90)
    ours = {order: road(session, batch, maps, class_index, percentiles, order, noise=0.0) for order in ("morf", "lerf")}
    for order, metric in (("morf", road_module.ROADMostRelevantFirst), ("lerf", road_module.ROADLeastRelevantFirst)):
        for p, percentile in enumerate(percentiles):
            reference = metric(percentile)
            reference.perturbation.imputer.noise = 0.0
            expected = reference(torch.from_numpy(batch), maps, targets, model)
            np.testing.assert_allclose(ours[order][:, p], expected, rtol=1e-4, atol=1e-6)
    combined = road_combined(session, batch, maps, class_index, percentiles, noise=0.0)
    np.testing.assert_allclose(combined, (ours["lerf"].mean(1) - ours["morf"].mean(1)) / 2)


def test_road_noise_is_seeded_and_small(setup):
    session, batch, all_maps, all_classes, _ = setup
    maps, class_index = all_maps["smooth"], all_classes["top1"]
    quiet = road(session, batch, maps, class_index, (50,), noise=0.0)
    noisy = road(session, batch, maps, class_index, (50,), seed=1)
    np.testing.assert_array_equal(noisy, road(session, batch, maps, class_index, (50,), seed=1))
    assert not np.array_equal(noisy, quiet)
    np.testing.assert_allclose(noisy, quiet, atol=0.02)


def test_hand_computed_average_drop(setup):
    """A map of ones leaves the input as it is: no drop, no increase; a map of zeros scores the
    all-zero input."""
    session, batch, _, all_classes, model = setup
    class_index = all_classes["top1"]
    drop, increase = average_drop_increase(session, batch, np.ones((N, 32, 32), np.float32), class_index)
    np.testing.assert_allclose(drop, 0, atol=1e-9)
    np.testing.assert_array_equal(increase, 0)
    drop, _ = average_drop_increase(session, batch, np.zeros((N, 32, 32), np.float32), class_index)
    with torch.no_grad():
        y = torch.softmax(model(torch.from_numpy(batch)), -1).numpy()[np.arange(N), class_index]
        o = torch.softmax(model(torch.zeros(N, 3, 32, 32)), -1).numpy()[np.arange(N), class_index]
    np.testing.assert_allclose(drop, 100 * np.maximum(0, y - o) / y, rtol=1e-5)


def test_bad_inputs_are_named(setup):
    session, batch, all_maps, all_classes, _ = setup
    maps, class_index = all_maps["smooth"], all_classes["top1"]
    with pytest.raises(ValueError, match="maps have shape"):
        deletion_insertion(session, batch, maps[:, :16], class_index)
    with pytest.raises(ValueError, match="out of range"):
        average_drop_increase(session, batch, maps, class_index + 10)
    with pytest.raises(ValueError, match="NaN"):
        road(session, batch, np.full_like(maps, np.nan), class_index)
    with pytest.raises(ValueError, match="protocol='rise' fixes"):
        deletion_insertion(session, batch, maps, class_index, steps=10, protocol="rise")
    with pytest.raises(ValueError, match="order 'up'"):
        road(session, batch, maps, class_index, order="up")
    with pytest.raises(ValueError, match="does not broadcast"):
        deletion_insertion(session, batch, maps, class_index, baseline=np.zeros(5, np.float32))
