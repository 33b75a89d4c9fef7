"""Reductions: ``ReduceMean``/``ReduceSum`` spread the gradient evenly; ``ReduceMax`` splits
each output's gradient evenly between the tied maxima, as torch's ``amax`` backward does."""

from __future__ import annotations

import onnx
from onnx import TensorProto

from onnxcam.export.vjp.builder import BackwardBuilder
from onnxcam.export.vjp.registry import Grads, Needs, rule
from onnxcam.graph import attribute, optional_input


def _reduced_axes(b: BackwardBuilder, node) -> list[int] | None:
    """The sorted non-negative axes a Reduce* node reduces (its ``axes`` input or attribute; all
    of them when empty), or None when it is an identity (``noop_with_empty_axes``)."""
    rank = b.rank(node.input[0])
    axes_name = optional_input(node, 1)
    axes = b.constant(axes_name, "axes").tolist() if axes_name else attribute(node, "axes")
    if not axes:
        if attribute(node, "noop_with_empty_axes", 0):
            return None
        axes = list(range(rank))
    return sorted(a % rank for a in axes)


@rule("ReduceMean", "ReduceSum")
def _reduce(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    x, g = node.input[0], grads[0]
    axes = _reduced_axes(b, node)
    if axes is None:
        return [g]
    if not attribute(node, "keepdims", 1):
        g = b.op("Unsqueeze", g, b.ints(axes))
    if node.op_type == "ReduceMean":
        g = b.op("Div", g, b.count(x, axes))
    return [b.op("Expand", g, b.op("Shape", x))]


@rule("ReduceMax")
def _reduce_max(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # The gradient goes to the positions that equal the maximum, split evenly between ties: torch's
    # amax/max-over-dims backward (a global max pooling written as ReduceMax ties the same way).
    x, y, g = node.input[0], node.output[0], grads[0]
    axes = _reduced_axes(b, node)
    if axes is None:
        return [g]
    if not attribute(node, "keepdims", 1):
        y, g = b.op("Unsqueeze", y, b.ints(axes)), b.op("Unsqueeze", g, b.ints(axes))
    winners = b.op("Cast", b.op("Equal", x, y), to=TensorProto.FLOAT)
    ties = b.op("ReduceSum", winners, b.ints(axes), keepdims=1)
    return [b.op("Mul", winners, b.op("Div", g, ties))]
