"""int8 and fp16 copies of CAM-ready models: what they keep in float, that they keep the contract,
and how faithful their maps are (EfficientNet-Lite0 with its real weights, on the demo photos)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")  # the models are exported from torch here; quantizing needs none

from onnxcam.demo import calibration_photos, demo_photo_images  # noqa: E402
from helpers.torch_reference import cosine  # noqa: E402

from onnxcam.cli import main  # noqa: E402
from onnxcam.contract import (  # noqa: E402
    CLASS_INDEX,
    LOGITS,
    METADATA_KEY,
    ModelMetadata,
    activations_name,
    gradients_name,
)
from onnxcam.eval import box_from_heatmap, box_iou  # noqa: E402
from onnxcam.export.precision import convert_to_fp16  # noqa: E402
from onnxcam.export.quantize import (  # noqa: E402
    _unshare_backward_weights,
    backward_node_names,
    calibration_images,
    downstream_nodes,
    quantize_cam_model,
)
from onnxcam.runtime import CamSession  # noqa: E402

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def _metadata(path) -> ModelMetadata:
    return ModelMetadata.from_json({p.key: p.value for p in onnx.load(str(path)).metadata_props}[METADATA_KEY])


def _random_photos(n: int, size: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8) for _ in range(n)]


def test_downstream_nodes_follow_data_dependencies():
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Relu", ["x"], ["a"], name="forward"),
            onnx.helper.make_node("Mul", ["a", "c"], ["b"], name="mixed"),
            onnx.helper.make_node("Neg", ["b"], ["d"], name="after"),
            onnx.helper.make_node("Abs", ["x"], ["e"], name="other"),
        ],
        "g", [], [],
    )
    assert [node.name for node in downstream_nodes(graph, "c")] == ["mixed", "after"]
    assert [node.name for node in downstream_nodes(graph, "x")] == ["forward", "mixed", "after", "other"]


def test_backward_nodes_are_the_gradient_subgraph(exported_zoo_model):
    """ResNet-18 at layer4 and layer3: layer3's gradient flows back through layer4's convolutions."""
    exported = exported_zoo_model("resnet18")
    model = onnx.load(str(exported.path))
    backward = set(backward_node_names(model))
    producers = {output: node.name for node in model.graph.node for output in node.output}
    for layer in (exported.entry.last_layer, exported.entry.middle_layer):
        assert producers[gradients_name(layer)] in backward
        assert producers[activations_name(layer)] not in backward
    assert producers[LOGITS] not in backward
    op_types = {kind: {node.op_type for node in model.graph.node if (node.name in backward) == kind} for kind in (True, False)}
    assert "ConvTranspose" in op_types[True] and "ConvTranspose" not in op_types[False]
    assert "Conv" in op_types[False] and "Conv" not in op_types[True]


@pytest.mark.parametrize("include_backward", [False, True])
def test_quantized_model_keeps_the_contract_and_float_gradients(tiny_cam_model, tmp_path, include_backward):
    out = quantize_cam_model(tiny_cam_model, _random_photos(6), tmp_path / "tiny.int8.onnx", include_backward=include_backward)
    model = onnx.load(str(out))
    backward = downstream_nodes(model.graph, CLASS_INDEX)
    forward = [node for node in model.graph.node if node not in backward]
    assert QDQ_OPS <= {node.op_type for node in forward}
    # The gradient subgraph gets Q/DQ nodes of its own only when asked to.
    assert bool(QDQ_OPS & {node.op_type for node in backward}) == include_backward
    metadata = _metadata(out)
    assert metadata.layers == _metadata(tiny_cam_model).layers
    assert "int8" in metadata.exporter["quantization"]
    batch = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    fp32 = CamSession(tiny_cam_model, providers="cpu").explain(batch, "gradcam")
    int8 = CamSession(out, providers="cpu").explain(batch, "gradcam", class_index=fp32.class_index)
    assert int8.maps.shape == fp32.maps.shape and np.isfinite(int8.maps).all()
    assert int8.maps.dtype == np.float32


def test_quantize_refuses_an_empty_calibration_set(tiny_cam_model, tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        quantize_cam_model(tiny_cam_model, [], tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_calibration_images_from_a_folder(tmp_path):
    from onnxcam.runtime.image_io import write_png

    for name in ("b.png", "a.png"):
        write_png(tmp_path / name, np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in calibration_images(tmp_path)] == ["a.png", "b.png"]
    with pytest.raises(ValueError, match="no image files"):
        calibration_images(_empty(tmp_path))
    with pytest.raises(FileNotFoundError):
        calibration_images([tmp_path / "missing.png"])


def _empty(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_int8_gradcam_maps_keep_cosine_to_fp32_on_the_demo_photos(edge_zoo_model):
    """The issue's bar: EfficientNet-Lite0 int8 Grad-CAM maps keep cosine >= 0.99 to fp32, for the
    same class, on every demo photo; the boxes derived from them hardly move."""
    names, photos = demo_photo_images()
    fp32 = CamSession(edge_zoo_model("efficientnet_lite0"), providers="cpu")
    int8 = CamSession(edge_zoo_model("efficientnet_lite0", "int8"), providers="cpu")
    reference = fp32.explain(photos, "gradcam")
    quantized = int8.explain(photos, "gradcam", class_index=reference.class_index)
    for name, a, b in zip(names, reference.maps, quantized.maps):
        assert cosine(a, b) >= 0.99, (name, cosine(a, b))
        iou = float(box_iou(box_from_heatmap(a, 0.15)[None], box_from_heatmap(b, 0.15)[None])[0, 0])
        assert iou >= 0.8, (name, iou)
    # The same holds for the maps fused into the graph (a preprocessed batch takes that path).
    batch, _ = fp32.prepare(photos)
    fused32 = fp32.explain(batch, "gradcam", class_index=reference.class_index).maps
    fused8 = int8.explain(batch, "gradcam", class_index=reference.class_index).maps
    assert min(cosine(a, b) for a, b in zip(fused32, fused8)) >= 0.99
    assert np.mean(int8.explain(photos, "gradcam").class_index == reference.class_index) >= 0.8


def test_fp16_maps_stay_finite_and_close(edge_zoo_model, tmp_path):
    """fp16 is meant for CUDA; ONNX Runtime's CPU kernels run it too, which checks the conversion."""
    source = edge_zoo_model("efficientnet_lite0")
    out = convert_to_fp16(source, tmp_path / "lite0.fp16.onnx")
    assert out.stat().st_size < 0.6 * source.stat().st_size
    model = onnx.load(str(out))
    assert {i.type.tensor_type.elem_type for i in model.graph.input} == {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    assert "fp16" in _metadata(out).exporter["precision"]
    _, photos = demo_photo_images()
    reference = CamSession(source, providers="cpu").explain(photos[:2], "gradcam")
    half = CamSession(out, providers="cpu")
    for fused in (True, False):
        batch, _ = half.prepare(photos[:2])
        maps = half.explain(batch, "gradcam", class_index=reference.class_index, use_fused=fused).maps
        assert np.isfinite(maps).all() and maps.max() == 1.0
    maps = half.explain(photos[:2], "gradcam", class_index=reference.class_index).maps
    assert min(cosine(a, b) for a, b in zip(maps, reference.maps)) >= 0.99


def test_quantize_cli_int8_and_fp16(tiny_cam_model, tmp_path, capsys):
    from onnxcam.runtime.image_io import write_png

    for i, photo in enumerate(_random_photos(3)):
        write_png(tmp_path / "calibration" / f"{i}.png", photo)
    out = tmp_path / "tiny.int8.onnx"
    assert main(["quantize", str(tiny_cam_model), "--calibration", str(tmp_path / "calibration"), "--out", str(out)]) == 0
    assert "calibrated on 3 images" in capsys.readouterr().out
    assert "per-channel" in _metadata(out).exporter["quantization"]
    assert main(["quantize", str(tiny_cam_model), "--fp16", "--out", str(tmp_path / "tiny.fp16.onnx")]) == 0
    assert main(["quantize", str(tiny_cam_model), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "--calibration" in capsys.readouterr().err


def test_quantize_and_convert_without_torch(tiny_cam_model, tmp_path):
    """Quantizing, fp16 and ORT-format conversion are deployment steps: they run where torch is absent."""
    script = f"""
import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
import numpy as np
from onnxcam.cli import main
from onnxcam.runtime.image_io import write_png
write_png({str(tmp_path / 'c' / '0.png')!r}, np.full((20, 20, 3), 128, np.uint8))
assert main(["quantize", {str(tiny_cam_model)!r}, "--calibration", {str(tmp_path / 'c')!r}, "--out", {str(tmp_path / 'q.onnx')!r}]) == 0
assert main(["quantize", {str(tiny_cam_model)!r}, "--fp16", "--out", {str(tmp_path / 'h.onnx')!r}]) == 0
assert main(["mobile", {str(tiny_cam_model)!r}, "--out-dir", {str(tmp_path / 'm')!r}]) == 0
assert not any(n == "torch" or n.startswith("torch.") for n in sys.modules if sys.modules[n] is not None)
print("ok")
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().endswith("ok")


def test_backward_weights_get_their_own_copy():
    weight = onnx.numpy_helper.from_array(np.arange(24, dtype=np.float32).reshape(3, 2, 2, 2), "w")
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Conv", ["x", "w"], ["y"], name="forward"),
            onnx.helper.make_node("ConvTranspose", ["g", "w"], ["z"], name="backward"),
        ],
        "g", [], [], initializer=[weight],
    )
    model = onnx.helper.make_model(graph)
    _unshare_backward_weights(model, {"backward"})
    assert list(model.graph.node[0].input) == ["x", "w"]
    assert list(model.graph.node[1].input) == ["g", "w/backward"]
    copies = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert np.array_equal(copies["w"], copies["w/backward"])


def test_include_backward_quantizes_transposed_convolutions_per_channel(exported_zoo_model, tmp_path):
    """ResNet-18's layer3 gradient runs back through layer4: its ConvTransposes share weights with
    the forward Convs, and per-channel int8 of both must still load and explain."""
    exported = exported_zoo_model("resnet18")
    out = quantize_cam_model(exported.path, calibration_photos(2), tmp_path / "r18.int8.onnx", include_backward=True)
    model = onnx.load(str(out))
    dequantized = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    transposed = [node for node in model.graph.node if node.op_type == "ConvTranspose"]
    assert transposed and all(node.input[1] in dequantized for node in transposed)
    _, photos = demo_photo_images()
    layer = exported.entry.middle_layer
    reference = CamSession(exported.path, providers="cpu").explain(photos[:2], "gradcam", layer=layer)
    maps = CamSession(out, providers="cpu").explain(photos[:2], "gradcam", layer=layer, class_index=reference.class_index).maps
    assert all(np.isfinite(m).all() for m in maps)  # decoded photos: one map per photo, at its size
    assert min(cosine(a, b) for a, b in zip(maps, reference.maps)) >= 0.9
