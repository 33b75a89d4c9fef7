"""Opening a CAM-ready model file and checking it against the contract before anything runs."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from onnxcam.contract import (
    CLASS_INDEX,
    INPUT,
    LOGITS,
    METADATA_KEY,
    TARGET_CLASS,
    TARGET_SCORE,
    ContractError,
    ModelMetadata,
)


class ModelFileError(ValueError):
    """The file cannot be used as a CAM-ready model; the message names the file and why."""


def open_inference_session(
    path: str | os.PathLike, providers: list[str], options: ort.SessionOptions
) -> ort.InferenceSession:
    """An ORT session for ``path``; a missing, truncated or non-ONNX file raises ModelFileError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types, one per failure kind
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{str(path)!r} is not a loadable ONNX model (truncated, corrupt or not ONNX): {first_line}"
        ) from exc


def read_contract(session: ort.InferenceSession, path: str | os.PathLike) -> ModelMetadata:
    """The model's contract metadata, after checking its inputs and outputs match it."""
    custom = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in custom:
        raise ModelFileError(
            f"{str(path)!r} has no '{METADATA_KEY}' metadata: it is not a CAM-ready model "
            "(export one with `onnxcam export` or `onnxcam.export.export_cam_model`)"
        )
    try:
        metadata = ModelMetadata.from_json(custom[METADATA_KEY])
    except ContractError as exc:
        raise ModelFileError(f"{str(path)!r}: {exc}") from exc
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    expected_outputs = {LOGITS}
    for layer in metadata.layers:
        expected_outputs |= {layer.activations, layer.gradients}
        if layer.has_cam_weights:
            expected_outputs.add(layer.cam_weights)
    if metadata.target.kind != "logit":
        expected_outputs |= {TARGET_SCORE, TARGET_CLASS}
    expected_inputs = {INPUT, CLASS_INDEX, *metadata.target.input_names}
    missing = sorted((expected_inputs - inputs) | (expected_outputs - outputs))
    if missing:
        raise ModelFileError(f"{str(path)!r} lacks the contract's inputs/outputs {missing}")
    return metadata
