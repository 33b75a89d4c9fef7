"""Degenerate numbers never reach a user's map as NaN: zero gradients, constant activations,
huge and tiny logits. Maps stay finite and in [0, 1]; a flat map is all zeros."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from onnxcam.runtime import CamSession
from onnxcam.runtime.normalization import minmax_normalize

torch = pytest.importorskip("torch")


def export_tiny(tmp_path, scale_fc: float, name: str):
    """The tiny GAP + linear CNN with its classifier scaled by ``scale_fc``."""
    from torch import nn

    from onnxcam.contract import Preprocessing
    from onnxcam.export import export_cam_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    with torch.no_grad():
        model[4].weight.mul_(scale_fc)
        model[4].bias.mul_(scale_fc)
    return export_cam_model(
        model, torch.zeros(1, 3, 16, 16), ["1"], tmp_path / f"{name}.onnx", preprocessing=Preprocessing(input_size=(16, 16))
    )


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("numerics")
    return {
        name: CamSession(export_tiny(folder, scale, name), providers="cpu")
        for name, scale in [("zero", 0.0), ("huge", 1e30), ("tiny", 1e-30)]
    }


def batches() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "random": rng.standard_normal((3, 3, 16, 16)).astype(np.float32),
        "uniform": np.full((2, 3, 16, 16), 0.7, np.float32),
        "zeros": np.zeros((2, 3, 16, 16), np.float32),  # activations = conv bias: spatially constant
        "large": (1e4 * rng.standard_normal((2, 3, 16, 16))).astype(np.float32),
    }


@pytest.mark.parametrize("model", ["zero", "huge", "tiny"])
@pytest.mark.parametrize("method", ["cam", "gradcam"])
@pytest.mark.parametrize("weighting", ["relu", "abs", "abs-weights", "none"])
def test_maps_stay_finite_and_in_range(sessions, model, method, weighting):
    for name, batch in batches().items():
        maps = sessions[model].explain(batch, method=method, weighting=weighting).maps
        assert np.isfinite(maps).all(), (model, name)
        assert maps.min() >= 0.0 and maps.max() <= 1.0, (model, name)
        if model == "zero" or name == "zeros":
            assert np.array_equal(maps, np.zeros_like(maps)), (model, name)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    arrays(np.float32, (2, 5, 4), elements=st.floats(-1e6, 1e6, width=32)),
    st.floats(1e-3, 1e3),
    st.floats(-1e3, 1e3),
)
def test_normalisation_properties(maps, scale, shift):
    normalised = minmax_normalize(maps)
    assert np.isfinite(normalised).all()
    assert normalised.min() >= 0.0 and normalised.max() <= 1.0
    for image, result in zip(maps, normalised):
        if result.any():
            assert result.max() == pytest.approx(1.0) and result.min() == pytest.approx(0.0)
    # invariant to positive affine changes, up to float32 rounding
    moved_maps = (maps.astype(np.float64) * scale + shift).astype(np.float32)
    moved = minmax_normalize(moved_maps)
    spans = maps.max(axis=(1, 2)) - maps.min(axis=(1, 2))
    moved_spans = moved_maps.max(axis=(1, 2)) - moved_maps.min(axis=(1, 2))
    for i in range(len(maps)):
        # only where the contrast survives float32 rounding both before and after the shift
        resolvable = spans[i] > 1e-2 * max(1.0, np.abs(maps[i]).max())
        if resolvable and moved_spans[i] > 1e-2 * max(1.0, np.abs(moved_maps[i]).max()):
            np.testing.assert_allclose(moved[i], normalised[i], atol=1e-3)
