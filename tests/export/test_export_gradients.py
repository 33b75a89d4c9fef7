"""Gradients in the exported ONNX graph against torch autograd, for every zoo architecture at its
last conv block and an intermediate layer, batch 1 and batch 5 through the same file.

Exactness is measured with ORT's layout-preserving optimisations (EXTENDED). ORT_ENABLE_ALL, the
runtime's default for speed, adds NCHWc convolution kernels that sum in another order; on deep
stacks without BatchNorm (VGG) that flips a few ReLU masks at near-zero pre-activations, which
moves the mean relative error to ~1e-4 while cosine stays above 0.9999 (checked below).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from onnxcam.contract import CLASS_INDEX, INPUT, METADATA_KEY, ModelMetadata  # noqa: E402
from helpers.torch_reference import autograd_layer_gradients, cosine, exact_session, mean_relative_error  # noqa: E402

ARCHS = ["resnet18", "resnet50", "vgg16", "mobilenet_v2", "efficientnet_lite0"]



@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_match_autograd(exported_zoo_model, arch):
    exported = exported_zoo_model(arch)
    session = exact_session(exported.path)
    fast = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    for batch_size in (1, 5):
        batch = torch.randn(batch_size, 3, 224, 224, generator=generator)
        for layer in (exported.entry.last_layer, exported.entry.middle_layer):
            ref_acts, ref_grads, ref_logits = autograd_layer_gradients(exported.model, layer, batch)
            logits, acts, grads = session.run(
                ["logits", f"activations/{layer}", f"gradients/{layer}"],
                {INPUT: batch.numpy(), CLASS_INDEX: np.full(batch_size, -1, dtype=np.int64)},
            )
            assert grads.shape == ref_grads.shape
            assert np.array_equal(logits.argmax(1), ref_logits.argmax(1))
            assert cosine(grads, ref_grads) >= 0.9999, (arch, layer, batch_size)
            assert mean_relative_error(grads, ref_grads) <= 1e-4, (arch, layer, batch_size)
            assert mean_relative_error(acts, ref_acts) <= 1e-4, (arch, layer, batch_size)
            (fast_grads,) = fast.run(
                [f"gradients/{layer}"],
                {INPUT: batch.numpy(), CLASS_INDEX: np.full(batch_size, -1, dtype=np.int64)},
            )
            assert cosine(fast_grads, ref_grads) >= 0.9999, (arch, layer, batch_size)


def test_explicit_class_index_is_differentiated(exported_zoo_model):
    exported = exported_zoo_model("resnet18")
    session = exact_session(exported.path)
    batch = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    classes = torch.tensor([7, 999, 0])
    layer = exported.entry.last_layer
    _, ref_grads, _ = autograd_layer_gradients(exported.model, layer, batch, classes)
    (grads,) = session.run([f"gradients/{layer}"], {INPUT: batch.numpy(), CLASS_INDEX: classes.numpy()})
    assert cosine(grads, ref_grads) >= 0.9999
    assert mean_relative_error(grads, ref_grads) <= 1e-4


def test_exported_file_follows_the_contract(exported_zoo_model):
    exported = exported_zoo_model("mobilenet_v2")
    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model, full_check=True)
    inputs = {i.name: i for i in model.graph.input}
    batch_dim = inputs[INPUT].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value, "batch must be dynamic"
    assert inputs[CLASS_INDEX].type.tensor_type.elem_type == onnx.TensorProto.INT64
    metadata = ModelMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert metadata.layer_names == ("features.18", "features.13")
    assert metadata.layer("features.18").shape == (1280, 7, 7)
    assert metadata.layer("features.18").has_cam_weights
    assert not metadata.layer("features.13").has_cam_weights
    assert metadata.num_classes == 1000
    assert metadata.arch == "mobilenet_v2"
    assert {"onnxcam", "torch", "onnx"} <= set(metadata.exporter)


def test_unknown_layer_lists_nearest_names(tmp_path):
    from onnxcam.export import LayerNotFoundError, export_cam_model
    from onnxcam.export.zoo import build_model

    with pytest.raises(LayerNotFoundError, match=r"unknown layer 'layer5'.*'layer4'"):
        export_cam_model(build_model("resnet18"), torch.zeros(1, 3, 224, 224), "layer5", tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir()), "nothing may be written on failure"


def test_shared_module_is_refused(tmp_path):
    from onnxcam.export import export_cam_model
    from onnxcam.export.zoo import build_model

    # torchvision's BasicBlock calls its one ReLU module twice per forward pass.
    with pytest.raises(ValueError, match=r"'layer4.1.relu' ran 2 times"):
        export_cam_model(build_model("resnet18"), torch.zeros(1, 3, 224, 224), "layer4.1.relu", tmp_path / "m.onnx")


def test_inner_layer_with_in_place_ops_downstream(tmp_path):
    """layer3.1.bn2's output is modified in place (``out += identity``) right after it."""
    from onnxcam.export import export_cam_model
    from onnxcam.export.zoo import build_model

    torch.manual_seed(0)
    model = build_model("resnet18")
    path = export_cam_model(model, torch.zeros(1, 3, 224, 224), ["layer3.1.conv2"], tmp_path / "m.onnx")
    session = exact_session(path)
    batch = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    _, ref_grads, _ = autograd_layer_gradients(model, "layer3.1.conv2", batch)
    (grads,) = session.run(["gradients/layer3.1.conv2"], {INPUT: batch.numpy(), CLASS_INDEX: np.full(2, -1)})
    assert cosine(grads, ref_grads) >= 0.9999
    assert mean_relative_error(grads, ref_grads) <= 1e-4
