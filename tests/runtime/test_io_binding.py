"""The IOBinding path (CamSession(io_binding=True), onnxcam.runtime.io_binding) on CPU: ONNX
Runtime binds host buffers too, so the path a CUDA session takes is exercised without a GPU."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS
from onnxcam.runtime import CamSession
from onnxcam.runtime.io_binding import binding_device, run_bound


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "reciprocam"])
def test_bound_runs_give_the_same_maps(tiny_cam_model, method):
    batch = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    plain = CamSession(tiny_cam_model, providers="cpu").explain(batch, method)
    bound = CamSession(tiny_cam_model, providers="cpu", io_binding=True).explain(batch, method)
    np.testing.assert_array_equal(bound.logits, plain.logits)
    np.testing.assert_array_equal(bound.maps, plain.maps)


def test_run_bound_takes_numpy_and_ortvalue_feeds(tiny_cam_model):
    session = ort.InferenceSession(str(tiny_cam_model), providers=["CPUExecutionProvider"])
    assert binding_device(session) == "cpu"
    batch = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    # A non-contiguous batch is made contiguous before binding its memory.
    strided = np.repeat(batch, 2, axis=3)[..., ::2]
    classes = np.array([1, -1], dtype=np.int64)
    names = [LOGITS, "activations/features"]
    expected = session.run(names, {INPUT: batch, CLASS_INDEX: classes})
    feeds = {INPUT: ort.OrtValue.ortvalue_from_numpy(batch), CLASS_INDEX: classes}
    for got in (run_bound(session, names, feeds), run_bound(session, names, {INPUT: strided, CLASS_INDEX: classes})):
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
