"""Maps from CamSession against peer implementations on the same weights and input."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

from onnxcam.runtime import CamSession  # noqa: E402
from helpers.torch_reference import minmax  # noqa: E402



@pytest.mark.parametrize("arch", ["resnet18", "vgg16"])
def test_gradcam_matches_captum_layergradcam(exported_zoo_model, arch):
    exported = exported_zoo_model(arch)
    layer = exported.entry.last_layer
    batch = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    result = CamSession(exported.path, providers="cpu").explain(batch.numpy(), "gradcam", "relu", layer=layer)

    module = dict(exported.model.named_modules())[layer]
    gradcam = captum_attr.LayerGradCam(exported.model, module)
    target = torch.from_numpy(result.class_index)
    attributions = gradcam.attribute(batch, target=target, relu_attributions=True)
    upsampled = captum_attr.LayerAttribution.interpolate(attributions, (224, 224), interpolate_mode="bilinear")
    expected = minmax(upsampled[:, 0].detach().numpy().astype(np.float64))

    assert result.maps.shape == (4, 224, 224)
    assert np.abs(result.maps - expected).max() <= 1e-4


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "efficientnet_lite0"])
def test_cam_equals_gradcam_for_gap_linear_heads(exported_zoo_model, arch):
    """With GAP + linear, dy^c/dA^k_ij = w_k^c / Z, so Grad-CAM is CAM scaled by 1/Z > 0."""
    exported = exported_zoo_model(arch)
    session = CamSession(exported.path, providers="cpu")
    batch = np.random.default_rng(6).standard_normal((3, 3, 224, 224)).astype(np.float32)
    for weighting in ("relu", "abs", "abs-weights", "none"):
        cam = session.explain(batch, "cam", weighting)
        gradcam = session.explain(batch, "gradcam", weighting)
        assert np.abs(cam.maps - gradcam.maps).max() <= 1e-5, weighting
        assert np.array_equal(cam.class_index, gradcam.class_index)


def test_cam_refused_without_gap_linear_head(exported_zoo_model):
    exported = exported_zoo_model("vgg16")  # flatten + three linear layers: no CAM
    session = CamSession(exported.path, providers="cpu")
    batch = np.zeros((1, 3, 224, 224), dtype=np.float32)
    with pytest.raises(ValueError, match=r"method 'cam' needs a global-average-pool \+ linear head"):
        session.explain(batch, "cam")
