"""The head after a target layer, run on many spatially masked copies of the layer's output
(ReciproCAM): ``(N, C, h, w)`` activations and ``(P, h, w)`` non-negative masks -> ``(N, P, K)``
logits of ``head(A * mask_p)``, all N * P copies batched.

Both heads are cut from the model's own graph (``onnxcam.runtime.graph_cuts``):

- :class:`SpatialHead`, for CNN layers. When the head starts with ReLUs and a spatial mean (a
  global-average-pool head), the mean of a masked map is a matrix product,
  ``mean(relu(A) * m) = relu(A) @ m / hw`` (ReLU commutes with a non-negative mask), so the
  masked copies are never built: only the pooled vectors go through the rest of the head.
  Otherwise the masked maps go through the head graph.
- :class:`TokenHead`, for token layers exported through a ``reshape`` (a ViT's ``ln_1``): the
  masks act on the patch tokens, the leading (class) tokens stay as they are. When the layer is a
  block's pre-norm, the block input that skips around it is masked alike (ViT-ReciproCAM's
  insertion in OpenVINO XAI). The tokens are not model outputs: a cut of the graph from the input
  to them runs once per batch.

:func:`graph_masked_logits` is :class:`SpatialHead` as graph ops (ReciproCAM fused into the model):
the same cut, the head's nodes copied after it, fed with the N * P copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS, LayerInfo
from onnxcam.graph import DEFAULT_DOMAINS, GraphBuilder, GraphIndex, TensorType, attributes, inferred_types, node_label
from onnxcam.runtime.graph_cuts import HeadGraph, extract_head, extract_model
from onnxcam.runtime.methods.passes import ModelPasses, chunk_rows, session_of_model

# Ops that only move a layer's values around: the chain from a token tensor to its grid.
_LAYOUT_OPS = {"Reshape", "Transpose", "Slice", "Identity", "Squeeze", "Unsqueeze", "Flatten"}
# Ops that commute with a non-negative spatial mask (relu(m * x) = m * relu(x) for m >= 0).
_SCALE_COMMUTING = {"Relu", "Identity"}


def _spatial_mean(graph: HeadGraph) -> tuple[bool, str] | None:
    """``(relu first, mean output)`` when the head opens with ReLUs and a global spatial mean
    (a ``GlobalAveragePool``, or a ``ReduceMean`` whose output is ``(N, C, 1, 1)``)."""
    if graph.reduce is None:
        return None
    inferred = onnx.shape_inference.infer_shapes(graph.reduce)
    shapes = {
        value.name: [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        for value in list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    relu = False
    for node in graph.reduce.graph.node:
        if node.op_type == "Constant":  # a ReduceMean's axes
            continue
        if node.op_type in _SCALE_COMMUTING:
            relu |= node.op_type == "Relu"
        elif node.op_type == "GlobalAveragePool" or (
            node.op_type == "ReduceMean" and shapes.get(node.output[0], [])[2:] == [1, 1]
        ):
            return relu, node.output[0]
        else:
            return None
    return None


@dataclass(frozen=True)
class HeadCut:
    """Where the masked copies enter the head after a CNN layer.

    pooled: the head opens with (ReLUs and) a global spatial mean, and ``cut`` is the mean's
    output ``(N, C, 1, 1)``: the copies enter as pooled vectors; else ``cut`` is the layer's
    activations and the copies are masked maps. relu: apply ReLU before pooling.
    body: ``cut`` -> ``logits``, the rest of the head.
    """

    cut: str
    pooled: bool
    relu: bool
    body: onnx.ModelProto


def cut_head(model: onnx.ModelProto, layer: LayerInfo) -> HeadCut:
    """The head after ``layer`` in the CAM-ready ``model``, cut where the masked copies enter it."""
    try:
        graph = extract_head(model, layer.activations)
    except ValueError as error:
        raise ValueError(
            f"layer {layer.name!r}: the rest of the network cannot be cut after it ({error}); "
            "a token layer exported with reshape= takes 'vit-reciprocam'"
        ) from None
    mean = _spatial_mean(graph)
    relu, cut = mean if mean else (False, layer.activations)
    return HeadCut(cut, mean is not None, relu, extract_model(graph.forward, [cut], [LOGITS]))


class SpatialHead:
    """The head after a CNN layer, on masked copies of its ``(N, C, h, w)`` activations."""

    def __init__(self, passes: ModelPasses, layer: LayerInfo):
        head = cut_head(passes.model, layer)
        self.relu, self.pooled, self.cut = head.relu, head.pooled, head.cut
        # Through the final linear layer too: one ONNX Runtime run on the session's threads (numpy's
        # BLAS threads stall when the cores are busy).
        self.body = session_of_model(head.body, passes.providers, passes.head_options)

    def logits(self, activations: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(N, C, h, w) activations, (P, h, w) masks -> (N, P, K) logits of the masked copies."""
        n, c, h, w = activations.shape
        p = len(masks)
        if self.pooled:
            values = np.maximum(activations, 0) if self.relu else activations
            flat, weights = values.reshape(n, c, h * w), masks.reshape(p, h * w)
            if p == h * w and np.array_equal(weights, np.eye(p, dtype=weights.dtype)):
                pooled = flat / (h * w)  # one-hot masks: copy p's mean is A[:, p] / hw
            else:  # (N, C, hw) @ (hw, P) -> (N, C, P): the spatial mean of every masked copy at once
                pooled = flat @ (weights.T / (h * w))
            copies = np.ascontiguousarray(pooled.transpose(0, 2, 1)).reshape(n * p, c, 1, 1)
            return self._through_body(copies).reshape(n, p, -1)
        rows = chunk_rows(c * h * w)
        out = []
        for i in range(n):
            for start in range(0, p, rows):
                masked = activations[i][None] * masks[start : start + rows, None]
                out.append(self._through_body(masked.astype(np.float32, copy=False)))
        return np.concatenate(out).reshape(n, p, -1)

    def _through_body(self, values: np.ndarray) -> np.ndarray:
        return self.body.run([LOGITS], {self.cut: values})[0]


def _is_onehot(masks: np.ndarray) -> bool:
    """Whether the (P, h, w) masks are the P = h * w one-hot ones, in order."""
    p = len(masks)
    return p == masks[0].size and np.array_equal(masks.reshape(p, p), np.eye(p, dtype=masks.dtype))


def graph_masked_logits(b: GraphBuilder, model: onnx.ModelProto, layer: LayerInfo, masks: np.ndarray) -> str:
    """:meth:`SpatialHead.logits` as graph ops added by ``b`` to the CAM-ready ``model``: the
    layer's activations ``(N, C, h, w)`` and the ``(P, h, w)`` non-negative masks -> ``(N, P, K)``
    logits of the head on the N * P masked copies, batched as rows of one copy of the head."""
    head = cut_head(model, layer)
    c, h, w = layer.shape
    p = len(masks)
    if head.pooled:
        values = b.op("Relu", layer.activations) if head.relu else layer.activations
        flat = b.op("Reshape", values, b.ints([0, c, h * w]))
        if _is_onehot(masks):  # copy p's mean is A[:, :, p] / hw
            pooled = b.op("Div", flat, b.const(np.float32(h * w)))
        else:  # (N, C, hw) @ (hw, P) -> (N, C, P): the spatial mean of every masked copy
            pooled = b.op("MatMul", flat, b.const(masks.reshape(p, h * w).T / (h * w)))
        copies = b.op("Reshape", b.op("Transpose", pooled, perm=[0, 2, 1]), b.ints([-1, c, 1, 1]))
    else:  # (N, 1, C, h, w) * (P, 1, h, w) -> (N, P, C, h, w)
        masked = b.op("Mul", b.op("Unsqueeze", layer.activations, b.ints([1])), b.const(masks[:, None]))
        copies = b.op("Reshape", masked, b.ints([-1, c, h, w]))
    logits = _copy_graph(b, head.body, {head.cut: copies})[LOGITS]
    batch = b.op("Slice", b.op("Shape", layer.activations), b.ints([0]), b.ints([1]))
    return b.op("Reshape", logits, b.op("Concat", batch, b.ints([p, -1]), axis=0))


def _copy_graph(b: GraphBuilder, model: onnx.ModelProto, feeds: dict[str, str]) -> dict[str, str]:
    """Emit ``model``'s nodes again with ``b``, reading ``feeds`` (``{its input: tensor}``) and the
    initializers it shares with the graph ``b`` writes into; ``{its tensor: the copy's name}``.

    The copy runs N * P rows where the original ran N: a ``Reshape`` to a constant shape that starts
    with a fixed batch size (a static-batch export) gets its input's leading size there instead."""
    index = GraphIndex(model.graph)
    types = inferred_types(model)
    renamed = dict(feeds)
    for node in model.graph.node:
        subgraph = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)
        if node.domain not in DEFAULT_DOMAINS or subgraph:
            raise ValueError(
                f"node {node_label(node)} ({node.domain or 'ai.onnx'}.{node.op_type}) of the head cannot be "
                "copied into the graph (another domain or a subgraph): use the method without fusing it"
            )
        inputs = [renamed.get(name, name) for name in node.input]
        if node.op_type == "Reshape" and _fixed_batch(node, index, types):
            leading = b.op("Slice", b.op("Shape", inputs[0]), b.ints([0]), b.ints([1]))
            inputs[1] = b.op("Concat", leading, b.ints(index.constants[node.input[1]][1:]), axis=0)
        outputs = b.op(node.op_type, *inputs, outputs=len(node.output), **attributes(node))
        renamed.update(zip(node.output, [outputs] if isinstance(outputs, str) else outputs))
    return renamed


def _fixed_batch(node: onnx.NodeProto, index: GraphIndex, types: Mapping[str, TensorType]) -> bool:
    """Whether a ``Reshape`` node's constant shape starts with a fixed size that is the batch: positive,
    and not known to differ from its input's leading size."""
    shape = index.constants.get(node.input[1])
    if shape is None or shape.ndim != 1 or len(shape) == 0 or shape[0] <= 0:
        return False
    dims = types[node.input[0]].dims if node.input[0] in types else None
    leading = dims[0] if dims else None
    return not isinstance(leading, int) or leading == shape[0]


def _token_inputs(model: onnx.ModelProto, activations: str) -> tuple[str, ...]:
    """The token tensor(s) behind a reshaped layer's ``activations/L`` output: the tensor whose
    layout ops make the grid, plus, when the head also reads the input of the op making it (a
    pre-norm's skip connection), that input."""
    producers = {name: node for node in model.graph.node for name in node.output}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    tensor, moved = activations, False
    while tensor in producers and producers[tensor].op_type in _LAYOUT_OPS:
        tensor, moved = producers[tensor].input[0], True
        if consumers.get(tensor, 0) > 1:
            break
    if not moved or consumers.get(tensor, 0) < 2:
        raise ValueError(
            f"{activations!r} is not a token layer reshaped to a grid (no layout ops from a tensor the "
            "network goes on with); a CNN layer takes 'reciprocam'"
        )
    try:
        extract_model(model, [tensor], [LOGITS])
        return (tensor,)
    except ValueError:
        skip = producers[tensor].input[0]
        extract_model(model, [tensor, skip], [LOGITS])  # raises, naming the tensors, if not a cut
        return tensor, skip


class TokenHead:
    """The head after a token layer, on copies of its tokens with the patch tokens masked."""

    def __init__(self, passes: ModelPasses, layer: LayerInfo):
        model = passes.model
        # The forward part with the layer's output (no backward), from every graph input: a
        # dynamic-batch export may take the batch size from ``class_index``'s shape.
        self.graph_inputs = [value.name for value in model.graph.input]
        forward = extract_model(model, self.graph_inputs, [LOGITS, layer.activations])
        self.inputs = _token_inputs(forward, layer.activations)
        options, providers = passes.head_options, passes.providers
        self.prefix = session_of_model(extract_model(forward, self.graph_inputs, list(self.inputs)), providers, options)
        self.head = session_of_model(extract_model(forward, list(self.inputs), [LOGITS]), providers, options)

    def logits(self, batch: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(N, C_in, H, W) model input, (P, h, w) masks -> (N, P, K) logits of the masked copies."""
        feeds = {INPUT: batch, CLASS_INDEX: np.zeros(len(batch), np.int64)}
        read = {value.name for value in self.prefix.get_inputs()}
        tokens = self.prefix.run(list(self.inputs), {name: value for name, value in feeds.items() if name in read})
        n, count, dim = tokens[0].shape
        p = len(masks)
        patches = masks.reshape(p, -1)
        if patches.shape[1] > count:
            raise ValueError(f"{self.inputs[0]!r} has {count} tokens, fewer than the {patches.shape[1]} positions")
        # Leading (class) tokens keep weight 1; patch token t of copy q gets masks[q] at t.
        weights = np.concatenate([np.ones((p, count - patches.shape[1]), np.float32), patches], axis=1)[..., None]
        rows = chunk_rows(count * dim * len(self.inputs))
        out = []
        for i in range(n):
            for start in range(0, p, rows):
                feeds = {
                    name: (value[i][None] * weights[start : start + rows]).astype(np.float32, copy=False)
                    for name, value in zip(self.inputs, tokens)
                }
                out.append(self.head.run([LOGITS], feeds)[0])
        return np.concatenate(out).reshape(n, p, -1)
