"""Shape-only ops and the ops that move, select or pad entries: their gradients put the
entries back where they came from (zeros elsewhere), with no ``ScatterElements`` where the indices
are constant."""

from __future__ import annotations

import math

import numpy as np
import onnx

from onnxcam.export.vjp.builder import BackwardBuilder
from onnxcam.export.vjp.registry import Grads, Needs, rule
from onnxcam.graph import attribute, optional_input


@rule("Identity", "Dropout")
def _identity(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # Dropout is the identity at inference; its mask output carries no gradient.
    return [grads[0]]


@rule("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def _reshape(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    return [b.reshape_like(grads[0], node.input[0])]


@rule("Transpose")
def _transpose(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    perm = attribute(node, "perm") or list(reversed(range(b.rank(node.input[0]))))
    return [b.op("Transpose", grads[0], perm=[int(i) for i in np.argsort(perm)])]


@rule("Concat")
def _concat(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    axis = attribute(node, "axis") % b.rank(node.output[0])
    sizes = [b.static_dims(x, [axis])[0] for x in node.input]
    parts = b.op("Split", grads[0], b.ints(sizes), axis=axis, outputs=len(sizes))
    return [parts] if len(sizes) == 1 else parts


@rule("Split")
def _split(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    axis = attribute(node, "axis", 0)
    parts = [g if g is not None else b.zeros_like(y) for g, y in zip(grads, node.output)]
    return [b.op("Concat", *parts, axis=axis)]


@rule("Slice")
def _slice(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # The gradient goes back to the sliced positions, zeros elsewhere: strided axes are spread out
    # first (step - 1 zeros after each entry), then one Pad puts every axis back in place.
    x, g = node.input[0], grads[0]
    rank = b.rank(x)
    starts = b.constant(node.input[1], "starts")
    ends = b.constant(node.input[2], "ends")
    axes_name, steps_name = optional_input(node, 3), optional_input(node, 4)
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


def _spread(b: BackwardBuilder, g: str, rank: int, axis: int, taken: int, step: int) -> str:
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
def _pad(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    if attribute(node, "mode", "constant") != "constant":
        raise b.unsupported("only constant-mode padding is differentiated")
    rank = b.rank(node.input[0])
    pads = b.constant(node.input[1], "pads").tolist()
    axes_name = optional_input(node, 3)
    axes = [a % rank for a in b.constant(axes_name, "axes").tolist()] if axes_name else range(rank)
    if min(pads) < 0:
        raise b.unsupported("negative (cropping) pads are not differentiated")
    count = len(pads) // 2
    starts = pads[:count]
    # An end of INT64_MAX keeps the whole axis when nothing was padded there.
    ends = [-p if p else np.iinfo(np.int64).max for p in pads[count:]]
    return [b.op("Slice", grads[0], b.ints(starts), b.ints(ends), b.ints(list(axes)))]


@rule("GatherND")
def _gather_nd(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # Gathering rows with constant indices is a product with a constant 0/1 matrix P; the VJP is
    # P^T @ grad, a MatMul (torch writes non-divisible adaptive pooling this way).
    if attribute(node, "batch_dims", 0):
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
def _gather(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    data, indices_name = node.input
    rank = b.rank(data)
    axis = attribute(node, "axis", 0) % rank
    if not b.is_constant(indices_name):
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


def _gather_scatter(b: BackwardBuilder, data: str, indices: str, g: str, axis: int, rank: int) -> str:
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


@rule("Expand")
def _expand(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    return [b.unbroadcast(grads[0], node.input[0], node.output[0]), None]
