"""Writing ONNX graph pieces: one builder that names every node ``onnxcam/<purpose>/<n>`` (so a
user finds it in Netron), shares equal constants, and keeps one helper per recurring op pattern.

>>> b = GraphBuilder(opset=18, scope="heatmap")
>>> weights = b.reduce("ReduceMean", "gradients/layer4", [2, 3])
>>> weights, b.nodes[0].op_type, b.initializers[0].name
('onnxcam/heatmap/1', 'ReduceMean', 'onnxcam/const/1')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["GraphBuilder", "UniqueNames", "set_metadata_prop"]


def set_metadata_prop(model: onnx.ModelProto, key: str, value: str) -> None:
    """Set ``model``'s metadata property ``key`` to ``value`` (in place), after the others."""
    kept = [prop for prop in model.metadata_props if prop.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=key, value=value)


class UniqueNames:
    """Hands out ``onnxcam/<purpose>/<n>`` names (n counts from 1 per purpose) that no name in
    ``taken`` or handed out before has."""

    def __init__(self, taken: Iterable[str] = ()):
        self._taken = set(taken)
        self._counts: dict[str, int] = {}

    def new(self, purpose: str) -> str:
        count = self._counts.get(purpose, 0)
        while True:
            count += 1
            name = f"onnxcam/{purpose}/{count}"
            if name not in self._taken:
                break
        self._counts[purpose] = count
        self._taken.add(name)
        return name


class GraphBuilder:
    """Emits nodes and initializers for the default domain at ``opset``.

    Nodes are named ``onnxcam/<scope>/<n>`` (set :attr:`scope` before a group of nodes); a node's
    output is named after it (``.../<i>`` for several), unless ``output=`` names it. Constants are
    initializers ``onnxcam/const/<n>``, one per distinct value. ``taken``: names already in the graph
    the pieces go into (:meth:`GraphIndex.names <onnxcam.graph.GraphIndex.names>`), which no new
    name repeats. The nodes come out in the order they were emitted, a topological one.
    """

    def __init__(self, opset: int, *, scope: str = "graph", taken: Iterable[str] = ()):
        self.opset = opset
        self.scope = scope
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names = UniqueNames(taken)
        self._shared: dict[tuple, str] = {}

    # -- emitting ---------------------------------------------------------------------------------

    def op(self, op_type: str, *inputs: str, outputs: int = 1, output: str | None = None, **attrs) -> str | list[str]:
        """Append one ``op_type`` node reading ``inputs`` (``""`` skips an optional input);
        returns its output name, or the list of ``outputs`` names."""
        name = self._names.new(self.scope)
        if output is not None:
            outs = [output]
        else:
            outs = [name] if outputs == 1 else [f"{name}/{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, value) -> str:
        """An initializer holding ``value``: int64 for integer values, float32 otherwise; equal
        values share one initializer."""
        array = np.asarray(value)
        array = array.astype(np.int64 if array.dtype.kind in "iu" else np.float32)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._shared:
            name = self._names.new("const")
            self.initializers.append(numpy_helper.from_array(array, name))
            self._shared[key] = name
        return self._shared[key]

    def ints(self, values: Iterable[int]) -> str:
        """A 1-D int64 constant (axes, shapes, pads, starts)."""
        return self.const(np.asarray(list(values), dtype=np.int64))

    def add_to(self, graph: onnx.GraphProto) -> None:
        """Append the emitted nodes and initializers to ``graph`` (after its own nodes)."""
        graph.node.extend(self.nodes)
        graph.initializer.extend(self.initializers)
        self.nodes, self.initializers = [], []

    # -- patterns ---------------------------------------------------------------------------------

    def reduce(self, op_type: str, data: str, axes: Sequence[int], keepdims: bool = True) -> str:
        """``Reduce*`` over ``axes``: the axes are an input from opset 13 for ReduceSum and from
        opset 18 for the others, an attribute before."""
        if self.opset >= 18 or (op_type == "ReduceSum" and self.opset >= 13):
            return self.op(op_type, data, self.ints(axes), keepdims=int(keepdims))
        return self.op(op_type, data, axes=list(axes), keepdims=int(keepdims))

    def reshape_like(self, data: str, like: str) -> str:
        """``data`` reshaped to the (run-time) shape of ``like``."""
        return self.op("Reshape", data, self.op("Shape", like))

    def zeros_like(self, like: str) -> str:
        """Float32 zeros of the (run-time) shape of ``like``."""
        return self.op(
            "ConstantOfShape", self.op("Shape", like), value=numpy_helper.from_array(np.zeros(1, np.float32))
        )

    def mask(self, condition: str, data: str) -> str:
        """``data`` where ``condition`` holds, 0 elsewhere."""
        return self.op("Where", condition, data, self.const(0.0))
