"""ReciproCAM fused into the graph (``heatmap/reciprocam/<weighting>``: the head's nodes copied after
the layer, fed the masked copies) equals the session's numpy path, for a global-average-pool head
(pooled vectors) and a flatten + MLP head (masked maps)."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from helpers.method_models import INPUT_SIZE, SmallGapNet, SmallMlpNet, export_small  # noqa: E402

from onnxcam.contract import METADATA_KEY, TargetInfo, heatmap_name  # noqa: E402
from onnxcam.export.fused_heatmaps import FUSABLE_METHODS, add_fused_heatmaps  # noqa: E402
from onnxcam.export.precision import model_metadata, save_model, set_model_metadata  # noqa: E402
from onnxcam.graph import GraphBuilder, GraphIndex  # noqa: E402
from onnxcam.runtime import CamSession  # noqa: E402
from onnxcam.runtime.methods import ReciproCAM  # noqa: E402

WEIGHTINGS = ("relu", "abs", "none")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def fused_models(tmp_path_factory):
    """GAP head (its classifier scaled up: a random net's near-uniform probabilities give maps whose
    span is at float32's rounding of the scores) and flatten + MLP head, fused at ``features``."""
    folder = tmp_path_factory.mktemp("fused_reciprocam")
    torch.manual_seed(5)
    gap, mlp = SmallGapNet(), SmallMlpNet()
    with torch.no_grad():
        gap.fc.weight.mul_(30)
    fused = [("reciprocam", weighting) for weighting in WEIGHTINGS]
    return {
        "gap": export_small(gap, folder, "gap", fused=fused),
        "mlp": export_small(mlp, folder, "mlp", fused=fused),
        "mlp_plain": export_small(mlp, folder, "mlp_plain"),
    }


@pytest.mark.parametrize("model", ["gap", "mlp"])
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("class_index", [None, 4])
def test_fused_reciprocam_equals_the_numpy_path(fused_models, model, n, class_index):
    session = CamSession(fused_models[model], providers="cpu")
    batch = np.random.default_rng(n).standard_normal((n, 3, *INPUT_SIZE)).astype(np.float32)
    for weighting in WEIGHTINGS:
        fused = session.explain(batch, "reciprocam", weighting, class_index=class_index)
        numpy_path = session.explain(batch, "reciprocam", weighting, class_index=class_index, use_fused=False)
        assert fused.maps.shape == (n, *INPUT_SIZE)
        np.testing.assert_array_equal(fused.class_index, numpy_path.class_index)
        assert np.abs(fused.maps - numpy_path.maps).max() <= TOLERANCE, (model, n, class_index, weighting)


@pytest.mark.parametrize("model", ["gap", "mlp"])
def test_graph_raw_maps_follow_the_instance_options(fused_models, model):
    """The hook honours ``mask`` and ``score`` (the fused output uses the defaults): gaussian masks
    (a product for the GAP head), logit scores, raw maps at the layer's resolution."""
    proto = onnx.load(str(fused_models[model]))
    layer = model_metadata(proto).layers[0]
    method = ReciproCAM(score="logit", mask="gaussian")
    b = GraphBuilder(18, scope="test", taken=GraphIndex(proto.graph).names())
    raw = method.graph_raw_maps(b, layer, "none", proto, TargetInfo())
    b.add_to(proto.graph)
    proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(raw))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(2).standard_normal((3, 3, *INPUT_SIZE)).astype(np.float32)
    reference = CamSession(fused_models[model], providers="cpu")
    for classes in (None, [1, 0, 5]):
        feed = np.full(3, -1) if classes is None else np.array(classes)
        (in_graph,) = session.run([raw], {"input": batch, "class_index": feed})
        expected = reference.explain(batch, method, "none", class_index=classes).raw_maps
        np.testing.assert_allclose(in_graph[:, 0], expected, rtol=1e-5, atol=1e-5)


def test_a_gap_head_gets_pooled_vectors_and_an_mlp_head_masked_maps(fused_models):
    """The GAP copy starts after the mean (one (N*hw, C, 1, 1) input, no ReduceMean copied); the
    MLP copy repeats the max pooling on the (N*hw, C, h, w) masked maps."""
    ops = {}
    for name in ("gap", "mlp"):
        nodes = onnx.load(str(fused_models[name])).graph.node
        ops[name] = {n.op_type for n in nodes if n.name.startswith("onnxcam/heatmap/reciprocam/")}
    assert "ReduceMean" not in ops["gap"] and "MaxPool" not in ops["gap"]
    assert {"MaxPool", "Gemm", "Softmax", "GatherElements"} <= ops["mlp"]


def test_a_reshape_with_a_fixed_batch_is_copied_for_any_number_of_rows(fused_models, tmp_path):
    """A static-batch export writes its flatten as Reshape(x, [1, 288]): the copy of the head runs
    N * h * w rows, so the copy keeps the input's leading size instead."""
    model = onnx.load(str(fused_models["mlp_plain"]))
    initializers = {init.name: init for init in model.graph.initializer}
    (shape,) = {
        node.input[1]: initializers[node.input[1]]
        for node in model.graph.node
        if node.op_type == "Reshape" and node.input[1] in initializers
        and list(onnx.numpy_helper.to_array(initializers[node.input[1]])) == [-1, 288]
    }.values()
    shape.CopyFrom(onnx.numpy_helper.from_array(np.array([1, 288], np.int64), shape.name))
    set_model_metadata(model, add_fused_heatmaps(model, model_metadata(model), [("reciprocam", "relu")]))
    static = ort.InferenceSession(save_model(model, tmp_path / "static.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal((1, 3, *INPUT_SIZE)).astype(np.float32)
    (maps,) = static.run([heatmap_name("reciprocam", "relu")], {"input": batch, "class_index": np.array([-1])})
    expected = CamSession(fused_models["mlp_plain"], providers="cpu").explain(batch, "reciprocam").maps
    assert np.abs(maps - expected).max() <= TOLERANCE


def test_unfusable_reciprocam_requests_are_refused(fused_models):
    model = onnx.load(str(fused_models["mlp_plain"]))
    metadata = model_metadata(model)
    with pytest.raises(ValueError, match="abs-weights.*'relu', 'abs' or 'none'"):
        add_fused_heatmaps(model, metadata, [("reciprocam", "abs-weights")])
    with pytest.raises(ValueError, match="'vit-reciprocam' cannot be fused"):
        add_fused_heatmaps(model, metadata, [("vit-reciprocam", "relu")])
    with pytest.raises(ValueError, match="class logit only.*'probability' target"):
        add_fused_heatmaps(model, dataclasses.replace(metadata, target=TargetInfo("probability")), [("reciprocam", "relu")])
    assert "reciprocam" in FUSABLE_METHODS and "vit-reciprocam" not in FUSABLE_METHODS


def test_cli_export_fuses_reciprocam(tmp_path, capsys):
    """``onnxcam export --fused reciprocam:relu`` on a zoo model (resnet18: a GAP head)."""
    from onnxcam.apps.cli import main

    out = tmp_path / "r18.onnx"
    assert main(["export", "--arch", "resnet18", "--fused", "reciprocam:relu", "--out", str(out)]) == 0
    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert '"method": "reciprocam"' in props[METADATA_KEY]
    session = CamSession(out, providers="cpu")
    batch = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    fused = session.explain(batch, "reciprocam")
    assert np.abs(fused.maps - session.explain(batch, "reciprocam", use_fused=False).maps).max() <= TOLERANCE
