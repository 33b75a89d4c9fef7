"""``Resize`` in ``nearest`` and ``linear`` modes: a linear map of its input, separable per axis,
so its transpose is one MatMul per resized axis with that axis' interpolation matrix.

The matrices are read off ONNX Runtime's own ``Resize`` (the kernel that runs the forward pass)
applied to a one-hot basis, once per axis at export time: every ``coordinate_transformation_mode``,
``nearest_mode`` and ``antialias`` setting then gets its exact transpose without re-deriving the
coordinate formulas here."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from onnxcam.export.vjp.builder import BackwardBuilder
from onnxcam.export.vjp.registry import Grads, Needs, rule
from onnxcam.graph import attributes, optional_input


def _per_axis(b: BackwardBuilder, node: onnx.NodeProto, rank: int, index: int, fill) -> list | None:
    """The node's constant ``scales`` (``index`` 2) or ``sizes`` (3) for every axis (``axes``
    attribute resolved, ``fill`` where not listed), or None when the input is absent or computed."""
    name = optional_input(node, index)
    if name is None or not b.is_constant(name):
        return None
    values = b.constant(name, "scales" if index == 2 else "sizes").tolist()
    if not values:
        return None
    listed = attributes(node).get("axes") or list(range(rank))
    full = list(fill)
    for axis, value in zip(listed, values):
        full[axis % rank] = value
    return full


def interpolation_matrix(node: onnx.NodeProto, opset: int, rank: int, axis: int, size: int, out: int, scale) -> np.ndarray:
    """``(size, out)``: row k is what ``node``'s Resize makes of a one-hot entry k along ``axis``
    (the axis resized alone, from ``size`` to ``out`` entries; ``scale`` its constant scale or None
    to give the size). Computed by ONNX Runtime on a ``(size, 1, ..)`` basis batch."""
    shape = [1] * rank
    shape[0] = shape[axis] = size
    basis = np.zeros(shape, np.float32)
    for k in range(size):
        index = [0] * rank
        index[0] = index[axis] = k
        basis[tuple(index)] = 1.0
    kept = {k: v for k, v in attributes(node).items() if k != "axes"}
    if scale is not None:
        scales = np.ones(rank, np.float32)
        scales[axis] = scale
        inputs, initializer = ["x", "", "scales"], helper.make_tensor("scales", TensorProto.FLOAT, [rank], scales)
    else:
        sizes = list(shape)
        sizes[axis] = out
        inputs, initializer = ["x", "", "", "sizes"], helper.make_tensor("sizes", TensorProto.INT64, [rank], sizes)
    graph = helper.make_graph(
        [helper.make_node("Resize", inputs, ["y"], **kept)],
        "onnxcam_resize_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [initializer],
    )
    opsets = [helper.make_opsetid("", opset)]
    probe = helper.make_model(graph, opset_imports=opsets, ir_version=max(8, helper.find_min_ir_version_for(opsets)))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    (resized,) = session.run(["y"], {"x": basis})
    index = [0] * rank
    index[0], index[axis] = slice(None), slice(None)
    return resized[tuple(index)].reshape(size, -1)


@rule("Resize")
def _resize(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    settings = attributes(node)
    mode = settings.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise b.unsupported(f"mode {mode!r} is not differentiated (nearest and linear are)")
    if settings.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        raise b.unsupported("tf_crop_and_resize (a region of interest) is not differentiated")
    if settings.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise b.unsupported("keep_aspect_ratio_policy other than 'stretch' is not differentiated")
    x, y = node.input[0], node.output[0]
    rank = b.rank(x)
    in_dims, out_dims = b.dims(x), b.dims(y)
    scales = _per_axis(b, node, rank, 2, [1.0] * rank)
    g = grads[0]
    for axis in range(rank):
        scale = scales[axis] if scales is not None else None
        if in_dims[axis] == out_dims[axis] and scale in (None, 1.0):
            continue  # an axis kept as it is (the batch, the channels)
        if axis == 0:
            raise b.unsupported("resizing the batch axis is not differentiated")
        size, out = b.static_dims(x, [axis])[0], b.static_dims(y, [axis])[0]
        matrix = interpolation_matrix(node, b.opset, rank, axis, size, out, scale)
        last = list(range(rank))
        last[axis], last[-1] = last[-1], last[axis]
        moved = g if axis == rank - 1 else b.op("Transpose", g, perm=last)
        # dL/dx[.., k] = sum_o dL/dy[.., o] * matrix[k, o]
        pulled = b.op("MatMul", moved, b.const(matrix.T))
        g = pulled if axis == rank - 1 else b.op("Transpose", pulled, perm=last)
    return [g] + [None] * (len(node.input) - 1)
