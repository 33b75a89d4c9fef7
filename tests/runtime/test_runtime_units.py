"""Hand-computed cases for the runtime's pure functions: weighting, normalisation, resizing."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcam.runtime.normalization import minmax_normalize, zero_nonfinite_maps
from onnxcam.runtime.resize import bilinear_taps, resize_maps
from onnxcam.runtime.weighting import WEIGHTINGS, weighted_activation_sum

# Two channels of a 1x2 map; weights +1 and -2.
ACTIVATIONS = np.array([[[[1.0, 0.0]], [[1.0, 1.0]]]], dtype=np.float32)  # (1, 2, 1, 2)
WEIGHTS = np.array([[1.0, -2.0]], dtype=np.float32)  # (1, 2)


@pytest.mark.parametrize(
    "weighting, expected",
    [
        ("none", [-1.0, -2.0]),  # 1*[1, 0] - 2*[1, 1]
        ("relu", [0.0, 0.0]),
        ("abs", [1.0, 2.0]),
        ("abs-weights", [3.0, 2.0]),  # 1*[1, 0] + 2*[1, 1]
    ],
)
def test_weightings_by_hand(weighting, expected):
    result = weighted_activation_sum(WEIGHTS, ACTIVATIONS, weighting)
    assert result.shape == (1, 1, 2)
    np.testing.assert_allclose(result[0, 0], expected)


def test_unknown_weighting_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown weighting 'square'; valid: relu, abs, abs-weights, none"):
        weighted_activation_sum(WEIGHTS, ACTIVATIONS, "square")
    assert WEIGHTINGS == ("relu", "abs", "abs-weights", "none")


def test_minmax_normalize_by_hand():
    maps = np.array([[[2.0, 4.0], [6.0, 10.0]]])
    np.testing.assert_allclose(minmax_normalize(maps)[0], [[0.0, 0.25], [0.5, 1.0]])


@pytest.mark.parametrize("value", [0.0, 5.0, -3.0, 1e-30, 1e30])
def test_constant_map_becomes_zeros_never_nan(value):
    maps = np.full((2, 7, 7), value, dtype=np.float32)
    result = minmax_normalize(maps)
    assert result.dtype == np.float32
    assert np.array_equal(result, np.zeros_like(result))


def test_tiny_but_real_contrast_is_kept():
    """Random-init MobileNetV2 activations are ~1e-9: scale must not be mistaken for flatness."""
    maps = np.array([[[1e-9, 3e-9]]], dtype=np.float32)
    np.testing.assert_allclose(minmax_normalize(maps)[0, 0], [0.0, 1.0])


def test_nonfinite_maps_become_zeros_with_a_warning():
    maps = np.ones((3, 2, 2), dtype=np.float32)
    maps[1, 0, 0] = np.nan
    with pytest.warns(RuntimeWarning, match=r"images \[1\]"):
        result = zero_nonfinite_maps(maps)
    assert np.isfinite(result).all()
    assert np.array_equal(result[1], np.zeros((2, 2)))
    assert np.array_equal(result[0], maps[0])


def test_bilinear_taps_by_hand():
    # 2 -> 4: output centres at input coordinates -0.25, 0.25, 0.75, 1.25 (clamped to [0, 1]).
    low, high, frac = bilinear_taps(4, 2)
    np.testing.assert_array_equal(low, [0, 0, 0, 1])
    np.testing.assert_array_equal(high, [1, 1, 1, 1])
    np.testing.assert_allclose(frac, [0.0, 0.25, 0.75, 0.0])


def test_resize_maps_matches_torch_interpolate():
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(0).random((3, 7, 5)).astype(np.float32)
    for size in [(224, 224), (500, 741), (3, 2)]:
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(maps)[:, None], size=size, mode="bilinear", align_corners=False
        )[:, 0].numpy()
        np.testing.assert_allclose(resize_maps(maps, size), expected, atol=1e-6)


def test_without_spinning_copies_the_options_and_leaves_them_alone():
    import onnxruntime as ort

    from onnxcam.runtime.session_options import ALLOW_SPINNING, default_session_options, without_spinning

    options = default_session_options(3)
    options.enable_profiling = True
    copy = without_spinning(options)
    assert copy.intra_op_num_threads == 3 and copy.enable_profiling
    assert copy.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert copy.get_session_config_entry(ALLOW_SPINNING) == "0"
    with pytest.raises(RuntimeError, match=ALLOW_SPINNING):
        options.get_session_config_entry(ALLOW_SPINNING)


def test_cam_result_repr_is_short():
    from onnxcam.runtime.session import CamResult

    result = CamResult(
        maps=[np.zeros((300, 451), np.float32), np.zeros((20, 30), np.float32)],
        class_index=np.array([285, 3]),
        logits=np.zeros((2, 1000), np.float32),
        raw_maps=np.zeros((2, 7, 7), np.float32),
        layer="layer4",
        method="gradcam",
        weighting="abs",
    )
    text = repr(result)
    assert len(text) < 300 and "class_index=[285, 3]" in text and "(300, 451)" in text and "logits (2, 1000)" in text
