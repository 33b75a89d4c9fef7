"""The builder the rules write with: the toolkit's :class:`~onnxcam.graph.GraphBuilder`, plus what
a rule reads of the forward graph (inferred shapes, constant inputs) and the patterns only
backward passes need (element counts, un-broadcasting, transposed windows)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto

from onnxcam.export.vjp.registry import UnsupportedOpError
from onnxcam.graph import GraphBuilder, GraphIndex, attribute, node_label

__all__ = ["BackwardBuilder", "Window"]


@dataclass(frozen=True)
class Window:
    """Explicit Conv/pool geometry per spatial axis; ``outputs`` are the forward output sizes."""

    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    begin: list[int]
    end: list[int]
    output_padding: list[int]
    outputs: list[int]


class BackwardBuilder(GraphBuilder):
    """Emits the backward nodes of a forward graph described by ``forward`` (a
    :class:`~onnxcam.graph.GraphIndex` with inferred types); ``opset`` is the forward model's
    default-domain opset, kept by every emitted node. :attr:`node` is the forward node whose rule
    runs (the one :meth:`unsupported` names)."""

    def __init__(self, opset: int, forward: GraphIndex):
        super().__init__(opset, scope="grad", taken=forward.names())
        self.forward = forward
        self.node: onnx.NodeProto | None = None

    # -- reading the forward graph ---------------------------------------------------------------

    def unsupported(self, reason: str) -> UnsupportedOpError:
        """The error a rule raises for a configuration it cannot differentiate."""
        assert self.node is not None
        return UnsupportedOpError([(self.node.op_type, node_label(self.node))], reason)

    def is_constant(self, name: str) -> bool:
        return name in self.forward.constants

    def constant(self, name: str, what: str) -> np.ndarray:
        """The value of a constant input (initializer or ``Constant`` node)."""
        if name not in self.forward.constants:
            raise self.unsupported(f"its {what} ({name!r}) must be a constant")
        return self.forward.constants[name]

    def dims(self, name: str) -> tuple[int | str | None, ...]:
        dims = self.forward.dims(name)
        if dims is None:
            raise self.unsupported(f"shape inference gives no rank for {name!r}")
        return dims

    def rank(self, name: str) -> int:
        return len(self.dims(name))

    def static_dims(self, name: str, axes: Sequence[int]) -> list[int]:
        dims = self.dims(name)
        picked = [dims[axis] for axis in axes]
        if not all(isinstance(dim, int) for dim in picked):
            raise self.unsupported(f"needs static sizes on axes {list(axes)} of {name!r}, has {dims}")
        return picked

    # -- patterns ---------------------------------------------------------------------------------

    def count(self, name: str, axes: Sequence[int]) -> str:
        """The number of elements of ``name`` over ``axes`` as a float scalar: a constant when
        shape inference knows the sizes, else computed from the run-time shape."""
        dims = [self.dims(name)[axis] for axis in axes]
        if all(isinstance(dim, int) for dim in dims):
            return self.const(float(math.prod(dims)))
        sizes = self.op("Gather", self.op("Shape", name), self.ints(axes))
        return self.op("Cast", self.op("ReduceProd", sizes, keepdims=0), to=TensorProto.FLOAT)

    def unbroadcast(self, grad: str, operand: str, result: str) -> str:
        """Sum ``grad`` (shaped like the broadcast ``result``) down to the shape of ``operand``."""
        x_dims, y_dims = self.dims(operand), self.dims(result)
        lead = len(y_dims) - len(x_dims)
        axes = list(range(lead))
        for axis, (x_dim, y_dim) in enumerate(zip(x_dims, y_dims[lead:]), start=lead):
            if x_dim == 1 and y_dim != 1:
                axes.append(axis)
            elif x_dim is None or x_dim != y_dim:
                return self._unbroadcast_dynamic(grad, operand, lead)
        if not axes:
            return grad
        summed = self.reduce("ReduceSum", grad, axes, keepdims=True)
        return self.reshape_like(summed, operand) if lead else summed

    def _unbroadcast_dynamic(self, grad: str, operand: str, lead: int) -> str:
        # Shapes unknown to shape inference: reduce over every axis where the operand is 1 at run
        # time (a size-1 axis of the gradient sums to itself), found with NonZero.
        ones = self.op("NonZero", self.op("Equal", self.op("Shape", operand), self.ints([1])))
        axes = self.op("Add", self.op("Reshape", ones, self.ints([-1])), self.ints([lead]))
        if lead:
            axes = self.op("Concat", self.ints(range(lead)), axes, axis=0)
        summed = self.op("ReduceSum", grad, axes, keepdims=1, noop_with_empty_axes=1)
        return self.reshape_like(summed, operand)

    def window(self, node: onnx.NodeProto, data: str, result: str, kernel: Sequence[int]) -> Window:
        """The explicit geometry of a Conv/pool window: auto_pad resolved, and the end padding
        grown so that the output size is the floor formula's (this covers ``ceil_mode``)."""
        spatial = len(kernel)
        sizes = self.static_dims(data, range(2, 2 + spatial))
        outs = self.static_dims(result, range(2, 2 + spatial))
        strides = list(attribute(node, "strides", [1] * spatial))
        dilations = list(attribute(node, "dilations", [1] * spatial))
        extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        auto_pad = attribute(node, "auto_pad", "NOTSET")
        if auto_pad in ("NOTSET", "VALID"):
            pads = list(attribute(node, "pads", [0] * 2 * spatial)) if auto_pad == "NOTSET" else []
            pads = pads or [0] * 2 * spatial
            begin, end = pads[:spatial], pads[spatial:]
        else:
            totals = [
                max((-(-n // s) - 1) * s + e - n, 0) for n, s, e in zip(sizes, strides, extents)
            ]
            small = [t // 2 for t in totals]
            large = [t - h for t, h in zip(totals, small)]
            begin, end = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        end = [
            max(e, (o - 1) * s + k - n - b)
            for e, o, s, k, n, b in zip(end, outs, strides, extents, sizes, begin)
        ]
        output_padding = [
            (n + b + e - k) % s for n, b, e, k, s in zip(sizes, begin, end, extents, strides)
        ]
        return Window(list(kernel), strides, dilations, begin, end, output_padding, outs)

    def window_transpose(self, grad: str, weight: str, window: Window, group: int) -> str:
        """The transpose of a windowed linear map (Conv, pooling): a ``ConvTranspose`` whose
        ``output_padding`` restores exactly the forward input's size."""
        return self.op(
            "ConvTranspose",
            grad,
            weight,
            kernel_shape=window.kernel,
            strides=window.strides,
            dilations=window.dilations,
            pads=window.begin + window.end,
            output_padding=window.output_padding,
            group=group,
        )
