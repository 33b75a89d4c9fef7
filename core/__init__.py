"""onnxcam: class activation maps from CAM-ready ONNX models.

The layers are subpackages: ``onnxcam.export`` (torch -> CAM-ready ONNX; the only one that needs
torch), ``onnxcam.runtime`` (ONNX Runtime sessions -> heatmaps) and ``onnxcam.eval``
(heatmaps + ground truth -> boxes, localization metrics, reports).
"""

__version__ = "0.1.0"
