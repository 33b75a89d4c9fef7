"""A CAM-ready ONNX model's forward pass as a ``torch.nn.Module``, for references that need a torch
model (torchcam's and pytorch-grad-cam's metrics) to score the very model onnxcam scores.

It runs the whole file with plain ONNX Runtime (``class_index`` fed with zeros, only ``logits``
read), independently of onnxcam's graph cuts; no gradients flow through it.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS


class OnnxForward(torch.nn.Module):
    """``(N, C, H, W)`` float tensor -> ``(N, K)`` logits of the ONNX model at ``path``."""

    def __init__(self, path):
        super().__init__()
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.calls = 0

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        batch = np.ascontiguousarray(inputs.detach().cpu().numpy(), dtype=np.float32)
        feeds = {INPUT: batch, CLASS_INDEX: np.zeros(len(batch), dtype=np.int64)}
        return torch.from_numpy(self.session.run([LOGITS], feeds)[0])
