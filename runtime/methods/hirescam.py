"""HiResCAM (Draelos & Carin, 2020)."""

from __future__ import annotations

import numpy as np

from onnxcam.contract import LayerInfo
from onnxcam.graph import GraphBuilder
from onnxcam.runtime.methods.base import CamMethod, LayerOutputs


class HiResCAM(CamMethod):
    r"""HiResCAM: the gradient multiplies the activations position by position.

    .. math:: M^c = \mathrm{weighting}\Big(\sum_k g^k \odot A^k\Big)

    Unlike Grad-CAM's spatial average, this keeps the map faithful to what the score uses.

    >>> result = session.explain(batch, method="hirescam")  # doctest: +SKIP
    """

    name = "hirescam"

    def elementwise_weights(self, outputs: LayerOutputs) -> np.ndarray:
        return outputs.gradients

    def graph_weights(self, b: GraphBuilder, layer: LayerInfo) -> str:
        return layer.gradients
