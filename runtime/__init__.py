"""Runtime: CAM-ready ONNX model + images -> logits, activations, gradients -> heatmaps.

Needs only numpy and onnxruntime (no torch), so it deploys where torch does not.
"""

from onnxcam.contract import ContractError
from onnxcam.runtime.inputs import InputError
from onnxcam.runtime.methods import METHODS, CamMethod, LayerOutputs, get_method
from onnxcam.runtime.model_file import ModelFileError
from onnxcam.runtime.normalization import minmax_normalize
from onnxcam.runtime.providers import ProviderUnavailableError, select_providers
from onnxcam.runtime.resize import resize_maps
from onnxcam.runtime.session import CamResult, CamSession
from onnxcam.runtime.weighting import WEIGHTINGS, weighted_activation_sum

__all__ = [
    "METHODS",
    "WEIGHTINGS",
    "CamMethod",
    "CamResult",
    "CamSession",
    "ContractError",
    "InputError",
    "LayerOutputs",
    "ModelFileError",
    "ProviderUnavailableError",
    "get_method",
    "minmax_normalize",
    "resize_maps",
    "select_providers",
    "weighted_activation_sum",
]
