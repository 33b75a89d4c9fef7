"""The opt-in mask-based max-pool gradient (``export_cam_model(..., max_pool_gradient="mask")``):
the same gradients as autograd, ties included, without ScatterElements."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from helpers.torch_reference import autograd_layer_gradients  # noqa: E402

from onnxcam.contract import CLASS_INDEX, INPUT, Preprocessing, gradients_name  # noqa: E402
from onnxcam.export import export_cam_model  # noqa: E402
from onnxcam.export.backward_decompositions import max_pool2d_backward_by_mask  # noqa: E402


@pytest.mark.parametrize(("shape", "kernel"), [((2, 3, 8, 8), 2), ((2, 3, 9, 7), 2), ((1, 2, 9, 9), 3)])
def test_mask_gradient_equals_autograd_with_ties(shape, kernel):
    """Rounded ReLU outputs tie often (all-zero windows): the gradient goes where PyTorch's
    indices point, the first maximum of each window; rows past the last window get none."""
    torch.manual_seed(0)
    x = torch.relu(torch.randn(shape)).round().requires_grad_(True)
    y, indices = F.max_pool2d_with_indices(x, kernel)
    seed = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, seed)
    got = max_pool2d_backward_by_mask(seed, x.detach(), [kernel] * 2, [kernel] * 2, [0, 0], [1, 1], False, indices)
    assert torch.equal(got, expected)


def test_overlapping_or_padded_pools_are_left_to_the_scatter():
    x = torch.zeros(1, 1, 8, 8)
    assert max_pool2d_backward_by_mask(x[:, :, :3, :3], x, [3, 3], [2, 2], [0, 0], [1, 1], False, None) is NotImplemented
    assert max_pool2d_backward_by_mask(x[:, :, :5, :5], x, [2, 2], [2, 2], [1, 1], [1, 1], False, None) is NotImplemented


class PoolAfterLayer(nn.Module):
    """A VGG-like head: the target layer's map goes through a 2x2 max pool before the classifier."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 9 * 9, 5)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture(scope="module")
def pool_exports(tmp_path_factory):
    torch.manual_seed(3)
    model = PoolAfterLayer().eval()
    folder = tmp_path_factory.mktemp("max_pool")
    paths = {
        variant: export_cam_model(
            model, torch.zeros(1, 3, 19, 19), "features", folder / f"{variant}.onnx",
            preprocessing=Preprocessing(input_size=(19, 19)), max_pool_gradient=variant,
        )
        for variant in ("scatter", "mask")
    }
    return model, paths


def test_mask_export_has_no_scatter_and_the_same_gradients(pool_exports):
    import onnxruntime as ort

    model, paths = pool_exports
    ops = {variant: {node.op_type for node in onnx.load(str(path)).graph.node} for variant, path in paths.items()}
    assert "ScatterElements" in ops["scatter"] and "ScatterElements" not in ops["mask"]
    batch = np.random.default_rng(0).standard_normal((3, 3, 19, 19)).astype(np.float32)
    batch[0, :, :10, :10] = -5.0  # a dead corner: ReLU zeros, ties in every window there
    _, expected, _ = autograd_layer_gradients(model, "features", torch.from_numpy(batch))
    for path in paths.values():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (got,) = session.run([gradients_name("features")], {INPUT: batch, CLASS_INDEX: np.full(3, -1, np.int64)})
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_unknown_max_pool_gradient_is_refused(tmp_path):
    with pytest.raises(ValueError, match="max_pool_gradient"):
        export_cam_model(PoolAfterLayer(), torch.zeros(1, 3, 19, 19), "features", tmp_path / "x.onnx", max_pool_gradient="gather")


def test_mask_export_converts_to_fp16(pool_exports, tmp_path):
    from onnxcam.export.precision import convert_to_fp16
    from onnxcam.runtime import CamSession

    _, paths = pool_exports
    half = convert_to_fp16(paths["mask"], tmp_path / "mask.fp16.onnx")
    batch = np.random.default_rng(1).standard_normal((2, 3, 19, 19)).astype(np.float32)
    reference = CamSession(paths["mask"], providers="cpu").explain(batch, "gradcam")
    maps = CamSession(half, providers="cpu").explain(batch, "gradcam", class_index=reference.class_index).maps
    assert np.isfinite(maps).all()
    assert np.abs(maps - reference.maps).max() <= 0.05
