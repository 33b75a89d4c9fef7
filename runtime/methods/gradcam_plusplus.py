"""Grad-CAM++ (Chattopadhyay et al., WACV 2018)."""

from __future__ import annotations

import numpy as np

from onnxcam.contract import LayerInfo
from onnxcam.graph import GraphBuilder
from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext

EPSILON = 1e-6
"""Added to the denominator of alpha, as pytorch-grad-cam does."""


class GradCAMPlusPlus(CamMethod):
    r"""Grad-CAM++: pixel-wise weighted positive gradients.

    .. math:: \alpha_{ij}^{kc} = \frac{(g^k_{ij})^2}{2 (g^k_{ij})^2 + \sum_{ab} A^k_{ab} (g^k_{ij})^3},
        \qquad w_k^c = \sum_{ij} \alpha_{ij}^{kc}\, \mathrm{ReLU}(g^k_{ij})

    (equation 19 of the paper, with the exponential-score gradients written through g), then
    :math:`M = \mathrm{weighting}(\sum_k w_k^c A^k)`; alpha is 0 where g is 0.

    >>> result = session.explain(batch, method="gradcam++")  # doctest: +SKIP
    """

    name = "gradcam++"

    def channel_weights(self, outputs: LayerOutputs, context: MethodContext | None = None) -> np.ndarray:
        grads = outputs.gradients.astype(np.float64)
        squared = grads**2
        summed = outputs.activations.sum(axis=(2, 3), keepdims=True, dtype=np.float64)
        alpha = squared / (2 * squared + summed * squared * grads + EPSILON)
        alpha = np.where(grads != 0, alpha, 0.0)
        return (np.maximum(grads, 0.0) * alpha).sum(axis=(2, 3))

    def graph_weights(self, b: GraphBuilder, layer: LayerInfo) -> str:
        grads = layer.gradients
        squared = b.op("Mul", grads, grads)
        summed = b.reduce("ReduceSum", layer.activations, [2, 3])
        cubed = b.op("Mul", summed, b.op("Mul", squared, grads))
        denominator = b.op("Add", b.op("Add", b.op("Mul", squared, b.const(2.0)), cubed), b.const(EPSILON))
        alpha = b.op("Where", b.op("Equal", grads, b.const(0.0)), b.const(0.0), b.op("Div", squared, denominator))
        return b.reduce("ReduceSum", b.op("Mul", b.op("Relu", grads), alpha), [2, 3])
