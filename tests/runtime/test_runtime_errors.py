"""Bad input to the runtime gets a clear error naming the problem, before ONNX Runtime sees it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest

from onnxcam.runtime import (
    CamSession,
    InputError,
    ModelFileError,
    ProviderUnavailableError,
    select_providers,
)
from onnxcam.runtime.providers import CPU, CUDA


@pytest.fixture(scope="module")
def session(exported_zoo_model) -> CamSession:
    return CamSession(exported_zoo_model("resnet18").path, providers="cpu")


def good_batch(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, 224, 224)).astype(np.float32)


@pytest.mark.parametrize(
    "batch, message",
    [
        (good_batch().astype(np.float64), "must be float32"),
        (good_batch()[:, :2], r"shape \(2, 2, 224, 224\); this model takes \(N, 3, 224, 224\)"),
        (good_batch()[:, :, :100], r"this model takes \(N, 3, 224, 224\)"),
        (good_batch()[0], r"got one array of shape \(3, 224, 224\)"),
        (good_batch().transpose(0, 2, 3, 1), r"\(N, 3, 224, 224\) \(channels last: transpose"),
        (np.zeros((0, 3, 224, 224), np.float32), "empty"),
    ],
)
def test_bad_batches(session, batch, message):
    with pytest.raises(InputError, match=message):
        session.explain(batch)


def test_nan_and_inf_pixels_are_refused(session):
    batch = good_batch(3)
    batch[1, 0, 5, 5] = np.nan
    batch[2, 2, 0, 0] = np.inf
    with pytest.raises(InputError, match=r"NaN or Inf values \(images \[1, 2\]\)"):
        session.explain(batch)


@pytest.mark.parametrize(
    "class_index, message",
    [
        (-1, "class index -1 is out of range"),
        (1000, r"class index 1000 is out of range for a model with 1000 classes \(valid: 0..999"),
        ([1, 2, 3], r"class_index has shape \(3,\); expected \(2,\)"),
        (np.array([1.0, 2.0]), "class_index must hold integers; got dtype float64"),
    ],
)
def test_bad_class_index(session, class_index, message):
    with pytest.raises(InputError, match=message):
        session.explain(good_batch(), class_index=class_index)


def test_explicit_class_index_is_returned(session):
    result = session.explain(good_batch(), class_index=[3, 7])
    assert result.class_index.tolist() == [3, 7]
    result = session.explain(good_batch(), class_index=5)
    assert result.class_index.tolist() == [5, 5]


def test_default_class_is_the_top1(session):
    result = session.explain(good_batch(3))
    assert np.array_equal(result.class_index, result.logits.argmax(axis=1))
    assert result.maps.shape == (3, 224, 224) and result.maps.dtype == np.float32
    assert result.maps.min() >= 0.0 and result.maps.max() <= 1.0


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((50, 60, 3), np.float32), r"image 0 is float32 \(50, 60, 3\); expected decoded RGB uint8"),
        (np.zeros((50, 60), np.uint8), r"expected decoded RGB uint8 \(H, W, 3\)"),
        (np.zeros((50, 60, 4), np.uint8), r"expected decoded RGB uint8 \(H, W, 3\)"),
        (np.zeros((0, 60, 3), np.uint8), "image 0 is empty"),
    ],
)
def test_bad_decoded_images(session, image, message):
    with pytest.raises(InputError, match=message):
        session.explain([image])


def test_decoded_images_give_maps_at_their_own_size(session):
    images = [np.full((50, 70, 3), 128, np.uint8), np.random.default_rng(1).integers(0, 255, (300, 451, 3), dtype=np.uint8)]
    result = session.explain(images)
    assert [m.shape for m in result.maps] == [(50, 70), (300, 451)]
    assert all(np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1 for m in result.maps)


def test_unknown_method_weighting_layer(session):
    with pytest.raises(ValueError, match=r"unknown method 'gradcamm'; valid: .*gradcam"):
        session.explain(good_batch(), method="gradcamm")
    with pytest.raises(ValueError, match=r"unknown weighting 'relu6'; valid: relu, abs, abs-weights, none"):
        session.explain(good_batch(), weighting="relu6")
    with pytest.raises(ValueError, match=r"layer 'layer9' is not in resnet18.onnx; exported layers: layer4, layer3"):
        session.explain(good_batch(), layer="layer9")


def test_missing_truncated_and_foreign_files(tmp_path, exported_zoo_model):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CamSession(tmp_path / "nope.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelFileError, match="garbage.onnx' is not a loadable ONNX model"):
        CamSession(garbage)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported_zoo_model("resnet18").path.read_bytes()[:100_000])
    with pytest.raises(ModelFileError, match="truncated.onnx' is not a loadable ONNX model"):
        CamSession(truncated)


def plain_classifier(path) -> None:
    """A valid ONNX classifier that is not CAM-ready: Flatten + MatMul."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((12, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "plain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_model_without_contract(tmp_path):
    path = tmp_path / "plain.onnx"
    plain_classifier(path)
    with pytest.raises(ModelFileError, match="has no 'onnxcam' metadata: it is not a CAM-ready model"):
        CamSession(path)


def test_wrong_contract_version_and_missing_outputs(tmp_path):
    import json

    path = tmp_path / "plain.onnx"
    plain_classifier(path)
    model = onnx.load(path)
    metadata = {
        "contract_version": 1,
        "layers": [{"name": "layer4", "shape": [3, 2, 2]}],
        "num_classes": 4,
        "preprocessing": {"input_size": [2, 2], "mean": [0, 0, 0], "std": [1, 1, 1], "channel_order": "RGB"},
    }
    onnx.helper.set_model_props(model, {"onnxcam": json.dumps(metadata)})
    onnx.save(model, path)
    with pytest.raises(ModelFileError, match=r"lacks the contract's inputs/outputs \['activations/layer4', 'class_index'"):
        CamSession(path)
    onnx.helper.set_model_props(model, {"onnxcam": json.dumps({**metadata, "contract_version": 99})})
    onnx.save(model, path)
    with pytest.raises(ModelFileError, match="contract version 99; this onnxcam reads version 1"):
        CamSession(path)


def test_provider_selection():
    assert select_providers(None, available=[CPU]) == [CPU]
    assert select_providers(None, available=[CUDA, CPU]) == [CUDA, CPU]
    assert select_providers("cpu", available=[CUDA, CPU]) == [CPU]
    assert select_providers("cuda", available=[CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(ProviderUnavailableError, match=r"CUDAExecutionProvider was asked for .* \(install onnxruntime-gpu"):
        select_providers("cuda", available=[CPU])
    with pytest.raises(ValueError, match="providers is empty"):
        select_providers([], available=[CPU])


def test_cuda_asked_for_where_unavailable(exported_zoo_model):
    import onnxruntime as ort

    if CUDA in ort.get_available_providers():
        pytest.skip("CUDA is available here; the refusal is for machines without it")
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider was asked for"):
        CamSession(exported_zoo_model("resnet18").path, providers="cuda")


@pytest.mark.cuda
def test_cuda_session_gives_the_cpu_maps(exported_zoo_model):
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu and a CUDA device (none here)")
    path = exported_zoo_model("resnet18").path
    batch = good_batch(4)
    cpu = CamSession(path, providers="cpu").explain(batch)
    cuda = CamSession(path, providers="cuda").explain(batch)
    assert np.abs(cpu.maps - cuda.maps).max() <= 1e-3


def test_runtime_imports_and_explains_without_torch(exported_zoo_model):
    """The edge-deployment promise: runtime + eval work with torch unimportable."""
    path = exported_zoo_model("resnet18").path
    script = f"""
import sys


# As if torch were not installed: its import fails and it never appears in sys.modules (a None
# entry there is a torch that some libraries, scipy.stats among them, probe and trip on).
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)


sys.meta_path.insert(0, NoTorch())
import numpy as np
import onnxcam.runtime, onnxcam.eval
from onnxcam.runtime import CamSession
result = CamSession({str(path)!r}, providers="cpu").explain(np.zeros((1, 3, 224, 224), np.float32))
assert result.maps.shape == (1, 224, 224)
assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules)
print("ok")
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
