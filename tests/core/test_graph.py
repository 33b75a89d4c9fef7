"""The ONNX-graph toolkit (onnxcam.graph): reading a graph with GraphIndex and writing with
GraphBuilder, on small hand-made graphs whose answers are known."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxcam.graph import (
    GraphBuilder,
    GraphIndex,
    UniqueNames,
    attribute,
    attributes,
    constants,
    default_opset,
    downstream_nodes,
    inferred_types,
    node_label,
    optional_input,
    set_metadata_prop,
)


def small_graph() -> onnx.GraphProto:
    """x (N, 3) -> Mul(x, x) -> MatMul with Transpose(w) -> Relu; plus Constant nodes of each kind."""
    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["square"], name="square"),
        helper.make_node("Transpose", ["w"], ["w_t"], name="transpose", perm=[1, 0]),
        helper.make_node("MatMul", ["square", "w_t"], ["product"], name="matmul"),
        helper.make_node("Relu", ["product"], ["y"]),
        helper.make_node("Constant", [], ["scalar"], value_float=2.5),
        helper.make_node("Constant", [], ["axes"], value_ints=[2, 3]),
        helper.make_node("Constant", [], ["table"], value=numpy_helper.from_array(np.ones((2, 2), np.int64))),
        helper.make_node("Resize", ["y", "", "", "sizes"], ["resized"], name="resize", mode="linear"),
    ]
    return helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [weight],
    )


def test_constants_read_initializers_and_every_kind_of_constant_node():
    values = constants(small_graph())
    assert set(values) == {"w", "scalar", "axes", "table"}
    assert values["scalar"] == np.float32(2.5) and values["axes"].tolist() == [2, 3]
    assert values["table"].dtype == np.int64 and values["table"].shape == (2, 2)


def test_index_knows_producers_consumers_and_constants_through_a_transpose():
    index = GraphIndex(small_graph())
    assert index.producers["product"].name == "matmul"
    # Mul(x, x) reads x twice and is its one consumer.
    assert [node.name for node in index.consumers["x"]] == ["square"]
    assert index.only_consumer("x").name == "square" and index.only_consumer("nothing") is None
    np.testing.assert_array_equal(index.constant_through_transpose("w_t"), np.arange(6).reshape(2, 3).T)
    assert index.constant_through_transpose("square") is None
    assert {"x", "y", "square", "matmul", "w"} <= index.names()


def test_attributes_are_decoded_with_defaults():
    resize = GraphIndex(small_graph()).producers["resized"]
    assert attribute(resize, "mode") == "linear"
    assert attribute(resize, "antialias", 0) == 0
    assert attributes(resize) == {"mode": "linear"}
    assert optional_input(resize, 1) is None and optional_input(resize, 3) == "sizes"
    assert optional_input(resize, 9) is None
    unnamed = GraphIndex(small_graph()).producers["y"]
    assert node_label(unnamed) == "<unnamed, output 'y'>" and node_label(resize) == "resize"


def test_downstream_nodes_inferred_types_and_opset():
    graph = small_graph()
    assert [node.op_type for node in downstream_nodes(graph, "square")] == ["MatMul", "Relu", "Resize"]
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    types = inferred_types(model)
    assert types["product"].dims == ("N", 2) and types["product"].elem_type == TensorProto.FLOAT
    assert types["w"].dims == (2, 3)
    assert default_opset(model) == 17
    with pytest.raises(ValueError, match="no default-domain opset"):
        default_opset(helper.make_model(graph, opset_imports=[helper.make_opsetid("com.microsoft", 1)]))


def test_unique_names_skip_taken_ones_and_count_per_purpose():
    names = UniqueNames({"onnxcam/grad/1", "onnxcam/grad/3"})
    assert [names.new("grad") for _ in range(3)] == ["onnxcam/grad/2", "onnxcam/grad/4", "onnxcam/grad/5"]
    assert names.new("seed") == "onnxcam/seed/1"


def test_builder_names_nodes_by_scope_and_shares_equal_constants():
    b = GraphBuilder(18, scope="heatmap", taken={"onnxcam/heatmap/1"})
    first = b.op("Mul", "a", b.const(2.0))
    b.scope = "other"
    parts = b.op("Split", first, b.ints([1, 1]), axis=1, outputs=2)
    named = b.op("Add", parts[0], b.const(2.0), output="result")
    assert first == "onnxcam/heatmap/2"
    assert parts == ["onnxcam/other/1/0", "onnxcam/other/1/1"] and named == "result"
    assert [node.name for node in b.nodes] == ["onnxcam/heatmap/2", "onnxcam/other/1", "onnxcam/other/2"]
    # 2.0 is stored once; integer values are int64, others float32.
    assert [numpy_helper.to_array(t).dtype for t in b.initializers] == [np.float32, np.int64]


@pytest.mark.parametrize("opset", [13, 18])
def test_builder_reductions_follow_the_opset_and_run(opset):
    """ReduceMean's axes: an attribute before opset 18, an input from 18 on; same values either way."""
    b = GraphBuilder(opset, scope="test")
    mean = b.reduce("ReduceMean", "x", [2, 3])
    total = b.reduce("ReduceSum", "x", [1], keepdims=False)
    masked = b.mask(b.op("Greater", "x", b.const(0.0)), "x")
    zeros = b.zeros_like("x")
    flat = b.reshape_like(b.op("Flatten", "x"), "x")
    names = [mean, total, masked, zeros, flat]
    reduce_mean = next(node for node in b.nodes if node.op_type == "ReduceMean")
    assert (len(reduce_mean.input) == 2) == (opset >= 18)
    graph = helper.make_graph(
        [], "built", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])],
        [helper.make_empty_tensor_value_info(name) for name in names],
    )
    b.add_to(graph)
    assert not b.nodes and len(graph.node) == 9
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(names, {"x": x})
    expected = [x.mean(axis=(2, 3), keepdims=True), x.sum(axis=1), np.where(x > 0, x, 0), np.zeros_like(x), x]
    for value, wanted in zip(got, expected):
        np.testing.assert_allclose(value, wanted, rtol=1e-6, atol=1e-6)


def test_set_metadata_prop_replaces_one_key_and_keeps_the_others():
    model = helper.make_model(small_graph())
    helper.set_model_props(model, {"a": "1", "b": "2"})
    set_metadata_prop(model, "a", "3")
    assert [(p.key, p.value) for p in model.metadata_props] == [("b", "2"), ("a", "3")]
