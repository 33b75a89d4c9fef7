"""XGrad-CAM (Fu et al., BMVC 2020)."""

from __future__ import annotations

import numpy as np

from onnxcam.contract import LayerInfo
from onnxcam.graph import GraphBuilder
from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext

EPSILON = 1e-7
"""Added to the per-channel activation sum, as pytorch-grad-cam does."""


class XGradCAM(CamMethod):
    r"""Axiom-based Grad-CAM: gradients weighted by the normalised activations.

    .. math:: w_k^c = \sum_{ij} \frac{A^k_{ij}}{\sum_{ab} A^k_{ab}} g^k_{ij}

    >>> result = session.explain(batch, method="xgradcam")  # doctest: +SKIP
    """

    name = "xgradcam"

    def channel_weights(self, outputs: LayerOutputs, context: MethodContext | None = None) -> np.ndarray:
        acts = outputs.activations.astype(np.float64)
        summed = acts.sum(axis=(2, 3), keepdims=True)
        return (outputs.gradients * acts / (summed + EPSILON)).sum(axis=(2, 3))

    def graph_weights(self, b: GraphBuilder, layer: LayerInfo) -> str:
        summed = b.reduce("ReduceSum", layer.activations, [2, 3])
        normalised = b.op("Div", layer.activations, b.op("Add", summed, b.const(EPSILON)))
        return b.reduce("ReduceSum", b.op("Mul", layer.gradients, normalised), [2, 3])
