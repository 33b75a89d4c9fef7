"""Cheaper equal ops for two patterns that differentiation leaves in a CAM-ready graph.

Both exporters (the torch route and ``augment``) differentiate the class score the way autograd
does, and two of the ops that produces cost more than the forward pass they sit beside (ONNX
Runtime's per-op profile of mobilenet_v2's export, batch 1 and 8, against its plain forward):

- **one-hot products**: the seed ``onehot(c) (N, K)`` times the classifier weight ``(K, C)``
  (the gradient through the last linear layer, and the ``cam_weights`` output) reads the whole
  weight to pick its rows c: a ``Gather`` of those rows gives the same numbers (each product has
  one non-zero term) and reads C values per image (0.28 ms of a 5.3 ms forward on mobilenet_v2).
- **broadcasts by Expand**: the gradient of a global average pool, ``Expand(g (N, C, 1, 1)) / hw``
  to ``(N, C, h, w)``. ONNX Runtime's ``Expand`` kernel is slow (0.4 ms at batch 8 for 2 MB); a
  ``Mul`` by ones of shape ``(1, 1, h, w)`` broadcasts the same values 5x faster, and a
  following division by a scalar is moved before the broadcast, onto the small tensor.

Every rewrite keeps the output bit for bit (a one-hot product adds zeros to one product; dividing
before or after copying values is the same division) and keeps each rewritten node's output name,
so the contract's outputs are untouched. Nodes left unused are removed.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from onnxcam.graph import GraphBuilder, GraphIndex, attribute, default_opset, inferred_types, prune_unneeded

SCOPE = "gradient_rewrite"
"""Every node added here is named ``onnxcam/gradient_rewrite/<n>``."""


def _one_hot_index(index: GraphIndex, name: str) -> str | None:
    """The ``(N,)`` index tensor when ``name`` is ``onehot(index)`` as both exporters write it:
    ``Cast(Equal(Unsqueeze(index, [1]), arange(K)))`` (either operand order, ``arange`` of shape
    ``(K,)`` or ``(1, K)``), else None."""
    cast = index.producers.get(name)
    if cast is None or cast.op_type != "Cast":
        return None
    equal = index.producers.get(cast.input[0])
    if equal is None or equal.op_type != "Equal":
        return None
    for unsqueezed, classes in (equal.input, reversed(equal.input)):
        values = index.constants.get(classes)
        unsqueeze = index.producers.get(unsqueezed)
        if values is None or unsqueeze is None or unsqueeze.op_type != "Unsqueeze":
            continue
        if values.shape not in ((values.size,), (1, values.size)) or not np.array_equal(
            values.reshape(-1), np.arange(values.size)
        ):
            continue
        axes = index.constants.get(unsqueeze.input[1]) if len(unsqueeze.input) > 1 else attribute(unsqueeze, "axes")
        dims = index.dims(unsqueeze.input[0])
        if axes is not None and [int(a) for a in np.asarray(axes).ravel()] in ([1], [-1]) and dims is not None and len(dims) == 1:
            return unsqueeze.input[0]
    return None


def _rows_source(index: GraphIndex, name: str, transposed: bool) -> tuple[str, int] | None:
    """``(constant, axis)`` when ``name`` (transposed when ``transposed``) is a 2-D constant, or
    a chain of Transposes of one, whose row r is ``constant``'s slice r along ``axis``."""
    while name not in index.constants:
        node = index.producers.get(name)
        if node is None or node.op_type != "Transpose" or list(attribute(node, "perm", [1, 0])) != [1, 0]:
            return None
        name, transposed = node.input[0], not transposed
    if index.constants[name].ndim != 2:
        return None
    return name, 1 if transposed else 0


def _gather_rows(b: GraphBuilder, node: onnx.NodeProto, index: GraphIndex) -> bool:
    """``MatMul(onehot(c), W)`` or ``Gemm(onehot(c), W)`` (no C, transA 0) -> the rows c of W."""
    if node.op_type == "Gemm":
        if len([name for name in node.input if name]) != 2 or attribute(node, "transA", 0):
            return False
        alpha, transposed = attribute(node, "alpha", 1.0), bool(attribute(node, "transB", 0))
    elif node.op_type == "MatMul":
        alpha, transposed = 1.0, False
    else:
        return False
    classes = _one_hot_index(index, node.input[0])
    source = _rows_source(index, node.input[1], transposed) if classes else None
    if source is None or index.constants[source[0]].dtype != np.float32:
        return False
    weight, axis = source
    output = node.output[0]
    last = "Mul" if alpha != 1.0 else "Transpose" if axis == 1 else "Gather"
    rows = b.op("Gather", weight, classes, axis=axis, output=output if last == "Gather" else None)
    if axis == 1:
        rows = b.op("Transpose", rows, perm=[1, 0], output=output if last == "Transpose" else None)
    if alpha != 1.0:
        b.op("Mul", rows, b.const(alpha), output=output)
    return True


def _broadcast_ones(index: GraphIndex, expand: onnx.NodeProto) -> np.ndarray | None:
    """float32 ones that ``Mul`` broadcasts the Expand's input with to the Expand's output shape,
    or None when that shape is not known well enough (an expanded axis must be a static size)."""
    source, result = index.dims(expand.input[0]), index.dims(expand.output[0])
    if source is None or result is None or len(source) != len(result):
        return None
    if index.types.get(expand.input[0]) is None or index.types[expand.input[0]].elem_type != TensorProto.FLOAT:
        return None
    shape = []
    for before, after in zip(source, result):
        if before == after and before is not None:
            shape.append(1)
        elif before == 1 and isinstance(after, int):
            shape.append(after)
        else:
            return None
    return np.ones(shape, np.float32) if any(size > 1 for size in shape) else None


def _scalar_divisor(index: GraphIndex, node: onnx.NodeProto) -> str | None:
    """The divisor of a ``Div`` by a float32 scalar constant, else None."""
    if node.op_type != "Div":
        return None
    value = index.constants.get(node.input[1])
    return node.input[1] if value is not None and value.size == 1 and value.dtype == np.float32 else None


def _broadcast_by_multiplication(b: GraphBuilder, node: onnx.NodeProto, index: GraphIndex) -> bool:
    """``Expand(x)`` -> ``Mul(x, ones)``; ``Div(Expand(x), s)`` -> ``Mul(Div(x, s), ones)``."""
    if node.op_type == "Expand":
        consumer = index.only_consumer(node.output[0])
        if consumer is not None and _scalar_divisor(index, consumer) and node.output[0] == consumer.input[0]:
            return False  # rewritten with its division
        expand, divisor = node, None
    else:
        divisor = _scalar_divisor(index, node)
        expand = index.producers.get(node.input[0]) if divisor else None
        if expand is None or expand.op_type != "Expand" or index.only_consumer(expand.output[0]) is not node:
            return False
    ones = _broadcast_ones(index, expand)
    if ones is None:
        return False
    values = b.op("Div", expand.input[0], divisor) if divisor else expand.input[0]
    b.op("Mul", values, b.const(ones), output=node.output[0])
    return True


REWRITES = (_gather_rows, _broadcast_by_multiplication)


def simplify_gradient_ops(model: onnx.ModelProto) -> int:
    """Apply every rewrite of this module to ``model``'s graph (in place); the number of nodes
    rewritten. Shape inference supplies the shapes the broadcast rewrite needs."""
    graph = model.graph
    index = GraphIndex(graph, inferred_types(model, data_prop=True))
    b = GraphBuilder(default_opset(model), scope=SCOPE, taken=index.names())
    nodes, rewritten = [], 0
    for node in graph.node:
        start = len(b.nodes)
        if any(rewrite(b, node, index) for rewrite in REWRITES):
            nodes.extend(b.nodes[start:])
            rewritten += 1
        else:
            nodes.append(node)
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(b.initializers)
        prune_unneeded(graph)
    return rewritten
