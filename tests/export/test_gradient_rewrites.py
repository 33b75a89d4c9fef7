"""The gradient rewrites keep every output bit for bit and replace exactly the patterns they name."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnxcam.export import export_cam_model
from onnxcam.export.gradient_rewrites import simplify_gradient_ops
from onnxcam.export.synthetic_models import SyntheticResNet

K, C = 10, 6
RNG = np.random.default_rng(0)
WEIGHT = RNG.standard_normal((K, C)).astype(np.float32)


def _model(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def _one_hot_model(product: list[onnx.NodeProto], weight: np.ndarray, classes: np.ndarray | None = None) -> onnx.ModelProto:
    """class_index (N,) -> onehot (N, K) float -> ``product`` nodes reading "onehot" and "w",
    writing "out"."""
    classes = np.arange(K, dtype=np.int64)[None] if classes is None else classes
    nodes = [
        helper.make_node("Unsqueeze", ["class_index", "axis"], ["unsqueezed"]),
        helper.make_node("Equal", ["classes", "unsqueezed"], ["equal"]),
        helper.make_node("Cast", ["equal"], ["onehot"], to=TensorProto.FLOAT),
        *product,
    ]
    initializers = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(classes, "classes"),
        numpy_helper.from_array(np.array([1], np.int64), "axis"),
    ]
    inputs = [helper.make_tensor_value_info("class_index", TensorProto.INT64, ["N"])]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", C])]
    return _model(nodes, inputs, outputs, initializers)


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["out"], feeds)[0]


def _rewritten(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    count = simplify_gradient_ops(copy)
    onnx.checker.check_model(copy)
    return copy, count


def _op_types(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


@pytest.mark.parametrize(
    "product, weight",
    [
        ([helper.make_node("MatMul", ["onehot", "w"], ["out"])], WEIGHT),
        (  # torch's linear backward: the weight through two transposes
            [
                helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
                helper.make_node("Transpose", ["wt"], ["wtt"], perm=[1, 0]),
                helper.make_node("MatMul", ["onehot", "wtt"], ["out"]),
            ],
            WEIGHT,
        ),
        ([helper.make_node("Gemm", ["onehot", "w"], ["out"], transB=1, alpha=0.5)], WEIGHT.T.copy()),
        ([helper.make_node("MatMul", ["onehot", "wt"], ["out"]), helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0])][::-1], WEIGHT.T.copy()),
    ],
    ids=["matmul", "transposed-twice", "gemm-transB-alpha", "transposed-once"],
)
def test_one_hot_product_becomes_gather_with_equal_outputs(product, weight):
    model = _one_hot_model(product, weight)
    rewritten, count = _rewritten(model)
    assert count == 1
    types = _op_types(rewritten)
    assert "Gather" in types and not {"MatMul", "Gemm", "Equal", "Cast"} & set(types)
    feeds = {"class_index": np.array([3, 0, 9, 3], np.int64)}
    after = _run(rewritten, feeds)
    np.testing.assert_array_equal(after, _run(model, feeds))
    scale = 0.5 if "gemm" in product[0].op_type.lower() else 1.0
    np.testing.assert_array_equal(after, scale * WEIGHT[feeds["class_index"]])


def test_products_that_are_not_one_hot_rows_stay():
    # A (1, K) constant that is not 0..K-1 does not make one-hot rows of the class index.
    model = _one_hot_model([helper.make_node("MatMul", ["onehot", "w"], ["out"])], WEIGHT, np.arange(1, K + 1)[None])
    rewritten, count = _rewritten(model)
    assert count == 0 and _op_types(rewritten) == _op_types(model)


def _pool_backward_model(divide_after: bool, spatial: tuple) -> onnx.ModelProto:
    """g (N, C, 1, 1) -> Expand to (N, C, *spatial) -> / 4 (before or after the Expand)."""
    shape = helper.make_node("Concat", ["batch", "rest"], ["shape"], axis=0)
    batch = [helper.make_node("Shape", ["g"], ["g_shape"]), helper.make_node("Slice", ["g_shape", "zero", "one"], ["batch"])]
    if divide_after:
        ops = [helper.make_node("Expand", ["g", "shape"], ["expanded"]), helper.make_node("Div", ["expanded", "four"], ["out"])]
    else:
        ops = [helper.make_node("Div", ["g", "four"], ["divided"]), helper.make_node("Expand", ["divided", "shape"], ["out"])]
    initializers = [
        numpy_helper.from_array(np.array([C, 2, 2], np.int64), "rest"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array(4.0, np.float32), "four"),
    ]
    inputs = [helper.make_tensor_value_info("g", TensorProto.FLOAT, ["N", C, *spatial])]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", C, 2, 2])]
    return _model([*batch, shape, *ops], inputs, outputs, initializers)


@pytest.mark.parametrize("divide_after", [True, False], ids=["torch-div-after-expand", "augment-div-before"])
def test_expand_of_a_pooled_gradient_becomes_a_broadcasting_mul(divide_after):
    model = _pool_backward_model(divide_after, (1, 1))
    rewritten, count = _rewritten(model)
    assert count == 1
    assert "Expand" not in _op_types(rewritten) and "Mul" in _op_types(rewritten)
    feeds = {"g": RNG.standard_normal((3, C, 1, 1)).astype(np.float32)}
    after = _run(rewritten, feeds)
    assert after.shape == (3, C, 2, 2)
    np.testing.assert_array_equal(after, _run(model, feeds))


def test_an_expand_whose_sizes_are_not_known_stays():
    # The input's spatial size is symbolic, so which axes the Expand broadcasts is not known.
    model = _pool_backward_model(True, ("h", "w"))
    rewritten, count = _rewritten(model)
    assert count == 0 and "Expand" in _op_types(rewritten)


def test_an_exported_classifier_has_no_product_with_its_classifier_weight(tmp_path):
    torch.manual_seed(0)
    model = SyntheticResNet().eval()
    path = export_cam_model(model, torch.zeros(1, 3, 64, 64), ["layer3"], tmp_path / "m.onnx")
    graph = onnx.load(path).graph
    ops = [node.op_type for node in graph.node]
    weight = model.fc.weight.detach().numpy()
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    gathered = [node.input[0] for node in graph.node if node.op_type == "Gather"]
    assert any(np.array_equal(initializers.get(name), weight) for name in gathered)
    assert "MatMul" not in ops and "Expand" not in ops
