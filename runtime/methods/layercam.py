"""LayerCAM (Jiang et al., IEEE TIP 2021)."""

from __future__ import annotations

import numpy as np

from onnxcam.contract import LayerInfo
from onnxcam.graph import GraphBuilder
from onnxcam.runtime.methods.base import CamMethod, LayerOutputs


class LayerCAM(CamMethod):
    r"""LayerCAM: positive gradients weigh each activation.

    .. math:: M^c = \mathrm{weighting}\Big(\sum_k \mathrm{ReLU}(g^k) \odot A^k\Big)

    The paper fuses several layers, shallow ones for detail: pass ``layer=[...]`` to
    ``CamSession.explain`` (each layer's map is normalised, resized to the input and averaged).

    >>> result = session.explain(batch, method="layercam", layer=["layer3", "layer4"])  # doctest: +SKIP
    """

    name = "layercam"

    def elementwise_weights(self, outputs: LayerOutputs) -> np.ndarray:
        return np.maximum(outputs.gradients, 0.0)

    def graph_weights(self, b: GraphBuilder, layer: LayerInfo) -> str:
        return b.op("Relu", layer.gradients)
