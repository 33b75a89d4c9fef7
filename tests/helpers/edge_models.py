"""Models the edge-deployment tests share: fused copies of the zoo exports and their int8 copies
(calibrated on ``onnxcam.demo.calibration_photos``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx

FUSED = (("gradcam", "relu"), ("cam", "relu"), ("gradcam", "abs"))
"""The fused heatmaps every edge test model carries."""


def fused_copy(path: Path, out: Path, fused: Sequence[tuple[str, str]] = FUSED) -> Path:
    """A copy of the CAM-ready model at ``path`` with the ``fused`` heatmaps for its first layer."""
    from onnxcam.export.fused_heatmaps import add_fused_heatmaps
    from onnxcam.export.precision import model_metadata, save_model, set_model_metadata

    model = onnx.load(str(path))
    set_model_metadata(model, add_fused_heatmaps(model, model_metadata(model), fused))
    return save_model(model, out)


