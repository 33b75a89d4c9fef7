"""CAM methods by name. Adding a method means adding one class and one line here."""

from __future__ import annotations

from onnxcam.runtime.methods.ablationcam import AblationCAM
from onnxcam.runtime.methods.acol import ACoL
from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext
from onnxcam.runtime.methods.cam import CAM
from onnxcam.runtime.methods.eigencam import EigenCAM
from onnxcam.runtime.methods.gradcam import GradCAM
from onnxcam.runtime.methods.gradcam_plusplus import GradCAMPlusPlus
from onnxcam.runtime.methods.hirescam import HiResCAM
from onnxcam.runtime.methods.input_gradients import Deconvnet, GuidedBackprop, GuidedGradCAM, Saliency
from onnxcam.runtime.methods.layercam import LayerCAM
from onnxcam.runtime.methods.occlusion import Occlusion
from onnxcam.runtime.methods.reciprocam import ReciproCAM, ViTReciproCAM
from onnxcam.runtime.methods.scorecam import ScoreCAM
from onnxcam.runtime.methods.xgradcam import XGradCAM

METHODS: dict[str, type[CamMethod]] = {
    cls.name: cls
    for cls in (
        CAM,
        GradCAM,
        GradCAMPlusPlus,
        XGradCAM,
        HiResCAM,
        LayerCAM,
        EigenCAM,
        AblationCAM,
        ScoreCAM,
        Saliency,
        GuidedBackprop,
        Deconvnet,
        GuidedGradCAM,
        Occlusion,
        ACoL,
        ReciproCAM,
        ViTReciproCAM,
    )
}


def get_method(name: str | CamMethod) -> CamMethod:
    """An instance of the method called ``name`` (a CamMethod instance, configured, is returned
    as is); a ValueError lists the valid names."""
    if isinstance(name, CamMethod):
        return name
    try:
        return METHODS[name]()
    except KeyError:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}") from None


__all__ = [
    "ACoL",
    "CAM",
    "METHODS",
    "AblationCAM",
    "CamMethod",
    "Deconvnet",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "LayerCAM",
    "LayerOutputs",
    "MethodContext",
    "Occlusion",
    "ReciproCAM",
    "Saliency",
    "ScoreCAM",
    "ViTReciproCAM",
    "XGradCAM",
    "get_method",
]
