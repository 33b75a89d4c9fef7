"""Parts of a CAM-ready graph, cut out with plain ``onnx`` (no torch): the forward network alone,
and the *head* that turns a target layer's activations into the logits, for Ablation-CAM.

Ablation-CAM zeroes one activation channel at a time and reruns only what follows the layer. The
head is extracted from the model's own forward graph (``onnx.utils.Extractor`` from
``activations/L`` to ``logits``) and split into three parts, so that a batch of C ablations costs
little more than one head pass:

- ``reduce``: the leading ops after the layer that commute with zeroing a channel (``ReLU``,
  pooling, spatial means, a flatten of a 1x1 map): they run once on the unablated activations and
  the ablation mask is applied to their (much smaller) output;
- ``body``: from there to the input of the final linear layer;
- ``linear``: that layer's weights, so only the target class's row is evaluated (in numpy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS
from onnxcam.graph import GraphIndex, attribute, optional_input

__all__ = ["HeadGraph", "extract_forward_model", "extract_head", "extract_model"]

# Per-channel ops g with g(zero channel) = zero channel: applying a binary channel mask before or
# after them gives the same result, so the mask can move past them.
_MASK_COMMUTING = {"Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Identity"}
_SPATIAL_REDUCTIONS = {"ReduceMean", "ReduceMax"}
# Flattening keeps the channel axis only when the spatial size is 1; the runtime checks shapes.
_RESHAPES = {"Flatten", "Reshape"}


def extract_model(model: onnx.ModelProto, inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    """The sub-model computing ``outputs`` from ``inputs`` (and constants), metadata kept.

    Raises ValueError when ``outputs`` also depend on another graph input: ``inputs`` is then
    not a cut of the graph (a skip connection that bypasses a mid-block layer, say).
    """
    extracted = onnx.utils.Extractor(model).extract_model(inputs, outputs)
    graph_inputs = {value.name for value in model.graph.input}
    index = GraphIndex(extracted.graph)
    initializers = {init.name for init in extracted.graph.initializer}
    for name in index.consumers:
        if name in graph_inputs and name not in index.producers and name not in initializers and name not in inputs:
            raise ValueError(
                f"{outputs} depend on graph input {name!r} besides {inputs}: {inputs} do not cut the graph"
            )
    return extracted


def extract_forward_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The classifier alone: ``input`` -> ``logits``, without the backward.

    ``class_index`` stays an input where the forward reads it: ``torch.export`` gives equal batch
    sizes one symbol, so an export may take the batch size of a reshape from ``class_index``'s
    shape (a ViT's token reshapes do); any (N,) int64 values serve.
    """
    try:
        return extract_model(model, [INPUT], [LOGITS])
    except ValueError:
        return extract_model(model, [INPUT, CLASS_INDEX], [LOGITS])



@dataclass(frozen=True)
class HeadGraph:
    """What follows one target layer, split for cheap batched ablation (see the module notes).

    reduce: ``activations`` -> each tensor of ``reduce_outputs`` (mask-commuting ops), or None.
    reduce_outputs: candidate cut tensors after those ops, nearest to the layer first; the
        runtime keeps the last one whose shape still has the channel axis ``(N, C, ...)``.
    body: ``body_input`` -> ``features`` (the final linear layer's input), or None when the
        body is empty; built by :func:`body_model` for the chosen cut.
    linear: ``(W (F, K), b (K,))`` of the final linear layer, or None, in which case
        ``features`` are the logits themselves.
    """

    forward: onnx.ModelProto
    activations: str
    reduce: onnx.ModelProto | None
    reduce_outputs: tuple[str, ...]
    features: str
    linear: tuple[np.ndarray, np.ndarray] | None

    def body_model(self, cut: str) -> onnx.ModelProto | None:
        """``cut`` -> ``features``; None when ``cut`` is ``features`` itself."""
        if cut == self.features:
            return None
        return extract_model(self.forward, [cut], [self.features])


def _final_linear(index: GraphIndex) -> tuple[str, tuple[np.ndarray, np.ndarray] | None]:
    """(features tensor, (W (F, K), b (K,))) when the logits come from a Gemm with constant
    weights (or a Transpose of them); else (``logits``, None)."""
    node = index.producers.get(LOGITS)
    if node is None or node.op_type != "Gemm":
        return LOGITS, None
    weight = index.constant_through_transpose(node.input[1])
    bias_name = optional_input(node, 2)
    bias = index.constant_through_transpose(bias_name) if bias_name else None
    if attribute(node, "transA", 0) or weight is None or (bias_name and bias is None):
        return LOGITS, None
    if attribute(node, "transB", 0):
        weight = weight.T
    weight = np.asarray(weight, dtype=np.float32) * float(attribute(node, "alpha", 1.0))
    k = weight.shape[1]
    bias = np.zeros(k, np.float32) if bias is None else np.broadcast_to(bias, (1, k))[0].astype(np.float32)
    return node.input[0], (weight, bias * float(attribute(node, "beta", 1.0)))


def _reduction_keeps_channels(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> bool:
    axes = attribute(node, "axes")
    axes_name = optional_input(node, 1)
    if axes is None and axes_name:
        axes = constants.get(axes_name)
    if axes is None:  # reduces every axis
        return False
    return all(int(axis) % 4 >= 2 for axis in np.asarray(axes).ravel()) and attribute(node, "keepdims", 1) == 1


def extract_head(model: onnx.ModelProto, activations: str) -> HeadGraph:
    """Cut the head after the tensor ``activations`` (an ``activations/L`` output) out of a
    CAM-ready (or plain forward) model. Raises ValueError when the tensor does not cut the graph."""
    forward = extract_forward_model(model) if any(v.name != INPUT for v in model.graph.input) else model
    index = GraphIndex(forward.graph)
    features, linear = _final_linear(index)

    chain: list[str] = []
    tensor = activations
    while tensor != features and (node := index.only_consumer(tensor)) is not None:
        commutes = (
            node.op_type in _MASK_COMMUTING
            or node.op_type in _RESHAPES
            or (node.op_type in _SPATIAL_REDUCTIONS and _reduction_keeps_channels(node, index.constants))
        )
        if not commutes or node.input[0] != tensor:
            break
        tensor = node.output[0]
        chain.append(tensor)
    reduce = extract_model(forward, [activations], chain) if chain else None
    # Fail early, with the layer named, if the activations do not cut the graph.
    extract_model(forward, [activations], [features])
    return HeadGraph(forward, activations, reduce, tuple(chain), features, linear)
