"""Inference-mode normalization layers: BatchNormalization (a per-channel affine map) and
LayerNormalization (differentiated through its statistics)."""

from __future__ import annotations

import onnx

from onnxcam.export.vjp.builder import BackwardBuilder
from onnxcam.export.vjp.registry import Grads, Needs, rule
from onnxcam.graph import attribute


@rule("BatchNormalization")
def _batch_norm(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    if attribute(node, "training_mode", 0):
        raise b.unsupported("training-mode batch normalization is not differentiated")
    if any(needs[1:]):
        raise b.unsupported("gradients w.r.t. computed normalization parameters are not written")
    x, scale, _, _, var = node.input[:5]
    epsilon = b.const(attribute(node, "epsilon", 1e-5))
    # Inference mode is a per-channel affine map: dx = g * scale / sqrt(var + eps).
    factor = b.op("Div", scale, b.op("Sqrt", b.op("Add", var, epsilon)))
    factor = b.op("Reshape", factor, b.ints([-1] + [1] * (b.rank(x) - 2)))
    return [b.op("Mul", grads[0], factor)]


@rule("LayerNormalization")
def _layer_norm(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    if any(needs[1:]):
        raise b.unsupported("gradients w.r.t. computed normalization parameters are not written")
    x, scale = node.input[:2]
    rank = b.rank(x)
    axes = list(range(attribute(node, "axis", -1) % rank, rank))

    def mean(name: str) -> str:
        return b.reduce("ReduceMean", name, axes, keepdims=True)

    centered = b.op("Sub", x, mean(x))
    variance = mean(b.op("Mul", centered, centered))
    epsilon = b.const(attribute(node, "epsilon", 1e-5))
    inv_std = b.op("Reciprocal", b.op("Sqrt", b.op("Add", variance, epsilon)))
    normalized = b.op("Mul", centered, inv_std)
    # dx = inv_std * (dn - mean(dn) - n * mean(dn * n)), dn = g * scale, n the normalized input
    dn = b.op("Mul", grads[0], scale)
    projection = b.op("Mul", normalized, mean(b.op("Mul", dn, normalized)))
    inner = b.op("Sub", b.op("Sub", dn, mean(dn)), projection)
    return [b.op("Mul", inv_std, inner)]
