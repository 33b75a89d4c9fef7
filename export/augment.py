"""ONNX classifier in, CAM-ready ONNX out, without torch.

:func:`augment_classifier` adds the contract's ``class_index`` input and ``activations/L``,
``gradients/L`` (and, for a GAP + linear head, ``cam_weights/L``) outputs to an existing ONNX
classifier by reverse-mode differentiation of the ONNX graph itself: a one-hot seed on the logits is
pulled back through every node between the logits and the target tensors with the vector-Jacobian
rules of :mod:`onnxcam.export.vjp`, written as plain ONNX ops in the model's own opset.

Files from converters (TensorFlow, Keras, TFLite, Paddle) are taken as they are
(:mod:`onnxcam.export.augment_shapes`): a channels-last input is recorded as
``preprocessing.layout``, channels-last layers are transposed to ``(N, C, h, w)`` inside the graph,
and shapes ONNX inference leaves unknown are measured by one ONNX Runtime run.

Token layers (vision transformers, ``(N, T, C)``) are differentiated as tokens and then turned into
``(N, C, h, w)`` grids by a :class:`TokenGrid`, inside the graph, for both the activations and the
gradients: the file then reads exactly like one that ``export_cam_model(..., reshape=)`` writes.
"""

from __future__ import annotations

import difflib
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

import onnxcam
from onnxcam.atomic_write import write_atomically
from onnxcam.contract import (
    CLASS_INDEX,
    INPUT,
    LOGITS,
    METADATA_KEY,
    TARGET_CLASS,
    TARGET_MASK,
    TARGET_SCORE,
    LayerInfo,
    ModelMetadata,
    Preprocessing,
    TargetInfo,
    TargetInput,
    activations_name,
    cam_weights_name,
    gradients_name,
)
from onnxcam.export.augment_shapes import (
    CHANNELS_LAST,
    LAYOUT_CHOICES,
    REEXPORT_WITH_DYNAMIC_BATCH,
    Log,
    decide_input_layout,
    decide_layer_layout,
    fix_input_shape,
    measure_unknown_shapes,
    spatial_axes,
)
from onnxcam.export.gradient_rewrites import simplify_gradient_ops
from onnxcam.export.per_layer import option_per_layer
from onnxcam.export.vjp import FLOAT_TYPES, RULES, BackwardBuilder, UnsupportedOpError
from onnxcam.graph import (
    DEFAULT_DOMAINS,
    GraphIndex,
    TensorType,
    attribute,
    constants,
    default_opset,
    inferred_types,
    node_label,
    optional_input,
    prune_unneeded,
    set_metadata_prop,
    tensor_names,
)
from onnxcam.runtime.class_scores import graph_explained_class

__all__ = [
    "AUGMENT_TARGETS",
    "TOKENS_TO_GRID",
    "LayerCandidate",
    "TokenGrid",
    "UnsupportedOpError",
    "augment_classifier",
    "candidate_layers",
    "model_input_size",
    "softmax_input",
]

AUGMENT_TARGETS = ("logit", "probability", "segmentation")
"""The built-in targets (``onnxcam.export.targets``) augment writes: their seeds on the model's
output have a closed form. A detection's box score also differentiates the IoU through the boxes:
export detectors from torch."""

# The rules assume opset 13 semantics or later (axes/split/pads as inputs, single-axis Softmax).
MIN_OPSET = 13
# Ops allowed between the pooled vector and the linear head for the CAM-weights pattern (converters
# add float-to-float Casts there).
_PASS_THROUGH = {"Flatten", "Reshape", "Squeeze", "Identity", "Dropout", "Cast"}


@dataclass(frozen=True)
class TokenGrid:
    """Tokens ``(N, T, C)`` -> a grid ``(N, C, h, w)``: the first ``prefix_tokens`` tokens (class,
    distillation or register tokens) are dropped and the other ``h * w`` read as a row-major grid.

    ``grid`` = ``(h, w)``; ``None`` means a square grid. :data:`TOKENS_TO_GRID` is the ONNX twin of
    :func:`onnxcam.export.zoo.vit.tokens_to_grid` (one class token, square grid).
    """

    prefix_tokens: int = 1
    grid: tuple[int, int] | None = None

    def grid_shape(self, layer: str, tokens: int) -> tuple[int, int]:
        """``(h, w)`` for a layer of ``tokens`` tokens; ValueError when they do not fit."""
        patches = tokens - self.prefix_tokens
        if self.grid is not None:
            height, width = self.grid
        else:
            height = width = math.isqrt(max(patches, 0))
        if self.prefix_tokens < 0 or patches <= 0 or height * width != patches:
            raise ValueError(
                f"layer {layer!r} has {tokens} tokens: not {self.prefix_tokens} prefix token(s) + "
                f"a {'x'.join(map(str, self.grid)) if self.grid else 'square'} grid"
            )
        return height, width


TOKENS_TO_GRID = TokenGrid()


@dataclass(frozen=True)
class LayerCandidate:
    """A tensor ``augment`` can explain: its name, the op type that writes it, its shape after the
    batch as the graph holds it, and its layout (``NCHW`` or ``NHWC``, decided from the graph)."""

    name: str
    op_type: str
    shape: tuple[int, ...]
    layout: str


@dataclass(frozen=True)
class _Prepared:
    """A classifier ready to differentiate: contract names in place, input fixed, every tensor typed."""

    proto: onnx.ModelProto
    arch: str | None
    renamed: dict[str, str]
    preprocessing: Preprocessing
    types: dict[str, TensorType]
    batch: str
    num_classes: int


def _prepare(
    model: str | os.PathLike | onnx.ModelProto,
    targets: Sequence[str],
    logits: str | None,
    preprocessing: Preprocessing | None,
    input_shape: Sequence[int] | None,
    input_layout: str,
    log: Log,
    target: str = "logit",
) -> _Prepared:
    proto, arch = _load(model)
    graph = proto.graph
    image = _image_input(graph)
    logits_name = logits if logits is not None else graph.output[0].name
    known, fixed = tensor_names(graph), constants(graph)
    for name in (logits_name, *targets):
        _check_tensor(name, known, fixed)
    if logits_name == image.name:
        raise ValueError(f"the logits {logits_name!r} are the model's input")
    renamed = _rename_contract_tensors(graph, image.name, logits_name, known)
    layout = decide_input_layout(graph, GraphIndex(graph), input_layout, log)
    preprocessing, run_shape = fix_input_shape(graph, preprocessing, input_shape, layout)
    _reset_outputs(graph)
    types = measure_unknown_shapes(proto, _infer_types(proto), run_shape, log)
    batch, num_classes = _check_logits(types, target)
    return _Prepared(proto, arch, renamed, preprocessing, types, batch, num_classes)


def augment_classifier(
    model: str | os.PathLike | onnx.ModelProto,
    layers: str | Sequence[str],
    out_path: str | os.PathLike | None = None,
    *,
    logits: str | None = None,
    preprocessing: Preprocessing | None = None,
    reshape: TokenGrid | Mapping[str, TokenGrid] | None = None,
    input_shape: Sequence[int] | None = None,
    input_layout: str = "auto",
    layout: str | Mapping[str, str] = "auto",
    log: Log | None = None,
    target: str = "logit",
) -> onnx.ModelProto:
    """Make an ONNX classifier CAM-ready by differentiating its graph.

    ``model``: a path or a ``ModelProto`` (left untouched) with one float32 image input, ``(N, C,
    H, W)`` or channels last ``(N, H, W, C)``. ``layers``: the ONNX tensor name(s) to explain;
    outputs are named after them (``activations/<name>``, ``gradients/<name>``). ``logits``: the
    tensor differentiated, by default the classifier's first output (name the pre-softmax tensor of
    a model that outputs probabilities: :func:`softmax_input`). The image input is renamed ``input``
    and the logits ``logits``; other outputs of the classifier are dropped. A static batch size
    becomes symbolic. Models below opset 13 are converted to opset 13, the others keep their opset.

    ``input_layout``: ``"auto"`` (decided from the graph: a ``Transpose`` to channels-first after
    the input, a Conv reading it, else its shape), ``"nchw"`` or ``"nhwc"``; recorded as
    ``preprocessing.layout``, which ``CamSession.explain`` feeds. ``input_shape``: the input's whole
    shape in its layout (batch entry ignored) where the file leaves C, H or W dynamic; otherwise
    the model's static sizes, else ``preprocessing.input_size``. ``preprocessing`` (default: ImageNet
    mean/std, RGB, at the model's size) is recorded with that size and layout. Tensor shapes ONNX
    inference cannot follow are measured by one ONNX Runtime run on zeros of the input's size.

    ``layout``: the target layers' layout, ``"auto"`` (decided per layer from the graph),
    ``"nchw"`` or ``"nhwc"`` (or one per layer name); a channels-last layer's activations and
    gradients are transposed to the contract's ``(N, C, h, w)`` inside the graph.
    ``reshape``: a :class:`TokenGrid` for every target, or one per target name, for token layers
    ``(N, T, C)`` (ViTs): the tokens are differentiated and both outputs reshaped to ``(N, C, h, w)``,
    as ``export_cam_model``'s ``reshape=`` does (such layers have no ``cam_weights``). ``log``
    receives one line per decision made for the caller (layouts, measured shapes).

    ``target``: what is differentiated, one of :data:`AUGMENT_TARGETS`, as the torch route's
    targets of the same names (``onnxcam.export.targets``): ``logit`` (default), ``probability``
    (softmax of ``(N, K)`` logits) or ``segmentation`` (for ``(N, K, H, W)`` outputs: class ``c``
    summed over the added input ``target_mask`` ``(N, H, W)``, ``c = -1`` the class largest over
    the mask); the last two add the outputs ``target/score`` and ``target/class_index`` and no
    ``cam_weights``.

    The graph resolves ``class_index`` = ``TOP1_CLASS`` (any negative value) to the argmax of its
    own logits, seeds ``onehot(class_index) @ logits`` and writes dy^c/dA for every target A.

    Raises :class:`UnsupportedOpError` (naming op type and node) if a node between a target and the
    logits has no rule, ``ValueError`` for unknown tensor names (with close matches) or a model that
    does not fit the contract; nothing is written then. ``out_path`` is written atomically.

    >>> cam_ready = augment_classifier("resnet.onnx", "/layer4/layer4.1/relu_1/Relu_output_0",
    ...                                "resnet_cam.onnx")  # doctest: +SKIP
    """
    if target not in AUGMENT_TARGETS:
        detection = " (a detection target needs torch: export_cam_model(..., target=DetectionBoxScore()))"
        raise ValueError(
            f"augment writes the targets {', '.join(AUGMENT_TARGETS)}; got {target!r}"
            + (detection if target == "detection" else "")
        )
    kind = target  # ``target`` names each layer in the loops below
    log = log or (lambda line: None)
    targets = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not targets:
        raise ValueError("no target layer given")
    prepared = _prepare(model, targets, logits, preprocessing, input_shape, input_layout, log, kind)
    proto, types, batch = prepared.proto, prepared.types, prepared.batch
    graph = proto.graph
    targets_in_graph = {target: prepared.renamed.get(target, target) for target in targets}

    grids = option_per_layer(reshape, targets, "reshape")
    forward = GraphIndex(graph, types)
    options = option_per_layer(layout, targets, "layout")
    layouts = {
        target: _layer_layout(forward, target, tensor, options.get(target, "auto"), prepared.preprocessing.layout, log)
        for target, tensor in targets_in_graph.items()
        if target not in grids
    }
    shapes = {
        target: _layer_shape(target, types.get(tensor, TensorType(0, None)), grids.get(target), layouts.get(target))
        for target, tensor in targets_in_graph.items()
    }
    builder = BackwardBuilder(default_opset(proto), forward)
    region, on_path = _differentiated_region(graph, set(targets_in_graph.values()), types)
    seed, score, explained = _target_seed(builder, kind, prepared.num_classes)
    grads = _pull_back(builder, region, on_path, seed)

    output_dims = list(types[LOGITS].dims[1:])
    outputs = [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, [batch, *output_dims])]
    layer_infos = []
    for target, tensor in targets_in_graph.items():
        shape = shapes[target]
        activations, gradients = tensor, grads[tensor]
        pooled = None
        if target in grids:
            activations = _tokens_to_grid(builder, activations, grids[target], shape)
            gradients = _tokens_to_grid(builder, gradients, grids[target], shape)
        else:
            pooled = _cam_weights_source(forward, tensor, layouts[target]) if kind == "logit" else None
            if layouts[target] == CHANNELS_LAST:
                builder.scope = "channels_first"
                activations = builder.op("Transpose", activations, perm=[0, 3, 1, 2])
                gradients = builder.op("Transpose", gradients, perm=[0, 3, 1, 2])
        named = [(activations_name(target), activations, shape), (gradients_name(target), gradients, shape)]
        if pooled is not None:
            named.append((cam_weights_name(target), grads[pooled], shape[:1]))
        builder.scope = "outputs"
        for name, source, dims in named:
            builder.op("Identity", source, output=name)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, *dims]))
        layer_infos.append(LayerInfo(name=target, shape=shape, has_cam_weights=pooled is not None))

    # Forward nodes, then backward nodes, then the output Identities: a topological order.
    builder.add_to(graph)
    graph.input.append(helper.make_tensor_value_info(CLASS_INDEX, TensorProto.INT64, [batch]))
    target_inputs = _add_target_io(builder, graph, outputs, kind, batch, output_dims, score, explained)
    graph.output.extend(outputs)
    prune_unneeded(graph)
    simplify_gradient_ops(proto)

    metadata = ModelMetadata(
        layers=tuple(layer_infos),
        num_classes=prepared.num_classes,
        preprocessing=prepared.preprocessing,
        arch=prepared.arch,
        exporter={"onnxcam": onnxcam.__version__, "onnx": onnx.__version__},
        target=TargetInfo(kind, target_inputs),
    )
    set_metadata_prop(proto, METADATA_KEY, metadata.to_json())

    proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    onnx.checker.check_model(proto, full_check=True)
    if out_path is not None:
        write_atomically(out_path, lambda temporary: onnx.save(proto, temporary))
    return proto


def softmax_input(model: str | os.PathLike | onnx.ModelProto) -> str | None:
    """The input of the ``Softmax`` (or ``LogSoftmax``) that writes the model's first output (through
    Identity or Cast nodes), the
    scores to differentiate for a model that outputs probabilities; None when it is no softmax."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(os.fspath(model), load_external_data=False)
    graph = proto.graph
    producers = GraphIndex(graph).producers
    producer = producers.get(graph.output[0].name)
    # Converters end with an Identity (Paddle2ONNX) or a Cast after the softmax.
    while producer is not None and producer.op_type in ("Identity", "Cast"):
        producer = producers.get(producer.input[0])
    if producer is None or producer.op_type not in ("Softmax", "LogSoftmax"):
        return None
    return producer.input[0]


def model_input_size(
    model: str | os.PathLike | onnx.ModelProto, *, input_shape: Sequence[int] | None = None, input_layout: str = "auto"
) -> tuple[int, int]:
    """The ``(H, W)`` the model takes: ``input_shape``'s, else its input's static size (ValueError
    naming the unknown axis and ``--input-shape`` otherwise). For a :class:`Preprocessing` of the
    model's own size."""
    proto, _ = _load(model)
    graph = proto.graph
    _rename(graph, _image_input(graph).name, INPUT)
    layout = decide_input_layout(graph, GraphIndex(graph), input_layout, lambda line: None)
    preprocessing, _ = fix_input_shape(graph, None, input_shape, layout)
    return preprocessing.input_size


def candidate_layers(
    model: str | os.PathLike | onnx.ModelProto,
    *,
    logits: str | None = None,
    input_shape: Sequence[int] | None = None,
    input_layout: str = "auto",
) -> list[LayerCandidate]:
    """The tensors ``layers=`` can name, in graph order: float maps ``(N, C, h, w)`` or ``(N, h,
    w, C)`` between the input and the logits, with their shape and layout (the usual Grad-CAM layer
    is the last one with h, w > 1). Arguments as :func:`augment_classifier`."""
    prepared = _prepare(model, [], logits, None, input_shape, input_layout, lambda line: None)
    graph, types = prepared.proto.graph, prepared.types
    original = {new: old for old, new in prepared.renamed.items()}
    index = GraphIndex(graph, types)
    _, on_path = _differentiated_path(graph, {INPUT}, types)
    found = []
    for node in graph.node:
        for name in node.output:
            dims = types[name].dims if name in types else None
            if name not in on_path or dims is None or len(dims) != 4 or types[name].elem_type not in FLOAT_TYPES:
                continue
            layout, _ = decide_layer_layout(index, name, prepared.preprocessing.layout)
            found.append(LayerCandidate(original.get(name, name), node.op_type, tuple(dims[1:]), layout))
    return found


def _layer_layout(forward: GraphIndex, target: str, tensor: str, option: str, input_layout: str, log: Log) -> str:
    if option.lower() not in LAYOUT_CHOICES:
        raise ValueError(f"layout must be one of {', '.join(LAYOUT_CHOICES)}; got {option!r}")
    if option.lower() != "auto":
        return option.upper()
    layout, why = decide_layer_layout(forward, tensor, input_layout)
    log(f"layer {target!r}: {layout} (auto: {why}; --layout / layout= overrides)")
    return layout


# -- loading and validating -------------------------------------------------------------------------


def _load(model: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    if isinstance(model, onnx.ModelProto):
        proto, arch = onnx.ModelProto(), None
        proto.CopyFrom(model)
    else:
        proto, arch = onnx.load(os.fspath(model)), Path(model).stem
    if default_opset(proto) < MIN_OPSET:
        try:
            proto = onnx.version_converter.convert_version(proto, MIN_OPSET)
        except Exception as exc:  # the converter raises bare RuntimeErrors from C++
            message = f"cannot convert the model from opset {default_opset(proto)} to {MIN_OPSET}: {exc}"
            raise ValueError(message) from exc
    return proto, arch


def _image_input(graph: onnx.GraphProto) -> onnx.ValueInfoProto:
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(
            f"a classifier with exactly one input is needed, this one has {[i.name for i in inputs]}"
        )
    tensor_type = inputs[0].type.tensor_type
    if tensor_type.elem_type != TensorProto.FLOAT or len(tensor_type.shape.dim) != 4:
        raise ValueError(f"the input {inputs[0].name!r} must be float32 (N, C, H, W) or (N, H, W, C)")
    return inputs[0]


def _check_tensor(name: str, known: set[str], constants: dict[str, np.ndarray]) -> None:
    if name in constants:
        raise ValueError(f"{name!r} is a constant of the model: it has no gradient")
    if name not in known:
        close = difflib.get_close_matches(name, sorted(known), n=5, cutoff=0.5)
        close += [t for t in sorted(known) if name in t and t not in close][: 5 - len(close)]
        hint = f"; close matches: {', '.join(map(repr, close))}" if close else ""
        raise ValueError(
            f"the model has no tensor named {name!r}{hint} (layers are ONNX tensor names, not module "
            "names: `onnxcam augment MODEL --list-layers` lists them with their shapes)"
        )


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                _rename(subgraph, old, new)
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        if value.name == old:
            value.name = new


def _rename_contract_tensors(
    graph: onnx.GraphProto, image: str, logits: str, known: set[str]
) -> dict[str, str]:
    """Rename the image input to INPUT and the logits to LOGITS, first moving any other tensor
    that holds a contract name out of the way; returns original name -> name in the graph."""
    renamed: dict[str, str] = {}

    def move(original: str, new: str) -> None:
        current = renamed.get(original, original)
        if current != new:
            _rename(graph, current, new)
            renamed[original] = new

    owners = {INPUT: image, LOGITS: logits}
    for reserved in (INPUT, LOGITS, CLASS_INDEX):
        if reserved in known and owners.get(reserved) != reserved:
            free = (f"{reserved}_{i}" for i in range(len(known) + 1))
            move(reserved, next(name for name in free if name not in known))
    move(image, INPUT)
    move(logits, LOGITS)
    return renamed


def _reset_outputs(graph: onnx.GraphProto) -> None:
    # The CAM-ready outputs replace the classifier's; stale inferred shapes could contradict the
    # shapes just fixed, so value_info is inferred afresh.
    del graph.output[:]
    del graph.value_info[:]


def _infer_types(proto: onnx.ModelProto) -> dict[str, TensorType]:
    # The logits as the one output: inference then types every tensor they depend on.
    proto.graph.output.append(helper.make_empty_tensor_value_info(LOGITS))
    types = inferred_types(proto, data_prop=True)
    del proto.graph.output[:]
    return types


def _check_logits(types: dict[str, TensorType], target: str = "logit") -> tuple[str, int]:
    """(batch dimension, K) of the differentiated output: ``(N, K)`` logits, or ``(N, K, H, W)``
    per-pixel scores for the segmentation target, static but for N."""
    logits = types.get(LOGITS)
    rank = 4 if target == "segmentation" else 2
    if logits is None or logits.dims is None or len(logits.dims) != rank or not all(
        isinstance(d, int) for d in logits.dims[1:]
    ):
        if rank == 2:
            raise ValueError(f"the logits must be (N, K) with a static K, shape inference gives {logits}")
        classifier = logits is not None and logits.dims is not None and len(logits.dims) == 2
        raise ValueError(
            f"the segmentation target needs per-pixel scores (N, K, H, W) with static K, H, W; shape "
            f"inference gives {logits}" + (": a classifier takes target 'logit' or 'probability'" if classifier else "")
        )
    batch = types[INPUT].dims[0]
    if isinstance(logits.dims[0], int):
        raise ValueError(
            f"the logits' batch dimension is {logits.dims[0]!r}, not the input's {batch!r}: the batch "
            f"size is baked into the graph. The model must be {REEXPORT_WITH_DYNAMIC_BATCH}"
        )
    return batch, logits.dims[1]


def _layer_shape(
    target: str, tensor_type: TensorType, grid: TokenGrid | None, layout: str | None
) -> tuple[int, int, int]:
    """``(C, h, w)`` of the layer's outputs: its own for a map (channels last or not), the grid's
    for tokens."""
    dims = tensor_type.dims
    rank = 3 if grid is not None else 4
    if tensor_type.elem_type not in FLOAT_TYPES or dims is None or len(dims) != rank:
        expected = "(N, T, C) token" if grid is not None else "(N, C, h, w) or (N, h, w, C)"
        hint = "" if grid is not None else " (token layers need reshape=TokenGrid(...))"
        raise ValueError(
            f"layer {target!r} must be a float {expected} tensor, shape inference gives {dims}{hint}"
        )
    if not all(isinstance(d, int) for d in dims[1:]):
        raise ValueError(f"layer {target!r} has no static shape after the batch: {dims}")
    if grid is None:
        return (dims[3], dims[1], dims[2]) if layout == CHANNELS_LAST else tuple(dims[1:])
    tokens, channels = dims[1:]
    return (channels, *grid.grid_shape(target, tokens))


def _tokens_to_grid(
    b: BackwardBuilder, tokens: str, grid: TokenGrid, shape: tuple[int, int, int]
) -> str:
    """``(N, T, C)`` -> ``(N, C, h, w)`` with ``shape`` = ``(C, h, w)``: Slice, Reshape, Transpose."""
    channels, height, width = shape
    b.scope = "tokens_to_grid"
    patches = b.op(
        "Slice", tokens, b.ints([grid.prefix_tokens]), b.ints([grid.prefix_tokens + height * width]),
        b.ints([1]),
    )
    # Reshape's 0 copies the (symbolic) batch size.
    rows = b.op("Reshape", patches, b.ints([0, height, width, channels]))
    return b.op("Transpose", rows, perm=[0, 3, 1, 2])


# -- differentiation ---------------------------------------------------------------------------------


def _differentiated_path(
    graph: onnx.GraphProto, sources: set[str], types: dict[str, TensorType]
) -> tuple[set[str], set[str]]:
    """``(feeds_logits, on_path)``: every tensor the logits depend on, and the float tensors among
    them that depend on one of ``sources``."""
    depends = set(sources)
    for node in graph.node:
        if any(name in depends for name in node.input):
            # Integer and boolean tensors (shapes, indices, masks) carry no gradient.
            depends.update(o for o in node.output if o and _elem_type(types, o) in FLOAT_TYPES)
    feeds_logits = {LOGITS}
    for node in reversed(graph.node):
        if any(name in feeds_logits for name in node.output):
            feeds_logits.update(node.input)
    return feeds_logits, depends & feeds_logits


def _differentiated_region(
    graph: onnx.GraphProto, targets: set[str], types: dict[str, TensorType]
) -> tuple[list[onnx.NodeProto], set[str]]:
    """The nodes between the targets and the logits (topological order) and the float tensors that
    depend on a target; raises UnsupportedOpError for every such node without a rule."""
    feeds_logits, on_path = _differentiated_path(graph, targets, types)
    for target in targets:
        if target not in feeds_logits:
            raise ValueError(f"the logits do not depend on {target!r}")
    region = [node for node in graph.node if any(o in on_path for o in node.output)]
    missing = [
        (node.op_type, node_label(node))
        for node in region
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in RULES
    ]
    if missing:
        raise UnsupportedOpError(missing, "no vector-Jacobian rule for this op type")
    return region, on_path


def _elem_type(types: dict[str, TensorType], name: str) -> int:
    # A tensor shape inference cannot type is taken as float: it then needs a rule, which is safe.
    return types[name].elem_type if name in types else TensorProto.FLOAT


def _one_hot(b: BackwardBuilder, scores: str, num_classes: int) -> tuple[str, str]:
    """(onehot(class_index) (N, K) float, the class (N,)), a negative index (the contract's
    TOP1_CLASS is -1) replaced by the argmax of ``scores`` (N, K)."""
    chosen = graph_explained_class(b, scores)
    equal = b.op("Equal", b.op("Unsqueeze", chosen, b.ints([1])), b.ints(np.arange(num_classes)))
    return b.op("Cast", equal, to=TensorProto.FLOAT), chosen


def _target_seed(b: BackwardBuilder, target: str, num_classes: int) -> tuple[str, str | None, str | None]:
    """(d target / d logits, the target's value (N,) or None, the explained class (N,) or None):

    - logit: onehot(c), the seed the graph always had;
    - probability: d p_c / d y = p_c (onehot(c) - p), with p = softmax(y);
    - segmentation: d (sum_ij S^c_ij m_ij) / d S = onehot(c) m, c = -1 the class largest over m.
    """
    b.scope = "seed"
    if target == "logit":
        return _one_hot(b, LOGITS, num_classes)[0], None, None
    if target == "probability":
        probabilities = b.op("Softmax", LOGITS, axis=1)
        one_hot, chosen = _one_hot(b, LOGITS, num_classes)
        chosen_probability = b.op("ReduceSum", b.op("Mul", probabilities, one_hot), b.ints([1]), keepdims=1)
        seed = b.op("Mul", chosen_probability, b.op("Sub", one_hot, probabilities))
        return seed, b.op("Squeeze", chosen_probability, b.ints([1])), chosen
    mask = b.op("Unsqueeze", TARGET_MASK, b.ints([1]))  # (N, 1, H, W)
    sums = b.op("ReduceSum", b.op("Mul", LOGITS, mask), b.ints([2, 3]), keepdims=0)  # (N, K)
    one_hot, chosen = _one_hot(b, sums, num_classes)
    seed = b.op("Mul", b.op("Unsqueeze", one_hot, b.ints([2, 3])), mask)
    return seed, b.op("ReduceSum", b.op("Mul", sums, one_hot), b.ints([1]), keepdims=0), chosen


def _add_target_io(
    b: BackwardBuilder,
    graph: onnx.GraphProto,
    outputs: list,
    target: str,
    batch: str,
    output_dims: list[int],
    score: str | None,
    explained: str | None,
) -> tuple[TargetInput, ...]:
    """The target's graph input (a segmentation mask) and its outputs ``target/score`` and
    ``target/class_index``; returns the inputs for the metadata."""
    inputs: tuple[TargetInput, ...] = ()
    if target == "segmentation":
        inputs = (TargetInput(TARGET_MASK, tuple(output_dims[1:])),)
        graph.input.append(helper.make_tensor_value_info(TARGET_MASK, TensorProto.FLOAT, [batch, *output_dims[1:]]))
    if score is not None:
        b.scope = "outputs"
        b.op("Identity", score, output=TARGET_SCORE)
        b.op("Identity", explained, output=TARGET_CLASS)
        b.add_to(graph)
        outputs += [
            helper.make_tensor_value_info(TARGET_SCORE, TensorProto.FLOAT, [batch]),
            helper.make_tensor_value_info(TARGET_CLASS, TensorProto.INT64, [batch]),
        ]
    return inputs


def _pull_back(
    b: BackwardBuilder, region: list[onnx.NodeProto], on_path: set[str], seed: str
) -> dict[str, str]:
    """Reverse sweep: the summed gradient of every tensor on the path (targets included)."""
    pending: dict[str, list[str]] = defaultdict(list)
    pending[LOGITS].append(seed)
    total: dict[str, str] = {}

    def gradient(name: str) -> str | None:
        if name not in total and pending.get(name):
            parts = pending.pop(name)
            b.scope = "grad/accumulate"
            total[name] = parts[0] if len(parts) == 1 else b.op("Sum", *parts)
        return total.get(name)

    for node in reversed(region):
        output_grads = [gradient(name) for name in node.output]
        if all(g is None for g in output_grads):
            continue
        needs = [name in on_path for name in node.input]
        b.scope, b.node = f"grad/{node.op_type}", node
        for name, grad in zip(node.input, RULES[node.op_type](b, node, output_grads, needs)):
            if grad is not None and name in on_path:
                pending[name].append(grad)
    for name in list(pending):
        gradient(name)
    return total


def _cam_weights_source(forward: GraphIndex, tensor: str, layout: str) -> str | None:
    """The (N, C) input of the linear head when ``tensor`` -> global average pool (over the
    ``layout``'s spatial axes) -> (flatten, float casts) ->
    Gemm/MatMul (+Add) -> logits is the only path to the logits: its gradient is then the
    classifier row w^c, which is what CAM multiplies the activations with."""

    def only_consumer(name: str) -> onnx.NodeProto | None:
        # Shape and Size read no values (a dynamic flatten reads the pooled tensor's shape).
        readers = [n for n in forward.consumers.get(name, []) if n.op_type not in ("Shape", "Size")]
        return readers[0] if len(readers) == 1 and name != LOGITS else None

    pool = only_consumer(tensor)
    if pool is None or not _is_global_average(pool, forward.constants, spatial_axes(layout)):
        return None
    current, node = pool.output[0], only_consumer(pool.output[0])
    while node is not None and node.op_type in _PASS_THROUGH:
        current, node = node.output[0], only_consumer(node.output[0])
    if node is None or node.op_type not in ("Gemm", "MatMul") or node.input[0] != current:
        return None
    if node.op_type == "Gemm" and attribute(node, "transA", 0):
        return None
    head = node.output[0]
    if head != LOGITS:
        bias = only_consumer(head)
        if bias is None or bias.op_type != "Add" or bias.output[0] != LOGITS:
            return None
    dims = forward.dims(current)
    return current if dims is not None and len(dims) == 2 else None


def _is_global_average(node: onnx.NodeProto, constants: dict[str, np.ndarray], spatial: tuple[int, int]) -> bool:
    if node.op_type == "GlobalAveragePool":
        return spatial == (2, 3)
    if node.op_type != "ReduceMean":
        return False
    axes_name = optional_input(node, 1)
    axes = constants.get(axes_name) if axes_name else attribute(node, "axes")
    return axes is not None and sorted(int(a) % 4 for a in np.asarray(axes).ravel()) == list(spatial)

