"""The committed synthetic_resnet exported CAM-ready with ``input_gradients/plain`` (what class
visualization ascends), once per test process for every test module that asks (the export takes
~15 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

SYNTHETIC_RESNET = Path(__file__).resolve().parents[2] / "models" / "synthetic" / "synthetic_resnet.pt"
_exported: dict[str, Path] = {}


@pytest.fixture(scope="session")
def synthetic_resnet_plain(tmp_path_factory) -> Path:
    """``models/synthetic/synthetic_resnet.pt`` as a CAM-ready file with ``--input-gradients plain``."""
    pytest.importorskip("torch")
    if "path" not in _exported:
        from onnxcam.export.synthetic_models import export_synthetic_model

        folder = tmp_path_factory.mktemp("synthetic_resnet_plain")
        _exported["path"] = export_synthetic_model(SYNTHETIC_RESNET, folder / "synthetic_resnet.onnx", ["plain"])
    return _exported["path"]
