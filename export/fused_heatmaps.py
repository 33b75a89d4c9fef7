"""Heatmaps computed inside the graph: outputs ``heatmap/<method>/<weighting>`` ``(N, H, W)``.

For a runtime with no numpy (onnxruntime-web, a phone) one ``run`` returns finished maps: the
method's raw map (``CamMethod.graph_raw_maps``: channel weights, weighted sum, ReLU or Abs; for
ReciproCAM, the head re-run on the masked copies), bilinear Resize to the input size (half-pixel,
as the numpy path), min-max normalisation per map where a flat map becomes zeros (the numpy rule of
``onnxcam.runtime.normalization``). Every added node is named ``onnxcam/heatmap/<n>`` so a user
finds it in Netron. One helper per op pattern; opset 18 or later (reduction axes are inputs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import onnx
from onnx import TensorProto, helper

from onnxcam.contract import FusedHeatmap, ModelMetadata, heatmap_name
from onnxcam.graph import GraphBuilder, GraphIndex, default_opset
from onnxcam.runtime.methods import METHODS, get_method
from onnxcam.runtime.normalization import FLAT_TOLERANCE

FUSABLE_METHODS = tuple(name for name, method in METHODS.items() if method.fusable())
"""Methods whose raw map has an in-graph form (``CamMethod.graph_raw_maps``: channel weights on the
layer's outputs, or ReciproCAM's head copy), so the graph can finish them."""

MIN_OPSET = 18
SCOPE = "heatmap"
"""Every node added here is named ``onnxcam/heatmap/<n>``."""


def _resize(b: GraphBuilder, maps: str, size: tuple[int, int]) -> str:
    """(N, 1, h, w) -> (N, 1, H, W), bilinear, half-pixel centres, no antialiasing."""
    sizes = b.op("Concat", b.op("Slice", b.op("Shape", maps), b.ints([0]), b.ints([2])), b.ints(size), axis=0)
    return b.op("Resize", maps, "", "", sizes, mode="linear", coordinate_transformation_mode="half_pixel")


def _normalise(b: GraphBuilder, maps: str, output: str) -> str:
    """(N, 1, H, W) -> (N, H, W) in [0, 1]; a map with range <= FLAT_TOLERANCE * max|map| -> 0."""
    low = b.reduce("ReduceMin", maps, [2, 3])
    span = b.op("Sub", b.reduce("ReduceMax", maps, [2, 3]), low)
    magnitude = b.reduce("ReduceMax", b.op("Abs", maps), [2, 3])
    flat = b.op("LessOrEqual", span, b.op("Mul", magnitude, b.const(FLAT_TOLERANCE)))
    scaled = b.op("Div", b.op("Sub", maps, low), b.op("Where", flat, b.const(1.0), span))
    scaled = b.op("Clip", scaled, b.const(0.0), b.const(1.0))
    return b.op("Squeeze", b.op("Where", flat, b.const(0.0), scaled), b.ints([1]), output=output)


def add_fused_heatmaps(
    model: onnx.ModelProto, metadata: ModelMetadata, fused: Sequence[tuple[str, str]]
) -> ModelMetadata:
    """Add ``heatmap/<method>/<weighting>`` outputs for the first layer of ``metadata`` to the
    CAM-ready ``model`` (in place); return the metadata that lists them."""
    opset = default_opset(model)
    if opset < MIN_OPSET:
        raise ValueError(f"fused heatmaps need opset {MIN_OPSET} or later; the model has {opset}")
    layer = metadata.layers[0]
    height, width = metadata.preprocessing.input_size
    builder = GraphBuilder(opset, scope=SCOPE, taken=GraphIndex(model.graph).names())
    added = []
    for name, weighting in dict.fromkeys(tuple(pair) for pair in fused):
        method = get_method(name)
        if not method.fusable():
            raise ValueError(f"method {name!r} cannot be fused; fusable: {', '.join(FUSABLE_METHODS)}")
        method.check_weighting(weighting)
        if method.needs_cam_weights and not layer.has_cam_weights:
            raise ValueError(f"{name!r} needs a global-average-pool + linear head after layer {layer.name!r}")
        output = heatmap_name(name, weighting)
        maps = method.graph_raw_maps(builder, layer, weighting, model, metadata.target)
        _normalise(builder, _resize(builder, maps, (height, width)), output)
        model.graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", height, width]))
        added.append(FusedHeatmap(name, weighting, layer.name))
    builder.add_to(model.graph)
    return dataclasses.replace(metadata, fused=metadata.fused + tuple(added))


def parse_fused(text: str) -> list[tuple[str, str]]:
    """``"gradcam:relu,cam:abs"`` -> ``[("gradcam", "relu"), ("cam", "abs")]``."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        method, sep, weighting = item.partition(":")
        if not sep or not method or not weighting:
            raise ValueError(f"--fused takes method:weighting pairs, e.g. gradcam:relu; got {item!r}")
        pairs.append((method, weighting))
    return pairs
