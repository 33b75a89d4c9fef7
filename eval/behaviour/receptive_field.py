"""The receptive field of a layer's units in the input, read from the ONNX graph.

Along one spatial axis, unit ``u`` of a tensor sees input pixels ``start + u * jump`` to
``start + u * jump + size - 1`` (Araujo et al., "Computing receptive fields of convolutional
neural networks", Distill 2019). The input has ``(jump, start, size) = (1, 0, 1)``; an op with
kernel ``k``, stride ``s``, leading padding ``p`` and dilation ``d`` maps a field to
``(jump * s, start - p * jump, size + d * (k - 1) * jump)``. Element-wise ops keep the field; where
several inputs meet (a residual ``Add``, a channel ``Concat``) the field is their union. Every op
between the input and the layer is followed, so the result is exact for chains (and DAGs) of
convolutions, poolings, padding and element-wise ops. An op that mixes all positions (global
pooling, a squeeze-excite gate, a matrix product over flattened maps) makes every later unit see
the whole image; an op this module cannot follow is assumed to do the same, and says so
(``exact=False``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import onnx

from onnxcam.contract import INPUT, METADATA_KEY, ModelMetadata, activations_name
from onnxcam.graph import GraphIndex, attributes, node_label, optional_input

SPATIAL_OPS = frozenset({"Conv", "MaxPool", "AveragePool", "LpPool"})
ELEMENTWISE_OPS = frozenset({
    "Abs", "Add", "BatchNormalization", "Cast", "Ceil", "Celu", "Clip", "Div", "Dropout", "Elu", "Equal",
    "Erf", "Exp", "Floor", "Gelu", "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity",
    "LeakyRelu", "Less", "LessOrEqual", "Log", "Max", "Mean", "Min", "Mish", "Mul", "Neg", "Not", "PRelu",
    "Pow", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid", "Sign", "Softplus", "Softsign", "Sqrt", "Sub",
    "Sum", "Tanh", "ThresholdedRelu", "Where", "QuantizeLinear", "DequantizeLinear", "LRN",
})
"""Ops whose output at a position depends on their inputs at that position only (LRN mixes channels)."""
SHAPE_OPS = frozenset({"Shape", "Size"})
"""Ops that read a tensor's shape, not its values."""
MIXING_OPS = frozenset({
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "Flatten", "Gemm", "MatMul", "InstanceNormalization",
    "LayerNormalization", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL2",
})
"""Ops known to combine every position of their input (what follows them sees the whole image)."""


class ReceptiveFieldError(ValueError):
    """The layer is not in the model, or the model's input has no static size."""


@dataclass(frozen=True)
class AxisField:
    """One spatial axis: unit ``u`` sees input pixels ``start + u * jump`` .. ``+ size - 1``;
    ``length`` is the tensor's extent along the axis (needed for 'SAME' auto-padding)."""

    jump: int
    start: int
    size: int
    length: int

    def through(self, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int, ceil: bool) -> AxisField:
        """The field after a sliding window of ``kernel`` taps (see the module docstring)."""
        span = dilation * (kernel - 1) + 1
        steps = (self.length + pad_begin + pad_end - span) / stride
        length = (math.ceil(steps) if ceil else math.floor(steps)) + 1
        return AxisField(self.jump * stride, self.start - pad_begin * self.jump, self.size + (span - 1) * self.jump, length)

    def union(self, other: AxisField) -> AxisField:
        """Both fields at once, unit by unit (equal jumps: the tensors have the same resolution)."""
        start = min(self.start, other.start)
        end = max(self.start + self.size, other.start + other.size)
        return AxisField(self.jump, start, end - start, self.length)


@dataclass(frozen=True)
class _Spatial:
    axes: tuple[AxisField, AxisField]
    exact: bool = True
    note: str = ""


@dataclass(frozen=True)
class _Global:
    note: str
    exact: bool = True


_State = _Spatial | _Global | None  # None: the tensor does not depend on the input


@dataclass(frozen=True)
class ReceptiveField:
    """Where the units of ``layer`` look in the ``input_size`` = ``(H, W)`` input.

    Unit ``(y, x)`` sees rows ``start[0] + y * jump[0]`` .. ``+ size[0] - 1`` and the columns alike
    (before clipping to the image; ``start`` is negative where padding reaches outside it).
    ``layer_size`` is the layer's ``(h, w)``. ``whole_image``: every unit sees every input pixel
    (``note`` says why: an op that mixes all positions, or a field that covers the image from every
    unit). ``exact``: False where an op that this module cannot follow was assumed to mix all
    positions (``note`` names it).
    """

    layer: str
    input_size: tuple[int, int]
    layer_size: tuple[int, int] | None
    size: tuple[int, int] | None
    jump: tuple[int, int] | None
    start: tuple[int, int] | None
    whole_image: bool
    exact: bool
    note: str = ""

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """The inclusive ``(x0, y0, x1, y1)`` input box of unit ``(y, x)``, clipped to the image."""
        height, width = self.input_size
        if self.size is None:
            return 0, 0, width - 1, height - 1
        y0 = self.start[0] + y * self.jump[0]
        x0 = self.start[1] + x * self.jump[1]
        return (max(x0, 0), max(y0, 0), min(x0 + self.size[1] - 1, width - 1), min(y0 + self.size[0] - 1, height - 1))

    def describe(self) -> str:
        """One line for people: the field's size and stride, or why it is the whole image."""
        if self.size is None:
            return f"{self.layer}: every unit sees the whole {self.input_size[0]}x{self.input_size[1]} image ({self.note})"
        text = (
            f"{self.layer}: {self.size[0]}x{self.size[1]} px receptive field, stride {self.jump[0]}x{self.jump[1]} px, "
            f"on a {self.input_size[0]}x{self.input_size[1]} input"
        )
        if self.whole_image:
            text += " (every unit sees the whole image)"
        return text + ("" if self.exact else f"; not exact: {self.note}")


def _same_padding(length: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """ONNX ``auto_pad`` SAME_UPPER / SAME_LOWER padding of one axis: ``(begin, end)``."""
    span = dilation * (kernel - 1) + 1
    total = max((math.ceil(length / stride) - 1) * stride + span - length, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


def _window(field: _Spatial, node: onnx.NodeProto) -> _Spatial:
    """A convolution or pooling: each spatial axis through its kernel, stride, padding, dilation."""
    found = attributes(node)
    kernel = list(found.get("kernel_shape", ()))
    if len(kernel) != 2:  # a Conv may leave its kernel shape to be read from the weights
        raise ValueError(f"node {node_label(node)!r} has no 2-D kernel_shape")
    strides = list(found.get("strides", [1, 1]))
    dilations = list(found.get("dilations", [1, 1]))
    pads = list(found.get("pads", [0, 0, 0, 0]))
    auto_pad = found.get("auto_pad", "NOTSET")
    ceil = bool(found.get("ceil_mode", 0))
    axes = []
    for i, axis in enumerate(field.axes):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = _same_padding(axis.length, kernel[i], strides[i], dilations[i], auto_pad == "SAME_UPPER")
        elif auto_pad == "VALID":
            begin, end = 0, 0
        else:
            begin, end = pads[i], pads[i + 2]
        axes.append(axis.through(kernel[i], strides[i], begin, end, dilations[i], ceil))
    return _Spatial((axes[0], axes[1]), field.exact, field.note)


def _pad(field: _Spatial, node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> _State:
    """Pad: the spatial axes grow by their leading and trailing pads (a 1-tap window)."""
    found = attributes(node)
    pads = found.get("pads")
    if pads is None and optional_input(node, 1) in constants:
        pads = constants[node.input[1]].tolist()
    if pads is None or optional_input(node, 3) is not None:
        return None
    rank = len(pads) // 2
    mode = found.get("mode", "constant")
    axes = []
    for i, axis in enumerate(field.axes):
        begin, end = int(pads[rank - 2 + i]), int(pads[2 * rank - 2 + i])
        axes.append(axis.through(1, 1, begin, end, 1, False))
    if mode != "constant":  # reflected / repeated border pixels: a padded unit sees pixels inside instead
        return _Spatial((axes[0], axes[1]), False, f"node {node_label(node)!r} pads in {mode!r} mode (border units approximate)")
    return _Spatial((axes[0], axes[1]), field.exact, field.note)


def _channel_axis_only(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> bool:
    """Whether a Concat / Split / Reduce* acts on the channel axis (1) only, keeping positions."""
    found = attributes(node)
    if node.op_type in ("Concat", "Split"):
        return found.get("axis", 0) == 1
    axes = found.get("axes")
    if axes is None and optional_input(node, 1) in constants:
        axes = constants[node.input[1]].tolist()
    return axes is not None and set(int(a) for a in axes) <= {1, -3}


def _combine(states: list[_State], node: onnx.NodeProto) -> _State:
    """The union of the inputs' fields (element-wise op or channel concatenation)."""
    live = [state for state in states if state is not None]
    if not live:
        return None
    globals_ = [state for state in live if isinstance(state, _Global)]
    if globals_:
        return globals_[0]
    combined = live[0]
    for other in live[1:]:
        if any(a.jump != b.jump for a, b in zip(combined.axes, other.axes)):
            return _Global(f"node {node_label(node)!r} ({node.op_type}) joins maps of different strides", exact=False)
        if any((a.length == 1) != (b.length == 1) for a, b in zip(combined.axes, other.axes)):
            return _Global(f"node {node_label(node)!r} ({node.op_type}) broadcasts a 1x1 map over every position")
        axes = (combined.axes[0].union(other.axes[0]), combined.axes[1].union(other.axes[1]))
        combined = _Spatial(axes, combined.exact and other.exact, combined.note or other.note)
    return combined


def _node_state(node: onnx.NodeProto, states: list[_State], constants: dict[str, np.ndarray]) -> _State:
    """The field of a node's outputs from its inputs' fields."""
    live = [state for state in states if state is not None]
    op = node.op_type
    if not live or op in SHAPE_OPS:
        return None
    if op in ELEMENTWISE_OPS:
        return _combine(states, node)
    if any(isinstance(state, _Global) for state in live):
        return next(state for state in live if isinstance(state, _Global))
    first = states[0]
    if op in SPATIAL_OPS and first is not None and len(live) == 1:
        try:
            return _window(first, node)
        except (KeyError, ValueError, IndexError):
            pass
    elif op == "Pad" and first is not None:
        padded = _pad(first, node, constants)
        if padded is not None:
            return padded
    elif op in ("Concat", "Split", "ReduceMean", "ReduceMax", "ReduceSum") and _channel_axis_only(node, constants):
        return _combine(states, node)
    if op in MIXING_OPS:
        return _Global(f"node {node_label(node)!r} ({op}) combines all positions")
    return _Global(f"node {node_label(node)!r} ({op}) is not followed; assumed to combine all positions", exact=False)


def _input_size(model: onnx.ModelProto) -> tuple[int, int]:
    for value in model.graph.input:
        if value.name == INPUT:
            dims = value.type.tensor_type.shape.dim
            if len(dims) == 4 and dims[2].dim_value > 0 and dims[3].dim_value > 0:
                return int(dims[2].dim_value), int(dims[3].dim_value)
            raise ReceptiveFieldError(f"input {INPUT!r} has no static (N, C, H, W) size")
    raise ReceptiveFieldError(f"the model has no input named {INPUT!r}")


def _layer_output(model: onnx.ModelProto, layer: str) -> str:
    """The activations output of ``layer``; an error listing the exported layers if there is none."""
    names = {output.name for output in model.graph.output}
    if activations_name(layer) in names:
        return activations_name(layer)
    metadata = {prop.key: prop.value for prop in model.metadata_props}.get(METADATA_KEY)
    exported = ModelMetadata.from_json(metadata).layer_names if metadata else ()
    raise ReceptiveFieldError(
        f"layer {layer!r} is not an exported layer of the model (no output {activations_name(layer)!r}); "
        f"exported layers: {', '.join(exported) or 'none'}"
    )


def _ancestors(index: GraphIndex, output: str) -> set[str]:
    """The tensors that ``output`` depends on (itself included)."""
    keep, stack = set(), [output]
    while stack:
        name = stack.pop()
        if name not in keep:
            keep.add(name)
            node = index.producers.get(name)
            stack.extend(node.input if node is not None else ())
    return keep


def receptive_field(model: str | os.PathLike | onnx.ModelProto, layer: str) -> ReceptiveField:
    """The receptive field of the units of an exported ``layer`` of a CAM-ready model.

    Args:
        model: a CAM-ready ``.onnx`` file (or its loaded ``ModelProto``), input ``(N, C, H, W)`` with
            static ``H, W``.
        layer: an exported layer (its output ``activations/<layer>``).

    Returns: a :class:`ReceptiveField`; ``box(y, x)`` is the input box of unit ``(y, x)``.

    >>> field = receptive_field("synthetic_resnet.onnx", "layer3")  # doctest: +SKIP
    >>> field.size, field.jump, field.box(6, 6)  # doctest: +SKIP
    ((103, 103), (8, 8), (0, 0, 95, 95))
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model), load_external_data=False)
    output = _layer_output(model, layer)
    height, width = _input_size(model)
    index = GraphIndex(model.graph)
    states: dict[str, _State] = {
        INPUT: _Spatial((AxisField(1, 0, 1, height), AxisField(1, 0, 1, width)))
    }
    needed = _ancestors(index, output)
    for node in model.graph.node:  # ONNX keeps nodes in topological order
        if needed.intersection(node.output):
            state = _node_state(node, [states.get(name) for name in node.input], index.constants)
            for name in node.output:
                states[name] = state
    return _result(layer, (height, width), states.get(output))


def _result(layer: str, input_size: tuple[int, int], state: _State) -> ReceptiveField:
    if not isinstance(state, _Spatial):
        note = state.note if state is not None else "the layer does not depend on the input"
        exact = state.exact if state is not None else True
        return ReceptiveField(layer, input_size, None, None, None, None, True, exact, note)
    rows, cols = state.axes
    # Every unit sees the whole image when the first unit's field reaches past the far edge and the
    # last unit's field starts before the near edge, along both axes.
    covers = all(
        axis.start + (axis.length - 1) * axis.jump <= 0 and axis.start + axis.size >= extent
        for axis, extent in zip(state.axes, input_size)
    )
    note = state.note or ("the field covers the image from every unit" if covers else "")
    return ReceptiveField(
        layer, input_size, (rows.length, cols.length), (rows.size, cols.size), (rows.jump, cols.jump),
        (rows.start, cols.start), covers, state.exact, note,
    )
