"""Export: a torch classifier (or an ONNX one) + target layers -> a CAM-ready ONNX model.

This is the only layer of onnxcam that needs torch.
"""

from onnxcam.export.cam_export import export_cam_model
from onnxcam.export.target_layers import LayerNotFoundError

__all__ = ["LayerNotFoundError", "export_cam_model"]
