"""Edge parity: a fused CAM-ready model gives the same outputs under onnxruntime-node,
onnxruntime-web (wasm backend, under Node) and OpenVINO as under onnxruntime in Python.

Skips, with the reason, where Node.js/npm, the npm packages or OpenVINO are missing
(``make test`` installs the npm packages when npm is present; ``make edge-test`` runs only these).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("torch")  # the models are exported from torch here; the runtimes need none

from helpers.edge_harness import JS_RUNTIMES, js_runtime_missing, openvino_missing, run_in_js, run_in_openvino  # noqa: E402
from helpers.edge_models import FUSED  # noqa: E402
from onnxcam.demo import demo_photo_images  # noqa: E402
from helpers.torch_reference import cosine  # noqa: E402

from onnxcam.contract import CLASS_INDEX, INPUT, heatmap_name  # noqa: E402
from onnxcam.runtime import CamSession  # noqa: E402

RUNTIMES = (*JS_RUNTIMES, "openvino")
MAP_TOLERANCE = 1e-4  # max abs on [0, 1] maps, the bar
EXPLAINED_CLASS = 281  # "tabby cat", asked for explicitly on the second image; the first explains its top-1


def _skip_if_missing(runtime: str) -> None:
    """Skip before any model is exported when ``runtime`` cannot run here."""
    reason = openvino_missing() if runtime == "openvino" else js_runtime_missing(runtime)
    if reason:
        pytest.skip(reason)


def _feeds(path) -> dict[str, np.ndarray]:
    """Two demo photos preprocessed for the model, one explained at its top-1 class."""
    _, images = demo_photo_images()
    batch, _ = CamSession(path, providers="cpu").prepare(images[:2])
    return {INPUT: batch, CLASS_INDEX: np.array([-1, EXPLAINED_CLASS], dtype=np.int64)}


def _run(runtime: str, path, feeds, names, tmp_path) -> dict[str, np.ndarray]:
    if runtime == "openvino":
        return run_in_openvino(path, feeds, names)
    return run_in_js(runtime, path, feeds, names, tmp_path / runtime).outputs


def _reference(path, feeds) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_lite0"])
def test_fused_model_outputs_match_onnxruntime_python(edge_zoo_model, arch, runtime, tmp_path):
    _skip_if_missing(runtime)
    path = edge_zoo_model(arch)
    feeds = _feeds(path)
    expected = _reference(path, feeds)
    got = _run(runtime, path, feeds, list(expected), tmp_path)
    for method, weighting in FUSED:  # fused maps: the max-abs bar
        name = heatmap_name(method, weighting)
        assert got[name].shape == expected[name].shape
        assert np.abs(got[name] - expected[name]).max() <= MAP_TOLERANCE, (runtime, name)
    # logits, activations, gradients, CAM weights: what a host computes CAM / Grad-CAM from
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        assert np.abs(got[name] - value).max() <= 1e-4 * max(1.0, np.abs(value).max()), (runtime, name)
        if name.startswith("gradients/"):
            assert cosine(got[name], value) >= 0.9999, (runtime, name)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_int8_model_maps_match_onnxruntime_python(edge_zoo_model, runtime, tmp_path):
    """The int8 (QDQ) EfficientNet-Lite0 runs everywhere; int8 kernels differ between runtimes
    (rounding, fused requantisation), so maps are compared by cosine, not to 1e-4."""
    _skip_if_missing(runtime)
    path = edge_zoo_model("efficientnet_lite0", "int8")
    feeds = _feeds(path)
    names = [heatmap_name(m, w) for m, w in FUSED]
    expected = _reference(path, feeds)
    got = _run(runtime, path, feeds, names, tmp_path)
    for name in names:
        assert got[name].shape == expected[name].shape
        assert np.isfinite(got[name]).all()
        assert cosine(got[name], expected[name]) >= 0.99, (runtime, name, cosine(got[name], expected[name]))
