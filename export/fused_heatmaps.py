"""Heatmaps computed inside the graph: outputs ``heatmap/<method>/<weighting>`` ``(N, H, W)``.

For a runtime with no numpy (onnxruntime-web, a phone) one ``run`` returns finished maps: channel
weights, weighted sum, ReLU or Abs, bilinear Resize to the input size (half-pixel, as the numpy
path), min-max normalisation per map where a flat map becomes zeros (the numpy rule of
``onnxcam.runtime.normalization``). Every added node is named ``onnxcam/heatmap/<n>`` so a user
finds it in Netron. One helper per op pattern; opset 18 or later (reduction axes are inputs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxcam.contract import METADATA_KEY, FusedHeatmap, LayerInfo, ModelMetadata, heatmap_name
from onnxcam.runtime.methods.gradcam_plusplus import EPSILON as GRADCAM_PLUSPLUS_EPSILON
from onnxcam.runtime.methods.xgradcam import EPSILON as XGRADCAM_EPSILON
from onnxcam.runtime.normalization import FLAT_TOLERANCE
from onnxcam.runtime.weighting import WEIGHTINGS

FUSABLE_METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam")
"""Methods whose maps come from the layer's outputs alone, so the graph can finish them."""

MIN_OPSET = 18


class _Builder:
    """Appends named nodes and constants to ``graph``."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.count = 0

    def _name(self) -> str:
        self.count += 1
        return f"onnxcam/heatmap/{self.count}"

    def const(self, value: np.ndarray | float | Sequence[int]) -> str:
        array = np.asarray(value, dtype=np.int64 if isinstance(value, (list, tuple)) else np.float32)
        name = self._name() + "/const"
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attributes) -> str:
        name = self._name()
        output = output or name + "/out"
        self.graph.node.append(helper.make_node(op_type, list(inputs), [output], name=name, **attributes))
        return output

    def reduce(self, op_type: str, tensor: str, axes: Sequence[int]) -> str:
        return self.op(op_type, tensor, self.const(list(axes)), keepdims=1)


def _weights(b: _Builder, method: str, layer: LayerInfo) -> str:
    """(N, C, 1, 1) channel weights or (N, C, h, w) per-position weights of ``method``."""
    acts, grads = layer.activations, layer.gradients
    if method == "cam":
        return b.op("Unsqueeze", layer.cam_weights, b.const([2, 3]))
    if method == "gradcam":
        return b.reduce("ReduceMean", grads, [2, 3])
    if method == "hirescam":
        return grads
    if method == "layercam":
        return b.op("Relu", grads)
    summed = b.reduce("ReduceSum", acts, [2, 3])
    if method == "xgradcam":
        normalised = b.op("Div", acts, b.op("Add", summed, b.const(XGRADCAM_EPSILON)))
        return b.reduce("ReduceSum", b.op("Mul", grads, normalised), [2, 3])
    # gradcam++: alpha = g^2 / (2 g^2 + sum(A) g^3 + eps), 0 where g = 0; w = sum(alpha ReLU(g)).
    squared = b.op("Mul", grads, grads)
    denominator = b.op(
        "Add",
        b.op("Add", b.op("Mul", squared, b.const(2.0)), b.op("Mul", summed, b.op("Mul", squared, grads))),
        b.const(GRADCAM_PLUSPLUS_EPSILON),
    )
    alpha = b.op("Div", squared, denominator)
    alpha = b.op("Where", b.op("Equal", grads, b.const(0.0)), b.const(0.0), alpha)
    return b.reduce("ReduceSum", b.op("Mul", b.op("Relu", grads), alpha), [2, 3])


def _weighted_map(b: _Builder, weights: str, layer: LayerInfo, weighting: str) -> str:
    """(N, 1, h, w) = weighting(sum_k w_k A^k)."""
    if weighting == "abs-weights":
        weights = b.op("Abs", weights)
    maps = b.reduce("ReduceSum", b.op("Mul", weights, layer.activations), [1])
    if weighting == "relu":
        return b.op("Relu", maps)
    if weighting == "abs":
        return b.op("Abs", maps)
    return maps


def _resize(b: _Builder, maps: str, size: tuple[int, int]) -> str:
    """(N, 1, h, w) -> (N, 1, H, W), bilinear, half-pixel centres, no antialiasing."""
    sizes = b.op("Concat", b.op("Slice", b.op("Shape", maps), b.const([0]), b.const([2])), b.const(list(size)), axis=0)
    return b.op("Resize", maps, "", "", sizes, mode="linear", coordinate_transformation_mode="half_pixel")


def _normalise(b: _Builder, maps: str, output: str) -> str:
    """(N, 1, H, W) -> (N, H, W) in [0, 1]; a map with range <= FLAT_TOLERANCE * max|map| -> 0."""
    low = b.reduce("ReduceMin", maps, [2, 3])
    span = b.op("Sub", b.reduce("ReduceMax", maps, [2, 3]), low)
    magnitude = b.reduce("ReduceMax", b.op("Abs", maps), [2, 3])
    flat = b.op("LessOrEqual", span, b.op("Mul", magnitude, b.const(FLAT_TOLERANCE)))
    scaled = b.op("Div", b.op("Sub", maps, low), b.op("Where", flat, b.const(1.0), span))
    scaled = b.op("Clip", scaled, b.const(0.0), b.const(1.0))
    return b.op("Squeeze", b.op("Where", flat, b.const(0.0), scaled), b.const([1]), output=output)


def add_fused_heatmaps(
    model: onnx.ModelProto, metadata: ModelMetadata, fused: Sequence[tuple[str, str]]
) -> ModelMetadata:
    """Add ``heatmap/<method>/<weighting>`` outputs for the first layer of ``metadata`` to the
    CAM-ready ``model`` (in place); return the metadata that lists them."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise ValueError(f"fused heatmaps need opset {MIN_OPSET} or later; the model has {opset}")
    layer = metadata.layers[0]
    height, width = metadata.preprocessing.input_size
    builder = _Builder(model.graph)
    added = []
    for method, weighting in dict.fromkeys(tuple(pair) for pair in fused):
        if method not in FUSABLE_METHODS:
            raise ValueError(f"method {method!r} cannot be fused; fusable: {', '.join(FUSABLE_METHODS)}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
        if method == "cam" and not layer.has_cam_weights:
            raise ValueError(f"'cam' needs a global-average-pool + linear head after layer {layer.name!r}")
        output = heatmap_name(method, weighting)
        maps = _weighted_map(builder, _weights(builder, method, layer), layer, weighting)
        _normalise(builder, _resize(builder, maps, (height, width)), output)
        model.graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", height, width]))
        added.append(FusedHeatmap(method, weighting, layer.name))
    return dataclasses.replace(metadata, fused=metadata.fused + tuple(added))


def fused_model_proto(model, metadata: ModelMetadata, fused: Sequence[tuple[str, str]]) -> onnx.ModelProto:
    """``torch.onnx``'s model (an ``onnx_ir.Model``) as a ModelProto with the fused heatmaps and
    the contract metadata."""
    import onnx_ir

    proto = onnx_ir.to_proto(model)
    metadata = add_fused_heatmaps(proto, metadata, fused)
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, METADATA_KEY: metadata.to_json()})
    return proto


def parse_fused(text: str) -> list[tuple[str, str]]:
    """``"gradcam:relu,cam:abs"`` -> ``[("gradcam", "relu"), ("cam", "abs")]``."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        method, sep, weighting = item.partition(":")
        if not sep or not method or not weighting:
            raise ValueError(f"--fused takes method:weighting pairs, e.g. gradcam:relu; got {item!r}")
        pairs.append((method, weighting))
    return pairs
