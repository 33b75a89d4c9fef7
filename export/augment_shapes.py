"""What ``augment`` must know of a foreign classifier's tensors before differentiating it: the
input's layout and size, every shape ONNX inference leaves unknown, and each target layer's layout.

Converters from TensorFlow, Keras, TFLite and Caffe write channels-last graphs (``Transpose`` pairs
around every ``Conv``, activations ``(N, h, w, C)``, inputs ``(N, H, W, C)``) whose inner shapes ONNX
shape inference often cannot follow (shapes computed through ``Cast`` chains, ``Reshape`` to computed
shapes). One ONNX Runtime run of the model on zeros of the input's size gives them all; no sympy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from onnxcam.contract import INPUT, LOGITS, Preprocessing
from onnxcam.export.vjp import FLOAT_TYPES
from onnxcam.graph import GraphIndex, TensorType, attribute, optional_input

__all__ = [
    "CHANNELS_FIRST",
    "CHANNELS_LAST",
    "LAYOUT_CHOICES",
    "REEXPORT_WITH_DYNAMIC_BATCH",
    "decide_input_layout",
    "decide_layer_layout",
    "fix_input_shape",
    "measure_unknown_shapes",
    "spatial_axes",
]

CHANNELS_FIRST, CHANNELS_LAST = "NCHW", "NHWC"
LAYOUT_CHOICES = ("auto", "nchw", "nhwc")
"""What ``layout=`` and ``input_layout=`` take: ``auto`` decides from the graph."""
MEASURE_BATCH = 2
"""The batch of the measuring run: axis 0 of size 2 is read as the batch (kept symbolic), and a
graph with its batch size baked in fails there rather than later."""

REEXPORT_WITH_DYNAMIC_BATCH = (
    "re-exported with a dynamic batch: torch.onnx.export(..., dynamic_shapes=({0: torch.export.Dim('batch')},)) "
    "or dynamic_axes={'input': {0: 'batch'}}; tf2onnx: a Keras input of batch None, or --inputs 'NAME:0[-1,H,W,C]'"
)
"""How to get the dynamic batch the contract needs, for the errors that find a fixed one."""

Log = Callable[[str], None]

# Ops that keep a tensor's layout: the layout search walks through them.
_LAYOUT_NEUTRAL = {
    "Relu", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Erf", "Gelu", "Abs",
    "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Pow", "Cast", "Identity", "Dropout", "Add", "Sub",
    "Mul", "Div", "Where", "Max", "Min", "Sum", "Elu", "Selu", "Softplus", "PRelu",
}
# ONNX's windowed and normalisation ops read channels first.
_CHANNELS_FIRST_OPS = {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "BatchNormalization", "InstanceNormalization", "LpPool", "LRN",
}
_TO_CHANNELS_FIRST, _TO_CHANNELS_LAST = [0, 3, 1, 2], [0, 2, 3, 1]


def spatial_axes(layout: str) -> tuple[int, int]:
    """The H and W axes of a 4-D tensor in ``layout``."""
    return (1, 2) if layout == CHANNELS_LAST else (2, 3)


def channel_axis(layout: str) -> int:
    return 3 if layout == CHANNELS_LAST else 1


def _choice(value: str, what: str) -> str | None:
    """``value`` as a layout name, or None for ``auto``; ValueError for anything else."""
    if value.lower() not in LAYOUT_CHOICES:
        raise ValueError(f"{what} must be one of {', '.join(LAYOUT_CHOICES)}; got {value!r}")
    return None if value.lower() == "auto" else value.upper()


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
        for d in value.type.tensor_type.shape.dim
    ]


def _reduced_axes(node: onnx.NodeProto, index: GraphIndex) -> set[int] | None:
    name = optional_input(node, 1)
    axes = index.constants.get(name) if name else attribute(node, "axes")
    return None if axes is None else {int(a) % 4 for a in np.asarray(axes).ravel()}


def _evidence(node: onnx.NodeProto, index: GraphIndex, downstream: bool) -> str | None:
    """The layout that ``node``, reading (``downstream``) or writing the tensor, shows it has."""
    if node.op_type in _CHANNELS_FIRST_OPS:
        return CHANNELS_FIRST
    if node.op_type == "Transpose":
        perm = list(attribute(node, "perm") or [])
        into, out_of = (_TO_CHANNELS_FIRST, _TO_CHANNELS_LAST) if downstream else (_TO_CHANNELS_LAST, _TO_CHANNELS_FIRST)
        return CHANNELS_LAST if perm == into else CHANNELS_FIRST if perm == out_of else None
    if downstream and node.op_type.startswith("Reduce"):
        axes = _reduced_axes(node, index)
        return CHANNELS_LAST if axes == {1, 2} else CHANNELS_FIRST if axes == {2, 3} else None
    return None


def decide_layer_layout(index: GraphIndex, tensor: str, input_layout: str) -> tuple[str, str]:
    """``(layout, why)`` of the 4-D tensor ``tensor``: the nearest evidence in the graph, searched
    breadth-first through layout-neutral ops (activations, arithmetic, casts) both ways: a
    ``Transpose`` into or out of channels-first, a channels-first op (Conv, pools,
    BatchNormalization), a spatial ``Reduce*`` (axes 1, 2 or 2, 3), or the image input."""
    frontier, seen = [tensor], {tensor}
    while frontier:
        following = []
        for name in frontier:
            if name == INPUT and name != tensor:
                return input_layout, f"it has the image input's layout ({input_layout})"
            producer = index.producers.get(name)
            neighbours = [(node, True) for node in index.consumers.get(name, [])]
            neighbours += [(producer, False)] if producer is not None else []
            for node, downstream in neighbours:
                found = _evidence(node, index, downstream)
                if found is not None:
                    how = "reads" if downstream else "writes"
                    return found, f"{node.op_type} node {node.name or node.output[0]!r} {how} it"
                if node.op_type in _LAYOUT_NEUTRAL:
                    nearby = node.output if downstream else node.input
                    for other in nearby:
                        if other and other not in seen and other not in index.constants:
                            seen.add(other)
                            following.append(other)
        frontier = following
    return CHANNELS_FIRST, "no layout evidence in the graph, the ONNX default"


def decide_input_layout(graph: onnx.GraphProto, index: GraphIndex, choice: str, log: Log) -> str:
    """The image input's layout: ``choice`` (``auto``, ``nchw``, ``nhwc``); auto reads the graph
    (see :func:`decide_layer_layout`), then the shape (a last axis of 1 or 3 channels after a
    larger one: channels last). Says what it decided through ``log``."""
    chosen = _choice(choice, "input_layout")
    if chosen is not None:
        return chosen
    layout, why = decide_layer_layout(index, INPUT, CHANNELS_FIRST)
    if why.startswith("no layout"):
        dims = _dims(next(i for i in graph.input if i.name == INPUT))
        last_is_channels = dims[3] in (1, 3) and dims[1] not in (1, 3)
        layout = CHANNELS_LAST if last_is_channels else CHANNELS_FIRST
        why = f"its shape {tuple(dims)}"
    log(f"input layout: {layout} (auto: {why}; --input-layout / input_layout= overrides)")
    return layout


def fix_input_shape(
    graph: onnx.GraphProto,
    preprocessing: Preprocessing | None,
    input_shape: Sequence[int] | None,
    layout: str,
) -> tuple[Preprocessing, tuple[int, ...]]:
    """Make the input's batch symbolic and its other axes static (the window rules need static
    spatial shapes): from ``input_shape`` (the whole shape in the input's layout; its batch entry
    is ignored), else the model's static sizes, else ``preprocessing.input_size``. Returns the
    preprocessing to record (``layout`` and the input size set) and the shape of the measuring run.
    ValueError naming the axis that stays unknown, or that disagrees, and the flag that fixes it."""
    value = next(i for i in graph.input if i.name == INPUT)
    declared = _dims(value)
    name = f"the image input ({layout}, shape {tuple(declared)})"
    if input_shape is not None and len(input_shape) != 4:
        raise ValueError(f"--input-shape / input_shape must have 4 entries (N,H,W,C or N,C,H,W); got {list(input_shape)}")
    axes = {channel_axis(layout): "C", **dict(zip(spatial_axes(layout), "HW"))}
    wanted = dict.fromkeys(axes)
    for axis, letter in axes.items():
        fixed = declared[axis] if isinstance(declared[axis], int) and declared[axis] > 0 else None
        given = int(input_shape[axis]) if input_shape is not None else None
        if fixed is not None and given is not None and fixed != given:
            raise ValueError(
                f"{name} has {letter} = {fixed} (axis {axis}), --input-shape / input_shape says {given}"
            )
        wanted[axis] = given or fixed
    height, width = (wanted[a] for a in spatial_axes(layout))
    if preprocessing is not None:
        if (height or preprocessing.input_size[0], width or preprocessing.input_size[1]) != preprocessing.input_size:
            raise ValueError(
                f"the model takes {(height, width)} images, preprocessing says {preprocessing.input_size}"
            )
        height, width = preprocessing.input_size
        wanted.update(zip(spatial_axes(layout), (height, width)))
    unknown = [(axis, letter) for axis, letter in axes.items() if wanted[axis] is None]
    if unknown:
        example = ["1"] + [str(wanted[a]) if wanted[a] else axes[a] for a in range(1, 4)]
        listed = ", ".join(f"{letter} (axis {axis}: {declared[axis]!r})" for axis, letter in unknown)
        raise ValueError(
            f"{name} leaves {listed} unknown: give the size with --input-shape "
            f"{','.join(example)} (input_shape= in Python)"
        )
    dims = value.type.tensor_type.shape.dim
    if not dims[0].dim_param:
        dims[0].Clear()
        dims[0].dim_param = "N"
    for axis in axes:
        dims[axis].Clear()
        dims[axis].dim_value = wanted[axis]
    base = preprocessing or Preprocessing()
    recorded = dataclasses.replace(base, input_size=(height, width), layout=layout)
    run_shape = (MEASURE_BATCH, *(wanted[a] for a in range(1, 4)))
    return recorded, run_shape


def _unknown(types: dict[str, TensorType], name: str, batch: str | int | None) -> bool:
    """Whether ``name`` is untyped, or a float tensor with a dimension that is neither static nor
    the input's batch symbol."""
    found = types.get(name)
    if found is None:
        return True
    if found.elem_type not in FLOAT_TYPES:
        return False
    return found.dims is None or not all(isinstance(d, int) or d == batch for d in found.dims)


def measure_unknown_shapes(
    proto: onnx.ModelProto, types: dict[str, TensorType], run_shape: tuple[int, ...], log: Log
) -> dict[str, TensorType]:
    """``types`` completed for every float tensor (or untyped one) that ONNX inference left without
    static sizes after the batch, by one ONNX Runtime run of the forward graph (``proto``, which
    has no outputs yet) on zeros of ``run_shape``. Axis 0 of the batch's size becomes the input's
    batch symbol. ``types`` is returned unchanged when nothing is unknown."""
    graph = proto.graph
    batch_symbol = types[INPUT].dims[0]
    unknown = [o for node in graph.node for o in node.output if o and _unknown(types, o, batch_symbol)]
    if not unknown:
        return types
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in [LOGITS, *unknown])
    zeros = np.zeros(run_shape, np.float32)
    try:
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        values = session.run(unknown, {INPUT: zeros})
    except Exception as exc:  # ORT raises its own exception types from C++
        raise ValueError(
            f"ONNX shape inference leaves {len(unknown)} tensor shapes unknown (e.g. {unknown[0]!r}), and running "
            f"the model once on zeros of shape {run_shape} to find them failed: {str(exc).splitlines()[0]}. "
            f"Check --input-shape / input_shape. A graph whose batch size is baked in (it runs at batch 1 only) "
            f"must be {REEXPORT_WITH_DYNAMIC_BATCH}"
        ) from exc
    measured = dict(types)
    for name, array in zip(unknown, values):
        inferred = types[name].dims if name in types else None
        dims: list[int | str] = [int(d) for d in array.shape]
        for axis, size in enumerate(dims):
            was = inferred[axis] if inferred is not None and len(inferred) == len(dims) else None
            if was == batch_symbol or (axis == 0 and not isinstance(was, int) and size == run_shape[0]):
                dims[axis] = batch_symbol
        measured[name] = TensorType(helper.np_dtype_to_tensor_dtype(array.dtype), tuple(dims))
    log(f"shapes: {len(unknown)} tensor shapes that ONNX inference left unknown measured by one run on zeros {run_shape}")
    return measured
