"""fp16 conversion of a CAM-ready model (for CUDA), and reading / rewriting its contract metadata.

Only onnx and onnxruntime are needed (no torch): these turn one CAM-ready file into another. The
fp16 converter is ``onnxruntime.transformers.float16``, which ships inside the onnxruntime wheel,
so fp16 adds no dependency. fp16 gave nothing on CPU here (design notes); it is for CUDA and
other accelerators with fast half-precision kernels.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

import onnx

from onnxcam.atomic_write import write_atomically
from onnxcam.contract import METADATA_KEY, ContractError, ModelMetadata
from onnxcam.export.fused_heatmaps import SCOPE as FUSED_SCOPE
from onnxcam.graph import set_metadata_prop

FUSED_NODE_PREFIX = f"onnxcam/{FUSED_SCOPE}/"
"""Name prefix of the fused-heatmap nodes (``onnxcam.export.fused_heatmaps``)."""


def model_metadata(model: onnx.ModelProto) -> ModelMetadata:
    """The contract metadata stored in ``model``; ContractError if it is not a CAM-ready model."""
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ContractError(
            f"the model has no '{METADATA_KEY}' metadata: it is not a CAM-ready model "
            "(export one with `onnxcam export` or make one with `onnxcam augment`)"
        )
    return ModelMetadata.from_json(props[METADATA_KEY])


def set_model_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Replace the contract metadata of ``model`` (in place), keeping its other properties."""
    set_metadata_prop(model, METADATA_KEY, metadata.to_json())


def with_conversion_note(metadata: ModelMetadata, key: str, note: str) -> ModelMetadata:
    """``metadata`` with ``exporter[key] = note``: a converted file says how it was made."""
    return dataclasses.replace(metadata, exporter={**metadata.exporter, key: note})


def load_cam_model(path: str | os.PathLike) -> tuple[onnx.ModelProto, ModelMetadata]:
    """The model at ``path`` and its contract metadata (FileNotFoundError, ContractError)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    model = onnx.load(str(path))
    return model, model_metadata(model)


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` atomically."""
    return write_atomically(path, lambda temporary: onnx.save(model, temporary))


def fused_node_names(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that compute the fused heatmaps."""
    return [node.name for node in model.graph.node if node.name.startswith(FUSED_NODE_PREFIX)]


def convert_to_fp16(
    model_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    keep_float32_nodes: Iterable[str] = (),
) -> Path:
    """Write an fp16 copy of the CAM-ready model at ``model_path`` to ``out``.

    Weights and intermediate tensors become float16; the inputs and outputs stay float32 (Casts at
    the boundary), so the file keeps the contract and ``CamSession`` reads it unchanged. The fused
    heatmap nodes stay float32: their min-max normalisation divides by a span that may be below
    fp16's smallest normal number (6.1e-5). ``keep_float32_nodes`` names further nodes to keep.

    Returns:
        ``out`` as a Path.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model, metadata = load_cam_model(model_path)
    # Shape inference first: the converter decides per tensor from its inferred type.
    model = onnx.shape_inference.infer_shapes(model)
    converted = convert_float_to_float16(
        model,
        keep_io_types=True,
        node_block_list=fused_node_names(model) + list(keep_float32_nodes),
        disable_shape_infer=True,
    )
    _drop_duplicate_nodes(converted.graph)
    set_model_metadata(converted, with_conversion_note(metadata, "precision", "fp16 (float32 inputs/outputs)"))
    return save_model(converted, out)


def _drop_duplicate_nodes(graph: onnx.GraphProto) -> None:
    """Keep the first of identical nodes (in place).

    The converter inserts one Cast back to float32 per (blocked consumer, input) pair, all with
    the same name and output, when several blocked nodes read one fp16 tensor; ONNX Runtime then
    refuses the model ("two nodes with same node name"). The copies are identical, so one serves.
    """
    seen: set[bytes] = set()
    kept = []
    for node in graph.node:
        key = node.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
