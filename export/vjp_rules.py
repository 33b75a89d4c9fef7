"""Vector-Jacobian products of ONNX operators, written as ONNX operators (no torch).

:func:`onnxcam.export.augment.augment_classifier` walks a classifier's graph backwards from the
logits. For every node on a path from a target tensor to the logits it calls the rule registered in
:data:`RULES` for the node's op type: the rule receives the gradients of the node's outputs
(``None`` where an output gets none, e.g. an unused ``Split`` output) and returns the gradients of
the inputs the caller asked for. Rules emit plain ONNX nodes through a :class:`GraphBuilder`, which
names every node ``onnxcam/grad/<op type>/<n>`` so a user can find the backward of any forward node
in Netron.

Conventions shared by the rules (they mirror PyTorch's autograd, which the tests compare with):

- masks of piecewise functions use strict inequalities (``ReLU'(0) = 0``, ``Clip`` passes the
  gradient only strictly inside ``(min, max)``, as ``hardtanh_backward`` does);
- ``MaxPool`` routes each output's gradient to the first maximum of its window in row-major order,
  found with masks (``Equal`` against the pooled value) and scattered back with a one-hot
  ``ConvTranspose``: no ``ScatterElements``, which breaks fp16 and model converters;
- ``ReduceMax`` splits each output's gradient evenly between the tied maxima, as torch's ``amax``
  backward does; ``Abs`` has gradient 0 at 0 (``Sign``);
- window geometry (strides, pads, ``ceil_mode``) is resolved with the static spatial shapes that
  shape inference gives; only the batch dimension may stay symbolic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["RULES", "GraphBuilder", "TensorType", "UnsupportedOpError"]


class UnsupportedOpError(ValueError):
    """Nodes in the differentiated region that onnxcam cannot differentiate.

    ``nodes`` holds ``(op_type, node_name)`` pairs; the message names every one of them.
    """

    def __init__(self, nodes: Sequence[tuple[str, str]], reason: str):
        self.nodes = tuple(nodes)
        listed = ", ".join(f"{op_type} node {name!r}" for op_type, name in self.nodes)
        super().__init__(f"cannot differentiate {listed}: {reason}")


@dataclass(frozen=True)
class TensorType:
    """What shape inference knows of a tensor: ONNX element type and dims (int, symbol or None)."""

    elem_type: int
    dims: tuple[int | str | None, ...] | None


def node_label(node: onnx.NodeProto) -> str:
    """The node's name, or a description by its first output when the file left it unnamed."""
    return node.name or f"<unnamed, output {node.output[0]!r}>"


class GraphBuilder:
    """Emits backward nodes and constants for the rules, one helper per recurring pattern.

    ``types`` and ``constants`` describe the forward graph (shape inference, initializers and
    ``Constant`` nodes); ``opset`` is the forward model's default-domain opset, kept by every
    emitted node.
    """

    def __init__(self, opset: int, types: dict[str, TensorType], constants: dict[str, np.ndarray]):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._types = types
        self.constants = constants
        self._shared: dict[tuple, str] = {}
        self._count = 0
        self.scope = "grad"
        self.node: onnx.NodeProto | None = None

    # -- emitting ---------------------------------------------------------------------------------

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs) -> str | list[str]:
        """Append one node named ``onnxcam/<scope>/<n>``; returns its output name(s)."""
        self._count += 1
        name = f"onnxcam/{self.scope}/{self._count}"
        outs = [name] if outputs == 1 else [f"{name}/{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, value) -> str:
        """An initializer holding ``value`` (float32 unless it is an integer array); shared."""
        array = np.asarray(value)
        array = array.astype(np.int64 if array.dtype.kind in "iu" else np.float32)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._shared:
            name = f"onnxcam/const/{len(self._shared)}"
            self.initializers.append(numpy_helper.from_array(array, name))
            self._shared[key] = name
        return self._shared[key]

    def ints(self, values: Sequence[int]) -> str:
        return self.const(np.asarray(list(values), dtype=np.int64))

    def unsupported(self, reason: str) -> UnsupportedOpError:
        """The error a rule raises for a configuration it cannot differentiate."""
        assert self.node is not None
        return UnsupportedOpError([(self.node.op_type, node_label(self.node))], reason)

    # -- reading the forward graph ---------------------------------------------------------------

    def attr(self, node: onnx.NodeProto, name: str, default=None):
        for attribute in node.attribute:
            if attribute.name == name:
                value = helper.get_attribute_value(attribute)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def constant(self, name: str, what: str) -> np.ndarray:
        """The value of a constant input (initializer or ``Constant`` node)."""
        if name not in self.constants:
            raise self.unsupported(f"its {what} ({name!r}) must be a constant")
        return self.constants[name]

    def optional_input(self, node: onnx.NodeProto, index: int) -> str | None:
        return node.input[index] if len(node.input) > index and node.input[index] else None

    def dims(self, name: str) -> tuple[int | str | None, ...]:
        tensor_type = self._types.get(name)
        if tensor_type is None or tensor_type.dims is None:
            raise self.unsupported(f"shape inference gives no rank for {name!r}")
        return tensor_type.dims

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

    def reshape_like(self, grad: str, like: str) -> str:
        """``grad`` reshaped to the (dynamic) shape of ``like``: shape-only ops invert this way."""
        return self.op("Reshape", grad, self.op("Shape", like))

    def zeros_like(self, like: str) -> str:
        return self.op(
            "ConstantOfShape",
            self.op("Shape", like),
            value=numpy_helper.from_array(np.zeros(1, np.float32)),
        )

    def mask(self, condition: str, grad: str) -> str:
        """``grad`` where ``condition`` holds, 0 elsewhere."""
        return self.op("Where", condition, grad, self.const(0.0))

    def reduce(self, op_type: str, data: str, axes: Sequence[int], keepdims: bool) -> str:
        """``ReduceSum``/``ReduceMean`` over ``axes``: axes are an input from opset 13 (Sum) or 18
        (Mean), an attribute before (augment works at opset 13 or later)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, data, self.ints(axes), keepdims=int(keepdims))
        return self.op(op_type, data, axes=list(axes), keepdims=int(keepdims))

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
        strides = list(self.attr(node, "strides", [1] * spatial))
        dilations = list(self.attr(node, "dilations", [1] * spatial))
        extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        auto_pad = self.attr(node, "auto_pad", "NOTSET")
        if auto_pad in ("NOTSET", "VALID"):
            pads = list(self.attr(node, "pads", [0] * 2 * spatial)) if auto_pad == "NOTSET" else []
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


Rule = Callable[[GraphBuilder, onnx.NodeProto, list, list], list]
"""``rule(builder, node, output_grads, needs) -> input_grads`` (``None`` where not needed)."""

RULES: dict[str, Rule] = {}


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        for op_type in op_types:
            RULES[op_type] = function
        return function

    return register


# -- shape-only and identity ops --------------------------------------------------------------------


@rule("Identity", "Dropout")
def _identity(b: GraphBuilder, node, grads, needs):
    # Dropout is the identity at inference; its mask output carries no gradient.
    return [grads[0]]


@rule("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def _reshape(b: GraphBuilder, node, grads, needs):
    return [b.reshape_like(grads[0], node.input[0])]


@rule("Transpose")
def _transpose(b: GraphBuilder, node, grads, needs):
    perm = b.attr(node, "perm") or list(reversed(range(b.rank(node.input[0]))))
    return [b.op("Transpose", grads[0], perm=[int(i) for i in np.argsort(perm)])]


@rule("Concat")
def _concat(b: GraphBuilder, node, grads, needs):
    axis = b.attr(node, "axis") % b.rank(node.output[0])
    sizes = [b.static_dims(x, [axis])[0] for x in node.input]
    parts = b.op("Split", grads[0], b.ints(sizes), axis=axis, outputs=len(sizes))
    return [parts] if len(sizes) == 1 else parts


@rule("Split")
def _split(b: GraphBuilder, node, grads, needs):
    axis = b.attr(node, "axis", 0)
    parts = [g if g is not None else b.zeros_like(y) for g, y in zip(grads, node.output)]
    return [b.op("Concat", *parts, axis=axis)]


@rule("Slice")
def _slice(b: GraphBuilder, node, grads, needs):
    # The gradient goes back to the sliced positions, zeros elsewhere: strided axes are spread out
    # first (step - 1 zeros after each entry), then one Pad puts every axis back in place.
    x, g = node.input[0], grads[0]
    rank = b.rank(x)
    starts = b.constant(node.input[1], "starts")
    ends = b.constant(node.input[2], "ends")
    axes_name, steps_name = b.optional_input(node, 3), b.optional_input(node, 4)
    axes = b.constant(axes_name, "axes") if axes_name else np.arange(len(starts))
    steps = b.constant(steps_name, "steps") if steps_name else np.ones(len(starts), np.int64)
    if np.any(steps <= 0):
        raise b.unsupported("only positive-step slices are differentiated")
    pads = [0] * 2 * rank
    for start, end, axis, step in zip(starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist()):
        axis %= rank
        (size,) = b.static_dims(x, [axis])
        start = min(max(start + size if start < 0 else start, 0), size)
        end = min(max(end + size if end < 0 else end, start), size)
        span = end - start
        if step > 1 and span > 0:
            taken = len(range(start, end, step))
            g = _spread(b, g, rank, axis, taken, step)
            span = min(taken * step, size - start)
            g = b.op("Slice", g, b.ints([0]), b.ints([span]), b.ints([axis]))
        pads[axis], pads[rank + axis] = start, size - start - span
    return [b.op("Pad", g, b.ints(pads))]


def _spread(b: GraphBuilder, g: str, rank: int, axis: int, taken: int, step: int) -> str:
    """``g`` ``(..., taken, ...)`` (``rank`` axes) -> ``(..., taken * step, ...)`` along ``axis``:
    each entry followed by ``step - 1`` zeros, the transpose of taking every ``step``-th entry."""
    column = b.op("Unsqueeze", g, b.ints([axis + 1]))
    ends = [0] * (rank + 1)
    ends[axis + 1] = step - 1
    padded = b.op("Pad", column, b.ints([0] * (rank + 1) + ends))
    shape = b.op("Shape", g)
    merged = b.op(
        "Concat",
        b.op("Slice", shape, b.ints([0]), b.ints([axis])),
        b.ints([taken * step]),
        b.op("Slice", shape, b.ints([axis + 1]), b.ints([rank])),
        axis=0,
    )
    return b.op("Reshape", padded, merged)


@rule("Pad")
def _pad(b: GraphBuilder, node, grads, needs):
    if b.attr(node, "mode", "constant") != "constant":
        raise b.unsupported("only constant-mode padding is differentiated")
    rank = b.rank(node.input[0])
    pads = b.constant(node.input[1], "pads").tolist()
    axes_name = b.optional_input(node, 3)
    axes = [a % rank for a in b.constant(axes_name, "axes").tolist()] if axes_name else range(rank)
    if min(pads) < 0:
        raise b.unsupported("negative (cropping) pads are not differentiated")
    count = len(pads) // 2
    starts = pads[:count]
    # An end of INT64_MAX keeps the whole axis when nothing was padded there.
    ends = [-p if p else np.iinfo(np.int64).max for p in pads[count:]]
    return [b.op("Slice", grads[0], b.ints(starts), b.ints(ends), b.ints(list(axes)))]


@rule("GatherND")
def _gather_nd(b: GraphBuilder, node, grads, needs):
    # Gathering rows with constant indices is a product with a constant 0/1 matrix P; the VJP is
    # P^T @ grad, a MatMul (torch writes non-divisible adaptive pooling this way).
    if b.attr(node, "batch_dims", 0):
        raise b.unsupported("batch_dims != 0 is not differentiated")
    data = node.input[0]
    indices = b.constant(node.input[1], "indices").astype(np.int64)
    depth = indices.shape[-1]
    sizes = b.static_dims(data, range(depth))
    indices = indices.reshape(-1, depth) % np.asarray(sizes)
    rows = np.ravel_multi_index(tuple(indices.T), sizes)
    transposed = np.zeros((math.prod(sizes), len(rows)), np.float32)
    np.add.at(transposed, (rows, np.arange(len(rows))), 1.0)
    flat = b.op("Reshape", grads[0], b.ints([len(rows), -1]))
    return [b.reshape_like(b.op("MatMul", b.const(transposed), flat), data), None]


@rule("Gather")
def _gather(b: GraphBuilder, node, grads, needs):
    data, indices_name = node.input
    rank = b.rank(data)
    axis = b.attr(node, "axis", 0) % rank
    if indices_name not in b.constants:
        return [_gather_scatter(b, data, indices_name, grads[0], axis, rank), None]
    # Constant indices make the VJP a product with a one-hot matrix (no ScatterElements).
    g = grads[0]
    (size,) = b.static_dims(data, [axis])
    indices = b.constant(indices_name, "indices").astype(np.int64) % size
    if indices.ndim == 0:
        # x.select(axis, i): put the gradient back at row i of that axis with a 0/1 mask.
        row = np.zeros([size] + [1] * (rank - axis - 1), np.float32)
        row[indices] = 1.0
        return [b.op("Mul", b.op("Unsqueeze", g, b.ints([axis])), b.const(row)), None]
    onehot = (indices.reshape(-1, 1) == np.arange(size)).astype(np.float32)
    tail = b.static_dims(data, range(axis + 1, rank))
    flat = b.op("Reshape", g, b.ints([0] * axis + [indices.size] + tail))
    last = [*range(axis), *range(axis + 1, rank), axis]
    moved = b.op("MatMul", b.op("Transpose", flat, perm=last), b.const(onehot))
    return [b.op("Transpose", moved, perm=[int(i) for i in np.argsort(last)]), None]


def _gather_scatter(b: GraphBuilder, data: str, indices: str, g: str, axis: int, rank: int) -> str:
    # Indices computed at run time (torch writes as_strided as a Gather from a flat view, with
    # indices built from the batch size): no constant matrix exists, so the gradient is scattered
    # back with ScatterElements(reduction="add"), opset 16. The one rule that scatters.
    if b.opset < 16:
        raise b.unsupported("run-time indices need ScatterElements with reduction (opset 16)")
    shape = b.op("Shape", data)
    big = np.iinfo(np.int64).max
    flat_shape = b.op(
        "Concat",
        b.op("Slice", shape, b.ints([0]), b.ints([axis])),
        b.ints([-1]),
        b.op("Slice", shape, b.ints([axis + 1]), b.ints([big])),
        axis=0,
    )
    updates = b.op("Reshape", g, flat_shape)
    spread = b.op("Reshape", indices, b.ints([1] * axis + [-1] + [1] * (rank - axis - 1)))
    positions = b.op("Expand", spread, b.op("Shape", updates))
    return b.op("ScatterElements", b.zeros_like(data), positions, updates, axis=axis, reduction="add")


# -- elementwise arithmetic -------------------------------------------------------------------------


@rule("Add", "Sub")
def _add(b: GraphBuilder, node, grads, needs):
    a, c = node.input
    y, g = node.output[0], grads[0]
    grad_c = b.op("Neg", g) if node.op_type == "Sub" and needs[1] else g
    return [
        b.unbroadcast(g, a, y) if needs[0] else None,
        b.unbroadcast(grad_c, c, y) if needs[1] else None,
    ]


@rule("Where")
def _where(b: GraphBuilder, node, grads, needs):
    condition, a, c = node.input
    y, g = node.output[0], grads[0]
    zero = b.const(0.0)
    return [
        None,
        b.unbroadcast(b.op("Where", condition, g, zero), a, y) if needs[1] else None,
        b.unbroadcast(b.op("Where", condition, zero, g), c, y) if needs[2] else None,
    ]


@rule("Mul")
def _mul(b: GraphBuilder, node, grads, needs):
    a, c = node.input
    y, g = node.output[0], grads[0]
    return [
        b.unbroadcast(b.op("Mul", g, c), a, y) if needs[0] else None,
        b.unbroadcast(b.op("Mul", g, a), c, y) if needs[1] else None,
    ]


@rule("Div")
def _div(b: GraphBuilder, node, grads, needs):
    a, c = node.input
    y, g = node.output[0], grads[0]
    # d(a/c)/dc = -a/c^2 = -y/c
    return [
        b.unbroadcast(b.op("Div", g, c), a, y) if needs[0] else None,
        b.unbroadcast(b.op("Neg", b.op("Div", b.op("Mul", g, y), c)), c, y) if needs[1] else None,
    ]


@rule("Pow")
def _pow(b: GraphBuilder, node, grads, needs):
    # d(x^p)/dx = p x^(p-1); a computed exponent would need log(x), undefined for x <= 0.
    x, exponent_name = node.input
    if needs[1]:
        raise b.unsupported("gradients w.r.t. a computed exponent are not written")
    exponent = b.constant(exponent_name, "exponent").astype(np.float32)
    slope = b.op("Mul", b.const(exponent), b.op("Pow", x, b.const(exponent - 1.0)))
    return [b.unbroadcast(b.op("Mul", grads[0], slope), x, node.output[0]), None]


@rule("Expand")
def _expand(b: GraphBuilder, node, grads, needs):
    return [b.unbroadcast(grads[0], node.input[0], node.output[0]), None]


# -- elementwise functions of one input: dy/dx from x or y ------------------------------------------


@rule("Neg")
def _neg(b: GraphBuilder, node, grads, needs):
    return [b.op("Neg", grads[0])]


@rule("Exp")
def _exp(b: GraphBuilder, node, grads, needs):
    return [b.op("Mul", grads[0], node.output[0])]


@rule("Log")
def _log(b: GraphBuilder, node, grads, needs):
    return [b.op("Div", grads[0], node.input[0])]


@rule("Sqrt")
def _sqrt(b: GraphBuilder, node, grads, needs):
    # d sqrt(x)/dx = 1 / (2 sqrt(x)) = 0.5 / y
    return [b.op("Div", b.op("Mul", grads[0], b.const(0.5)), node.output[0])]


@rule("Reciprocal")
def _reciprocal(b: GraphBuilder, node, grads, needs):
    # d(1/x)/dx = -1/x^2 = -y^2
    y = node.output[0]
    return [b.op("Neg", b.op("Mul", grads[0], b.op("Mul", y, y)))]


# -- activations ------------------------------------------------------------------------------------


@rule("Relu")
def _relu(b: GraphBuilder, node, grads, needs):
    return [b.mask(b.op("Greater", node.input[0], b.const(0.0)), grads[0])]


@rule("Abs")
def _abs(b: GraphBuilder, node, grads, needs):
    # Sign(0) = 0: the gradient at 0 is 0, as torch's abs backward (sgn) gives.
    return [b.op("Mul", grads[0], b.op("Sign", node.input[0]))]


@rule("LeakyRelu")
def _leaky_relu(b: GraphBuilder, node, grads, needs):
    x, g = node.input[0], grads[0]
    slope = b.const(b.attr(node, "alpha", 0.01))
    return [b.op("Where", b.op("Greater", x, b.const(0.0)), g, b.op("Mul", g, slope))]


@rule("Clip")
def _clip(b: GraphBuilder, node, grads, needs):
    x = node.input[0]
    low, high = b.optional_input(node, 1), b.optional_input(node, 2)
    inside = [b.op("Greater", x, low)] if low else []
    inside += [b.op("Less", x, high)] if high else []
    if not inside:
        return [grads[0]]
    condition = inside[0] if len(inside) == 1 else b.op("And", *inside)
    return [b.mask(condition, grads[0])]


@rule("HardSigmoid")
def _hard_sigmoid(b: GraphBuilder, node, grads, needs):
    # The linear part is exactly where the output is strictly between 0 and 1.
    y = node.output[0]
    slope = b.const(b.attr(node, "alpha", 0.2))
    linear = b.op("And", b.op("Greater", y, b.const(0.0)), b.op("Less", y, b.const(1.0)))
    return [b.mask(linear, b.op("Mul", grads[0], slope))]


@rule("HardSwish")
def _hard_swish(b: GraphBuilder, node, grads, needs):
    # y = x * relu6(x + 3) / 6: dy/dx = 0 below -3, x/3 + 1/2 on [-3, 3], 1 above (torch's split).
    x, g = node.input[0], grads[0]
    ramp = b.op("Mul", g, b.op("Add", b.op("Div", x, b.const(3.0)), b.const(0.5)))
    upper = b.op("Where", b.op("LessOrEqual", x, b.const(3.0)), ramp, g)
    return [b.op("Where", b.op("Less", x, b.const(-3.0)), b.const(0.0), upper)]


@rule("Sigmoid")
def _sigmoid(b: GraphBuilder, node, grads, needs):
    y = node.output[0]
    return [b.op("Mul", grads[0], b.op("Mul", y, b.op("Sub", b.const(1.0), y)))]


@rule("Tanh")
def _tanh(b: GraphBuilder, node, grads, needs):
    y = node.output[0]
    return [b.op("Mul", grads[0], b.op("Sub", b.const(1.0), b.op("Mul", y, y)))]


def _gaussian(b: GraphBuilder, x: str, scale: float) -> str:
    """``scale * exp(-x^2 / 2)``."""
    return b.op("Mul", b.const(scale), b.op("Exp", b.op("Mul", b.op("Mul", x, x), b.const(-0.5))))


@rule("Erf")
def _erf(b: GraphBuilder, node, grads, needs):
    # erf'(x) = 2/sqrt(pi) exp(-x^2) = 2/sqrt(pi) exp(-(sqrt(2) x)^2 / 2)
    scaled = b.op("Mul", node.input[0], b.const(math.sqrt(2.0)))
    return [b.op("Mul", grads[0], _gaussian(b, scaled, 2.0 / math.sqrt(math.pi)))]


@rule("Gelu")
def _gelu(b: GraphBuilder, node, grads, needs):
    x, g = node.input[0], grads[0]
    half = b.const(0.5)
    if b.attr(node, "approximate", "none") == "tanh":
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


@rule("Softmax")
def _softmax(b: GraphBuilder, node, grads, needs):
    y, g = node.output[0], grads[0]
    axis = b.attr(node, "axis", -1)
    dot = b.reduce("ReduceSum", b.op("Mul", g, y), [axis], keepdims=True)
    return [b.op("Mul", y, b.op("Sub", g, dot))]


@rule("LogSoftmax")
def _log_softmax(b: GraphBuilder, node, grads, needs):
    # y = x - logsumexp(x): dx = g - softmax(x) * sum(g), with softmax(x) = exp(y).
    y, g = node.output[0], grads[0]
    axis = b.attr(node, "axis", -1)
    total = b.reduce("ReduceSum", g, [axis], keepdims=True)
    return [b.op("Sub", g, b.op("Mul", b.op("Exp", y), total))]


# -- linear layers ----------------------------------------------------------------------------------


@rule("Gemm")
def _gemm(b: GraphBuilder, node, grads, needs):
    a, w = node.input[:2]
    c = b.optional_input(node, 2)
    g = grads[0]
    alpha, beta = b.attr(node, "alpha", 1.0), b.attr(node, "beta", 1.0)
    trans_a, trans_w = b.attr(node, "transA", 0), b.attr(node, "transB", 0)
    grad_a = grad_w = grad_c = None
    # Y = alpha A' W' + beta C with A' = A^T if transA (W' likewise); each case is one Gemm.
    if needs[0]:
        grad_a = (
            b.op("Gemm", w, g, alpha=alpha, transA=trans_w, transB=1)
            if trans_a
            else b.op("Gemm", g, w, alpha=alpha, transB=1 - trans_w)
        )
    if needs[1]:
        grad_w = (
            b.op("Gemm", g, a, alpha=alpha, transA=1, transB=trans_a)
            if trans_w
            else b.op("Gemm", a, g, alpha=alpha, transA=1 - trans_a)
        )
    if c and needs[2]:
        grad_c = b.unbroadcast(b.op("Mul", g, b.const(beta)), c, node.output[0])
    return [grad_a, grad_w, grad_c]


def _swap_last(b: GraphBuilder, name: str) -> str:
    rank = b.rank(name)
    if rank < 2:
        raise b.unsupported("MatMul with a 1-D operand is not differentiated")
    return b.op("Transpose", name, perm=[*range(rank - 2), rank - 1, rank - 2])


@rule("MatMul")
def _matmul(b: GraphBuilder, node, grads, needs):
    a, w = node.input
    y, g = node.output[0], grads[0]
    return [
        b.unbroadcast(b.op("MatMul", g, _swap_last(b, w)), a, y) if needs[0] else None,
        b.unbroadcast(b.op("MatMul", _swap_last(b, a), g), w, y) if needs[1] else None,
    ]


@rule("Conv")
def _conv(b: GraphBuilder, node, grads, needs):
    if any(needs[1:]):
        raise b.unsupported("gradients w.r.t. computed convolution weights are not written")
    x, w = node.input[:2]
    kernel = b.attr(node, "kernel_shape") or b.static_dims(w, range(2, b.rank(w)))
    window = b.window(node, x, node.output[0], kernel)
    # ConvTranspose's weight layout (C_in of the transpose = C_out of Conv, C/group, k...) is
    # Conv's, so the forward weights serve unchanged.
    return [b.window_transpose(grads[0], w, window, b.attr(node, "group", 1))]


@rule("BatchNormalization")
def _batch_norm(b: GraphBuilder, node, grads, needs):
    if b.attr(node, "training_mode", 0):
        raise b.unsupported("training-mode batch normalization is not differentiated")
    if any(needs[1:]):
        raise b.unsupported("gradients w.r.t. computed normalization parameters are not written")
    x, scale, _, _, var = node.input[:5]
    epsilon = b.const(b.attr(node, "epsilon", 1e-5))
    # Inference mode is a per-channel affine map: dx = g * scale / sqrt(var + eps).
    factor = b.op("Div", scale, b.op("Sqrt", b.op("Add", var, epsilon)))
    factor = b.op("Reshape", factor, b.ints([-1] + [1] * (b.rank(x) - 2)))
    return [b.op("Mul", grads[0], factor)]


@rule("LayerNormalization")
def _layer_norm(b: GraphBuilder, node, grads, needs):
    if any(needs[1:]):
        raise b.unsupported("gradients w.r.t. computed normalization parameters are not written")
    x, scale = node.input[:2]
    rank = b.rank(x)
    axes = list(range(b.attr(node, "axis", -1) % rank, rank))

    def mean(name: str) -> str:
        return b.reduce("ReduceMean", name, axes, keepdims=True)

    centered = b.op("Sub", x, mean(x))
    variance = mean(b.op("Mul", centered, centered))
    epsilon = b.const(b.attr(node, "epsilon", 1e-5))
    inv_std = b.op("Reciprocal", b.op("Sqrt", b.op("Add", variance, epsilon)))
    normalized = b.op("Mul", centered, inv_std)
    # dx = inv_std * (dn - mean(dn) - n * mean(dn * n)), dn = g * scale, n the normalized input
    dn = b.op("Mul", grads[0], scale)
    projection = b.op("Mul", normalized, mean(b.op("Mul", dn, normalized)))
    inner = b.op("Sub", b.op("Sub", dn, mean(dn)), projection)
    return [b.op("Mul", inv_std, inner)]


# -- pooling and reductions -------------------------------------------------------------------------


@rule("GlobalAveragePool")
def _global_average_pool(b: GraphBuilder, node, grads, needs):
    x = node.input[0]
    area = b.count(x, range(2, b.rank(x)))
    return [b.op("Expand", b.op("Div", grads[0], area), b.op("Shape", x))]


def _reduced_axes(b: GraphBuilder, node) -> list[int] | None:
    """The sorted non-negative axes a Reduce* node reduces (its ``axes`` input or attribute; all
    of them when empty), or None when it is an identity (``noop_with_empty_axes``)."""
    rank = b.rank(node.input[0])
    axes_name = b.optional_input(node, 1)
    axes = b.constant(axes_name, "axes").tolist() if axes_name else b.attr(node, "axes")
    if not axes:
        if b.attr(node, "noop_with_empty_axes", 0):
            return None
        axes = list(range(rank))
    return sorted(a % rank for a in axes)


@rule("ReduceMean", "ReduceSum")
def _reduce(b: GraphBuilder, node, grads, needs):
    x, g = node.input[0], grads[0]
    axes = _reduced_axes(b, node)
    if axes is None:
        return [g]
    if not b.attr(node, "keepdims", 1):
        g = b.op("Unsqueeze", g, b.ints(axes))
    if node.op_type == "ReduceMean":
        g = b.op("Div", g, b.count(x, axes))
    return [b.op("Expand", g, b.op("Shape", x))]


@rule("ReduceMax")
def _reduce_max(b: GraphBuilder, node, grads, needs):
    # The gradient goes to the positions that equal the maximum, split evenly between ties: torch's
    # amax/max-over-dims backward (a global max pooling written as ReduceMax ties the same way).
    x, y, g = node.input[0], node.output[0], grads[0]
    axes = _reduced_axes(b, node)
    if axes is None:
        return [g]
    if not b.attr(node, "keepdims", 1):
        y, g = b.op("Unsqueeze", y, b.ints(axes)), b.op("Unsqueeze", g, b.ints(axes))
    winners = b.op("Cast", b.op("Equal", x, y), to=TensorProto.FLOAT)
    ties = b.op("ReduceSum", winners, b.ints(axes), keepdims=1)
    return [b.op("Mul", winners, b.op("Div", g, ties))]


@rule("AveragePool")
def _average_pool(b: GraphBuilder, node, grads, needs):
    x, y = node.input[0], node.output[0]
    kernel = b.attr(node, "kernel_shape")
    window = b.window(node, x, y, kernel)
    (channels,) = b.static_dims(x, [1])
    sizes = b.static_dims(x, range(2, 2 + len(kernel)))
    ones = b.const(np.ones([1, 1, *sizes]))
    # 1/divisor per output position, for whatever divisor rule the forward used (count_include_pad,
    # ceil_mode): the forward pool of ones is valid/divisor; a ones-kernel Conv counts the valid.
    share = b.op("AveragePool", ones, **{a.name: helper.get_attribute_value(a) for a in node.attribute})
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
def _max_pool(b: GraphBuilder, node, grads, needs):
    x, y = node.input[0], node.output[0]
    kernel = b.attr(node, "kernel_shape")
    window = b.window(node, x, y, kernel)
    (channels,) = b.static_dims(x, [1])
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
