"""Elementwise arithmetic (broadcasting binary ops, summed back to each operand's shape by
``unbroadcast``) and elementwise functions of one input, whose derivative is read off x or y."""

from __future__ import annotations

import numpy as np
import onnx

from onnxcam.export.vjp.builder import BackwardBuilder
from onnxcam.export.vjp.registry import FLOAT_TYPES, Grads, Needs, rule


@rule("Add", "Sub")
def _add(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    a, c = node.input
    y, g = node.output[0], grads[0]
    grad_c = b.op("Neg", g) if node.op_type == "Sub" and needs[1] else g
    return [
        b.unbroadcast(g, a, y) if needs[0] else None,
        b.unbroadcast(grad_c, c, y) if needs[1] else None,
    ]


@rule("Where")
def _where(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    condition, a, c = node.input
    y, g = node.output[0], grads[0]
    zero = b.const(0.0)
    return [
        None,
        b.unbroadcast(b.op("Where", condition, g, zero), a, y) if needs[1] else None,
        b.unbroadcast(b.op("Where", condition, zero, g), c, y) if needs[2] else None,
    ]


@rule("Mul")
def _mul(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    a, c = node.input
    y, g = node.output[0], grads[0]
    return [
        b.unbroadcast(b.op("Mul", g, c), a, y) if needs[0] else None,
        b.unbroadcast(b.op("Mul", g, a), c, y) if needs[1] else None,
    ]


@rule("Div")
def _div(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    a, c = node.input
    y, g = node.output[0], grads[0]
    # d(a/c)/dc = -a/c^2 = -y/c
    return [
        b.unbroadcast(b.op("Div", g, c), a, y) if needs[0] else None,
        b.unbroadcast(b.op("Neg", b.op("Div", b.op("Mul", g, y), c)), c, y) if needs[1] else None,
    ]


@rule("Pow")
def _pow(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # d(x^p)/dx = p x^(p-1); a computed exponent would need log(x), undefined for x <= 0.
    x, exponent_name = node.input
    if needs[1]:
        raise b.unsupported("gradients w.r.t. a computed exponent are not written")
    exponent = b.constant(exponent_name, "exponent").astype(np.float32)
    slope = b.op("Mul", b.const(exponent), b.op("Pow", x, b.const(exponent - 1.0)))
    return [b.unbroadcast(b.op("Mul", grads[0], slope), x, node.output[0]), None]


@rule("Neg")
def _neg(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    return [b.op("Neg", grads[0])]


@rule("Exp")
def _exp(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    return [b.op("Mul", grads[0], node.output[0])]


@rule("Log")
def _log(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    return [b.op("Div", grads[0], node.input[0])]


@rule("Sqrt")
def _sqrt(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # d sqrt(x)/dx = 1 / (2 sqrt(x)) = 0.5 / y
    return [b.op("Div", b.op("Mul", grads[0], b.const(0.5)), node.output[0])]


@rule("Reciprocal")
def _reciprocal(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # d(1/x)/dx = -1/x^2 = -y^2
    y = node.output[0]
    return [b.op("Neg", b.op("Mul", grads[0], b.op("Mul", y, y)))]


@rule("Cast", "CastLike")
def _cast(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # Converters cast float to float (float32 <-> float16/float64, often to float32 itself): the
    # gradient is cast back to the input's type. A cast to an integer or boolean is constant almost
    # everywhere: no gradient (such outputs are not in the differentiated region anyway).
    source = b.forward.types.get(node.input[0])
    if source is None or source.elem_type not in FLOAT_TYPES:
        raise b.unsupported(f"the type of its input {node.input[0]!r} is unknown or not float")
    target = b.forward.types.get(node.output[0])
    if target is None or target.elem_type not in FLOAT_TYPES:
        return [None] * len(node.input)
    grad = grads[0] if target.elem_type == source.elem_type else b.op("Cast", grads[0], to=source.elem_type)
    return [grad] + [None] * (len(node.input) - 1)
