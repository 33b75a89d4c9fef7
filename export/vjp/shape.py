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


INT64_MIN, INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def slice_positions(start: int, end: int, step: int, size: int) -> range:
    """The positions ONNX ``Slice`` takes along an axis of ``size`` entries (negative starts and
    ends count from the end; clamped to ``[0, size]`` for positive steps, to ``[0, size - 1]`` and
    ``[-1, size - 1]`` for negative ones)."""
    start, end = start + size if start < 0 else start, end + size if end < 0 else end
    if step > 0:
        return range(min(max(start, 0), size), min(max(end, 0), size), step)
    return range(min(max(start, 0), size - 1), min(max(end, -1), size - 1), step)


def _flip(b: BackwardBuilder, g: str, axis: int) -> str:
    """``g`` reversed along ``axis``: a Slice with step -1."""
    return b.op("Slice", g, b.ints([-1]), b.ints([INT64_MIN]), b.ints([axis]), b.ints([-1]))


@rule("Slice")
def _slice(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    # The gradient goes back to the sliced positions, zeros elsewhere: a reversed axis (negative
    # step) is flipped back first, strided axes are spread out (step - 1 zeros after each entry),
    # then one Pad puts every axis back in place.
    x, g = node.input[0], grads[0]
    rank = b.rank(x)
    starts = b.constant(node.input[1], "starts")
    ends = b.constant(node.input[2], "ends")
    axes_name, steps_name = optional_input(node, 3), optional_input(node, 4)
    axes = b.constant(axes_name, "axes") if axes_name else np.arange(len(starts))
    steps = b.constant(steps_name, "steps") if steps_name else np.ones(len(starts), np.int64)
    pads = [0] * 2 * rank
    for start, end, axis, step in zip(starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist()):
        axis %= rank
        (size,) = b.static_dims(x, [axis])
        taken = slice_positions(start, end, step, size)
        if step < 0 and len(taken) > 0:
            g, taken = _flip(b, g, axis), taken[::-1]
        first = taken.start if len(taken) > 0 else 0
        span = len(taken)
        if taken.step > 1 and span > 1:
            g = _spread(b, g, rank, axis, span, taken.step)
            span = min(span * taken.step, size - first)
            g = b.op("Slice", g, b.ints([0]), b.ints([span]), b.ints([axis]))
        pads[axis], pads[rank + axis] = first, size - first - span
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
    mode = attribute(node, "mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise b.unsupported(f"{mode!r} padding is not differentiated (constant, reflect and edge are)")
    rank = b.rank(node.input[0])
    pads = b.constant(node.input[1], "pads").tolist()
    axes_name = optional_input(node, 3)
    axes = [a % rank for a in b.constant(axes_name, "axes").tolist()] if axes_name else list(range(rank))
    if min(pads) < 0:
        raise b.unsupported("negative (cropping) pads are not differentiated")
    count = len(pads) // 2
    starts = pads[:count]
    if mode == "constant":
        # An end of INT64_MAX keeps the whole axis when nothing was padded there.
        ends = [-p if p else INT64_MAX for p in pads[count:]]
        return [b.op("Slice", grads[0], b.ints(starts), b.ints(ends), b.ints(axes))]
    # Reflect and edge padding of several axes is the composition of one axis' padding after the
    # other (numpy's and ONNX's definition), so the gradient folds the axes back one at a time.
    g = grads[0]
    for axis, begin, end in zip(axes, starts, pads[count:]):
        if begin or end:
            (size,) = b.static_dims(node.input[0], [axis])
            g = _fold_padding(b, g, rank, axis, (begin, end), size, mode)
    return [g]


def _fold_padding(
    b: BackwardBuilder, g: str, rank: int, axis: int, pads: tuple[int, int], size: int, mode: str
) -> str:
    """The gradient of reflect or edge padding of one axis (``size`` entries, ``pads`` = (begin,
    end)): the middle, plus each padded part added back onto the entries it copied."""
    begin, end = pads

    def part(low: int, high: int) -> str:
        return b.op("Slice", g, b.ints([low]), b.ints([high]), b.ints([axis]))

    def place(piece: str, before: int, after: int) -> str:
        widths = [0] * 2 * rank
        widths[axis], widths[rank + axis] = before, after
        return b.op("Pad", piece, b.ints(widths))

    terms = [part(begin, begin + size)]
    if mode == "edge":
        # Every padded entry copies the edge entry: their gradients sum there.
        if begin:
            terms.append(place(b.reduce("ReduceSum", part(0, begin), [axis]), 0, size - 1))
        if end:
            terms.append(place(b.reduce("ReduceSum", part(begin + size, begin + size + end), [axis]), size - 1, 0))
    else:
        # reflect: padded entry j before the axis copies x[begin - j], entry j after it x[size - 2 - j].
        if max(begin, end) > size - 1:
            raise b.unsupported(f"reflect pads {pads} reach past an axis of {size} entries")
        if begin:
            terms.append(place(_flip(b, part(0, begin), axis), 1, size - 1 - begin))
        if end:
            terms.append(place(_flip(b, part(begin + size, begin + size + end), axis), size - 1 - end, 1))
    return terms[0] if len(terms) == 1 else b.op("Sum", *terms)


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
    big = INT64_MAX
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
