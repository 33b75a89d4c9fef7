"""The ONNX-graph toolkit every layer uses (plain ``onnx`` and numpy, no torch): one index to read a
graph (:class:`GraphIndex`: producers, consumers, constants, attributes, inferred types) and one
builder to write into it (:class:`GraphBuilder`, nodes named ``onnxcam/<purpose>/<n>``).

The graphs stay ``onnx.ModelProto``: that is what ONNX Runtime, the quantizer and the converters
take, and ``onnx.helper`` covers what is written here (``onnx-ir`` would add sympy and ml_dtypes to
the base install for no new capability).
"""

from onnxcam.graph.builder import GraphBuilder, UniqueNames, set_metadata_prop
from onnxcam.graph.index import (
    DEFAULT_DOMAINS,
    GraphIndex,
    TensorType,
    attribute,
    attributes,
    constants,
    default_opset,
    downstream_nodes,
    inferred_types,
    node_label,
    optional_input,
    tensor_names,
)
from onnxcam.graph.prune import prune_unneeded

__all__ = [
    "DEFAULT_DOMAINS",
    "GraphBuilder",
    "GraphIndex",
    "TensorType",
    "UniqueNames",
    "attribute",
    "attributes",
    "constants",
    "default_opset",
    "downstream_nodes",
    "inferred_types",
    "node_label",
    "optional_input",
    "prune_unneeded",
    "set_metadata_prop",
    "tensor_names",
]
