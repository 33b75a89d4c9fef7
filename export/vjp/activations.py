"""Activation functions. Piecewise ones mask with strict inequalities (``ReLU'(0) = 0``;
``Clip`` passes the gradient only strictly inside ``(min, max)``, as ``hardtanh_backward`` does);
``Abs`` has gradient 0 at 0 (``Sign``)."""

from __future__ import annotations

import math

import onnx

from onnxcam.export.vjp.builder import BackwardBuilder
from onnxcam.export.vjp.registry import Grads, Needs, rule
from onnxcam.graph import attribute, optional_input


@rule("Relu")
def _relu(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    return [b.mask(b.op("Greater", node.input[0], b.const(0.0)), grads[0])]


@rule("Abs")
def _abs(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # Sign(0) = 0: the gradient at 0 is 0, as torch's abs backward (sgn) gives.
    return [b.op("Mul", grads[0], b.op("Sign", node.input[0]))]


@rule("LeakyRelu")
def _leaky_relu(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    x, g = node.input[0], grads[0]
    slope = b.const(attribute(node, "alpha", 0.01))
    return [b.op("Where", b.op("Greater", x, b.const(0.0)), g, b.op("Mul", g, slope))]


@rule("Clip")
def _clip(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    x = node.input[0]
    low, high = optional_input(node, 1), optional_input(node, 2)
    inside = [b.op("Greater", x, low)] if low else []
    inside += [b.op("Less", x, high)] if high else []
    if not inside:
        return [grads[0]]
    condition = inside[0] if len(inside) == 1 else b.op("And", *inside)
    return [b.mask(condition, grads[0])]


@rule("HardSigmoid")
def _hard_sigmoid(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # The linear part is exactly where the output is strictly between 0 and 1.
    y = node.output[0]
    slope = b.const(attribute(node, "alpha", 0.2))
    linear = b.op("And", b.op("Greater", y, b.const(0.0)), b.op("Less", y, b.const(1.0)))
    return [b.mask(linear, b.op("Mul", grads[0], slope))]


@rule("HardSwish")
def _hard_swish(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # y = x * relu6(x + 3) / 6: dy/dx = 0 below -3, x/3 + 1/2 on [-3, 3], 1 above (torch's split).
    x, g = node.input[0], grads[0]
    ramp = b.op("Mul", g, b.op("Add", b.op("Div", x, b.const(3.0)), b.const(0.5)))
    upper = b.op("Where", b.op("LessOrEqual", x, b.const(3.0)), ramp, g)
    return [b.op("Where", b.op("Less", x, b.const(-3.0)), b.const(0.0), upper)]


@rule("Sigmoid")
def _sigmoid(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    y = node.output[0]
    return [b.op("Mul", grads[0], b.op("Mul", y, b.op("Sub", b.const(1.0), y)))]


@rule("Tanh")
def _tanh(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    y = node.output[0]
    return [b.op("Mul", grads[0], b.op("Sub", b.const(1.0), b.op("Mul", y, y)))]


def _gaussian(b: BackwardBuilder, x: str, scale: float) -> str:
    """``scale * exp(-x^2 / 2)``."""
    return b.op("Mul", b.const(scale), b.op("Exp", b.op("Mul", b.op("Mul", x, x), b.const(-0.5))))


@rule("Erf")
def _erf(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # erf'(x) = 2/sqrt(pi) exp(-x^2) = 2/sqrt(pi) exp(-(sqrt(2) x)^2 / 2)
    scaled = b.op("Mul", node.input[0], b.const(math.sqrt(2.0)))
    return [b.op("Mul", grads[0], _gaussian(b, scaled, 2.0 / math.sqrt(math.pi)))]


@rule("Gelu")
def _gelu(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    x, g = node.input[0], grads[0]
    half = b.const(0.5)
    if attribute(node, "approximate", "none") == "tanh":
        # y = x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
        k, c = math.sqrt(2.0 / math.pi), 0.044715
        square = b.op("Mul", x, x)
        cubic = b.op("Mul", x, b.op("Add", b.const(1.0), b.op("Mul", b.const(c), square)))
        u = b.op("Mul", b.const(k), cubic)
        t = b.op("Tanh", u)
        du = b.op("Mul", b.const(k), b.op("Add", b.const(1.0), b.op("Mul", b.const(3 * c), square)))
        sech2 = b.op("Sub", b.const(1.0), b.op("Mul", t, t))
        slope = b.op(
            "Add",
            b.op("Mul", half, b.op("Add", b.const(1.0), t)),
            b.op("Mul", b.op("Mul", half, x), b.op("Mul", sech2, du)),
        )
    else:
        # y = x Phi(x): dy/dx = Phi(x) + x phi(x)
        erf = b.op("Erf", b.op("Mul", x, b.const(math.sqrt(0.5))))
        cdf = b.op("Mul", half, b.op("Add", b.const(1.0), erf))
        slope = b.op("Add", cdf, b.op("Mul", x, _gaussian(b, x, 1.0 / math.sqrt(2.0 * math.pi))))
    return [b.op("Mul", g, slope)]
