"""Grad-CAM (Selvaraju et al., ICCV 2017)."""

from __future__ import annotations

import numpy as np

from onnxcam.contract import LayerInfo
from onnxcam.graph import GraphBuilder
from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext


class GradCAM(CamMethod):
    r"""Gradient-weighted class activation mapping.

    .. math:: \alpha_k^c = \frac{1}{Z} \sum_{i,j} \frac{\partial y^c}{\partial A^k_{ij}},
        \qquad M^c = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big)

    with the ReLU replaced by the chosen weighting (``relu``, ``abs``, ``abs-weights``, ``none``).

    >>> result = session.explain(batch, method="gradcam", weighting="abs")  # doctest: +SKIP
    """

    name = "gradcam"

    def channel_weights(self, outputs: LayerOutputs, context: MethodContext | None = None) -> np.ndarray:
        return outputs.gradients.mean(axis=(2, 3))

    def graph_weights(self, b: GraphBuilder, layer: LayerInfo) -> str:
        return b.reduce("ReduceMean", layer.gradients, [2, 3])
