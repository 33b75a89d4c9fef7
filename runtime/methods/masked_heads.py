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
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS, LayerInfo
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


class SpatialHead:
    """The head after a CNN layer, on masked copies of its ``(N, C, h, w)`` activations."""

    def __init__(self, passes: ModelPasses, layer: LayerInfo):
        try:
            self.graph = extract_head(passes.model, layer.activations)
        except ValueError as error:
            raise ValueError(
                f"layer {layer.name!r}: the rest of the network cannot be cut after it ({error}); "
                "a token layer exported with reshape= takes 'vit-reciprocam'"
            ) from None
        mean = _spatial_mean(self.graph)
        self.relu, cut = mean if mean else (False, layer.activations)
        self.pooled = mean is not None
        # Through the final linear layer too: one ONNX Runtime run on the session's threads (numpy's
        # BLAS threads stall when the cores are busy).
        self.body = session_of_model(extract_model(self.graph.forward, [cut], [LOGITS]), passes.providers, passes.head_options)
        self.cut = cut

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
