"""Export: a torch classifier (or an ONNX one) + target layers -> a CAM-ready ONNX model.

This is the only layer of onnxcam that needs torch. Its names are imported on first use, so
that ``onnxcam --help`` and the torch-free ``augment`` command do not pay for importing torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "export_cam_model": "onnxcam.export.cam_export",
    "LayerNotFoundError": "onnxcam.export.target_layers",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'onnxcam.export' has no attribute {name!r}")
