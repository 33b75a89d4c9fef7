"""Reading an ONNX graph: who produces and who consumes each tensor, the constants, node
attributes, and what shape inference knows of each tensor's type. Plain ``onnx``, no torch.

>>> index = GraphIndex(model.graph)  # doctest: +SKIP
>>> index.producers["logits"].op_type, [n.name for n in index.consumers["features"]]  # doctest: +SKIP
('Gemm', ['/fc/Gemm'])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, helper, numpy_helper

DEFAULT_DOMAINS = ("", "ai.onnx")
"""The names of the default (standard operator) domain."""


@dataclass(frozen=True)
class TensorType:
    """What shape inference knows of a tensor: ONNX element type and dims (int, symbol or None)."""

    elem_type: int
    dims: tuple[int | str | None, ...] | None


def attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of ``node``'s attribute ``name`` (strings decoded), or ``default``."""
    for found in node.attribute:
        if found.name == name:
            value = helper.get_attribute_value(found)
            return value.decode() if isinstance(value, bytes) else value
    return default


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """Every attribute of ``node`` by name (strings decoded): ready for ``helper.make_node``."""
    return {found.name: attribute(node, found.name) for found in node.attribute}


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The value of every constant tensor: initializers and default-domain ``Constant`` nodes,
    whichever attribute those hold (``value`` tensors, ``value_float``, ``value_ints``, ...). A
    ``sparse_value`` has no dense value here and is left out."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS and node.attribute:
            held = node.attribute[0]
            if held.type == AttributeProto.TENSOR:
                values[node.output[0]] = numpy_helper.to_array(held.t)
            elif held.type != AttributeProto.SPARSE_TENSOR:
                values[node.output[0]] = np.asarray(attribute(node, held.name))
    return values


def default_opset(model: onnx.ModelProto) -> int:
    """The model's default-domain opset; ValueError when it imports none."""
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return entry.version
    raise ValueError("the model imports no default-domain opset")


def node_label(node: onnx.NodeProto) -> str:
    """The node's name, or a description by its first output when the file left it unnamed."""
    return node.name or f"<unnamed, output {node.output[0]!r}>"


def optional_input(node: onnx.NodeProto, index: int) -> str | None:
    """The name of ``node``'s input ``index``, or None when it is absent or left empty."""
    return node.input[index] if len(node.input) > index and node.input[index] else None


def tensor_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name the graph defines: inputs, initializers and node outputs."""
    names = {i.name for i in graph.input} | {init.name for init in graph.initializer}
    return names | {out for node in graph.node for out in node.output if out}


def downstream_nodes(graph: onnx.GraphProto, source: str) -> list[onnx.NodeProto]:
    """Nodes of ``graph`` that depend, directly or not, on the tensor ``source`` (in graph order,
    which ONNX requires to be topological)."""
    reached = {source}
    found = []
    for node in graph.node:
        if reached.intersection(node.input):
            reached.update(node.output)
            found.append(node)
    return found


def inferred_types(model: onnx.ModelProto, *, data_prop: bool = False) -> dict[str, TensorType]:
    """What ONNX shape inference gives for every named tensor of ``model`` (left unchanged);
    ``data_prop`` also propagates shape values (Shape -> Reshape chains)."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=data_prop)
    types = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        tensor_type = value.type.tensor_type
        dims = None
        if tensor_type.HasField("shape"):
            dims = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor_type.shape.dim
            )
        types[value.name] = TensorType(tensor_type.elem_type, dims)
    for init in inferred.graph.initializer:
        types[init.name] = TensorType(init.data_type, tuple(init.dims))
    return types


class GraphIndex:
    """One read of a graph: producers, consumers, constants and (optionally) inferred types.

    ``producers[t]``: the node that outputs tensor t; ``consumers[t]``: the nodes that read t, each
    once, in graph order; ``constants[t]``: see :func:`constants` (read on first use: it copies
    every weight); ``types``: see :func:`inferred_types` (empty unless given). The index is a
    snapshot: rebuild it after editing the graph.
    """

    def __init__(self, graph: onnx.GraphProto, types: Mapping[str, TensorType] | None = None):
        self.graph = graph
        self.types: Mapping[str, TensorType] = types or {}
        self.producers: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.output:
                if name:
                    self.producers[name] = node
            for name in dict.fromkeys(node.input):
                if name:
                    self.consumers.setdefault(name, []).append(node)

    @cached_property
    def constants(self) -> dict[str, np.ndarray]:
        return constants(self.graph)

    def names(self) -> set[str]:
        """Every tensor and node name in use: what a new name must avoid."""
        graph = self.graph
        values = (*graph.input, *graph.output, *graph.value_info, *graph.initializer)
        return tensor_names(graph) | {value.name for value in values} | {node.name for node in graph.node}

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        """The one node reading ``name``, or None when none or several do."""
        found = self.consumers.get(name, [])
        return found[0] if len(found) == 1 else None

    def dims(self, name: str) -> tuple[int | str | None, ...] | None:
        """The inferred dims of ``name``, or None when its rank is unknown."""
        tensor_type = self.types.get(name)
        return None if tensor_type is None else tensor_type.dims

    def constant_through_transpose(self, name: str) -> np.ndarray | None:
        """The value of ``name`` when it is a constant or a ``Transpose`` of one, else None."""
        if name in self.constants:
            return self.constants[name]
        node = self.producers.get(name)
        if node is not None and node.op_type == "Transpose":
            value = self.constant_through_transpose(node.input[0])
            if value is not None:
                return np.transpose(value, attribute(node, "perm"))
        return None
