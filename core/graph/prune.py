"""Dropping what a graph's outputs do not need."""

from __future__ import annotations

import onnx


def prune_unneeded(graph: onnx.GraphProto) -> None:
    """Keep only the nodes and initializers that ``graph``'s outputs need (in place, order kept);
    the graph's inputs stay, used or not."""
    needed = {output.name for output in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(onnx.NodeProto())
            kept[-1].CopyFrom(node)
            needed.update(node.input)
    initializers = []
    for init in graph.initializer:
        if init.name in needed:
            initializers.append(onnx.TensorProto())
            initializers[-1].CopyFrom(init)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    del graph.initializer[:]
    graph.initializer.extend(initializers)
