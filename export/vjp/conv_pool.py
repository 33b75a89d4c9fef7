"""Windowed ops: convolution and pooling. Window geometry (strides, pads, ``ceil_mode``) is
resolved with the static spatial shapes that shape inference gives (``BackwardBuilder.window``);
only the batch may stay symbolic. ``MaxPool`` routes each output's gradient to the first maximum
of its window in row-major order, found with masks (``Equal`` against the pooled value) and
scattered back with a one-hot ``ConvTranspose``: no ``ScatterElements``, which breaks fp16 and
model converters."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto

from onnxcam.export.vjp.builder import BackwardBuilder, Window
from onnxcam.export.vjp.registry import Grads, Needs, rule
from onnxcam.graph import attribute, attributes


@rule("Conv")
def _conv(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    if any(needs[1:]):
        raise b.unsupported("gradients w.r.t. computed convolution weights are not written")
    x, w = node.input[:2]
    kernel = attribute(node, "kernel_shape") or b.static_dims(w, range(2, b.rank(w)))
    window = b.window(node, x, node.output[0], kernel)
    # ConvTranspose's weight layout (C_in of the transpose = C_out of Conv, C/group, k...) is
    # Conv's, so the forward weights serve unchanged.
    return [b.window_transpose(grads[0], w, window, attribute(node, "group", 1))]


@rule("GlobalAveragePool")
def _global_average_pool(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    x = node.input[0]
    area = b.count(x, range(2, b.rank(x)))
    return [b.op("Expand", b.op("Div", grads[0], area), b.op("Shape", x))]


def _pool_window(b: BackwardBuilder, node: onnx.NodeProto) -> tuple[str, list[int], Window, int]:
    """A pooling node's input, kernel, window geometry and channel count."""
    x, kernel = node.input[0], attribute(node, "kernel_shape")
    (channels,) = b.static_dims(x, [1])
    return x, kernel, b.window(node, x, node.output[0], kernel), channels


@rule("AveragePool")
def _average_pool(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    x, kernel, window, channels = _pool_window(b, node)
    sizes = b.static_dims(x, range(2, 2 + len(kernel)))
    ones = b.const(np.ones([1, 1, *sizes]))
    # 1/divisor per output position, for whatever divisor rule the forward used (count_include_pad,
    # ceil_mode): the forward pool of ones is valid/divisor; a ones-kernel Conv counts the valid.
    share = b.op("AveragePool", ones, **attributes(node))
    valid = b.op(
        "Conv",
        ones,
        b.const(np.ones([1, 1, *kernel])),
        kernel_shape=window.kernel,
        strides=window.strides,
        dilations=window.dilations,
        pads=window.begin + window.end,
    )
    scaled = b.op("Mul", grads[0], b.op("Div", share, valid))
    return [b.window_transpose(scaled, b.const(np.ones([channels, 1, *kernel])), window, channels)]


@rule("MaxPool")
def _max_pool(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    x, kernel, window, channels = _pool_window(b, node)
    y = node.output[0]
    spatial = len(kernel)
    axes = list(range(2, 2 + spatial))
    # Padding never wins: pad with the lowest float, which no pooled value equals.
    lowest = b.const(np.float32(np.finfo(np.float32).min))
    padded = b.op("Pad", x, b.ints([0, 0, *window.begin, 0, 0, *window.end]), lowest)
    offsets = list(itertools.product(*(range(k) for k in kernel)))
    hits, taken = [], None
    for offset in offsets:
        starts = [o * d for o, d in zip(offset, window.dilations)]
        ends = [s + (n - 1) * t + 1 for s, n, t in zip(starts, window.outputs, window.strides)]
        steps = b.ints(window.strides)
        patch = b.op("Slice", padded, b.ints(starts), b.ints(ends), b.ints(axes), steps)
        equal = b.op("Equal", patch, y)
        # First maximum in row-major window order wins ties, as in torch's max_pool backward.
        hit = equal if taken is None else b.op("And", equal, b.op("Not", taken))
        taken = equal if taken is None else b.op("Or", taken, equal)
        hits.append(b.op("Unsqueeze", b.op("Cast", hit, to=TensorProto.FLOAT), b.ints([2])))
    routed = b.op("Mul", b.op("Concat", *hits, axis=2), b.op("Unsqueeze", grads[0], b.ints([2])))
    stacked = b.op("Reshape", routed, b.ints([0, channels * len(offsets), *window.outputs]))
    # Input channel c*K + k of the grouped ConvTranspose carries offset k of channel c back.
    one_hot = np.eye(len(offsets), dtype=np.float32).reshape(len(offsets), 1, *kernel)
    scatter = np.tile(one_hot, (channels, 1, *[1] * spatial))
    return [b.window_transpose(stacked, b.const(scatter), window, channels)]
