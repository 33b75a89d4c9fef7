"""Softmax and LogSoftmax over one axis (opset 13 semantics)."""

from __future__ import annotations

import onnx

from onnxcam.export.vjp.builder import BackwardBuilder
from onnxcam.export.vjp.registry import Grads, Needs, rule
from onnxcam.graph import attribute


@rule("Softmax")
def _softmax(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    y, g = node.output[0], grads[0]
    axis = attribute(node, "axis", -1)
    dot = b.reduce("ReduceSum", b.op("Mul", g, y), [axis], keepdims=True)
    return [b.op("Mul", y, b.op("Sub", g, dot))]


@rule("LogSoftmax")
def _log_softmax(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # y = x - logsumexp(x): dx = g - softmax(x) * sum(g), with softmax(x) = exp(y).
    y, g = node.output[0], grads[0]
    axis = attribute(node, "axis", -1)
    total = b.reduce("ReduceSum", g, [axis], keepdims=True)
    return [b.op("Sub", g, b.op("Mul", b.op("Exp", y), total))]
