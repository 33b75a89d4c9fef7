"""CAM (Zhou et al., CVPR 2016)."""

from __future__ import annotations

import numpy as np

from onnxcam.contract import LayerInfo
from onnxcam.graph import GraphBuilder
from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext


class CAM(CamMethod):
    r"""Class activation mapping: the classifier row weighs the channels.

    .. math:: M^c = \sum_k w_k^c A^k

    where :math:`w^c` is the row of class c of the linear layer that follows global average
    pooling. Defined only for a layer feeding a GAP + linear head; the exporter finds that head
    and writes ``cam_weights/<layer>``.

    >>> result = session.explain(batch, method="cam", weighting="relu")  # doctest: +SKIP
    """

    name = "cam"
    needs_gradients = False
    needs_cam_weights = True

    def channel_weights(self, outputs: LayerOutputs, context: MethodContext | None = None) -> np.ndarray:
        return outputs.cam_weights

    def graph_weights(self, b: GraphBuilder, layer: LayerInfo) -> str:
        return b.op("Unsqueeze", layer.cam_weights, b.ints([2, 3]))
