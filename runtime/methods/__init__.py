"""CAM methods by name. Adding a method means adding one class and one line here."""

from __future__ import annotations

from onnxcam.runtime.methods.base import CamMethod, LayerOutputs
from onnxcam.runtime.methods.cam import CAM
from onnxcam.runtime.methods.gradcam import GradCAM

METHODS: dict[str, type[CamMethod]] = {cls.name: cls for cls in (CAM, GradCAM)}


def get_method(name: str) -> CamMethod:
    """An instance of the method called ``name``; a ValueError lists the valid names."""
    try:
        return METHODS[name]()
    except KeyError:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}") from None


__all__ = ["CAM", "METHODS", "CamMethod", "GradCAM", "LayerOutputs", "get_method"]
