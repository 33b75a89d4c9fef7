"""CamSession(perturbation_model=...): Score-CAM's and occlusion's extra forward passes on another
file of the same network (its static-int8 copy), the main pass on the fp32 file."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from helpers.torch_reference import cosine  # noqa: E402

from onnxcam.runtime import CamSession  # noqa: E402
from onnxcam.runtime.methods import ScoreCAM  # noqa: E402


@pytest.fixture(scope="module")
def int8_copy(tiny_cam_model, tmp_path_factory):
    from onnxcam.export.quantize import quantize_cam_model

    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(8)]
    return quantize_cam_model(tiny_cam_model, photos, tmp_path_factory.mktemp("int8") / "tiny.int8.onnx")


def test_masked_passes_run_on_the_perturbation_model(tiny_cam_model, int8_copy):
    batch = np.random.default_rng(1).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    method = ScoreCAM(batch_size=8)
    fp32 = CamSession(tiny_cam_model, providers="cpu").explain(batch, method, class_index=[1, 4])
    same = CamSession(tiny_cam_model, providers="cpu", perturbation_model=tiny_cam_model)
    np.testing.assert_array_equal(same.explain(batch, method, class_index=[1, 4]).maps, fp32.maps)
    mixed = CamSession(tiny_cam_model, providers="cpu", perturbation_model=int8_copy)
    result = mixed.explain(batch, method, class_index=[1, 4])
    # The main pass is the fp32 model's; only the masked passes ran on the int8 copy.
    np.testing.assert_array_equal(result.logits, fp32.logits)
    assert not np.array_equal(result.raw_maps, fp32.raw_maps)
    assert min(cosine(a, b) for a, b in zip(result.maps, fp32.maps)) > 0.9
