"""The base of every CAM method: a method says which model outputs it reads and how it turns
them into one raw map per image; the session does the rest (running, resizing, normalising)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from onnxcam.runtime.weighting import weighted_activation_sum


@dataclass(frozen=True)
class LayerOutputs:
    """What a CAM-ready model returns for one target layer.

    activations: (N, C, h, w); gradients: (N, C, h, w) = dy^c/dA or None when not fetched;
    cam_weights: (N, C), the classifier rows w^c, or None when the layer has no GAP + linear head.
    """

    activations: np.ndarray
    gradients: np.ndarray | None = None
    cam_weights: np.ndarray | None = None


class CamMethod:
    """A class activation map method: ``M = weighting(sum_k w_k A^k)``.

    Subclasses set ``name`` and the outputs they need, and implement :meth:`channel_weights`;
    methods that are not a weighted sum of channels override :meth:`raw_maps`.
    """

    name: ClassVar[str]
    needs_gradients: ClassVar[bool] = True
    needs_cam_weights: ClassVar[bool] = False

    def channel_weights(self, outputs: LayerOutputs) -> np.ndarray:
        """(N, C) weight of each activation channel."""
        raise NotImplementedError

    def raw_maps(self, outputs: LayerOutputs, weighting: str) -> np.ndarray:
        """(N, h, w) map at the layer's resolution, before resizing and normalisation."""
        weights = self.channel_weights(outputs).astype(np.float32, copy=False)
        return weighted_activation_sum(weights, outputs.activations, weighting)
