"""Ablation-CAM (Desai & Ramaswamy, WACV 2020)."""

from __future__ import annotations

import numpy as np

from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext


class AblationCAM(CamMethod):
    r"""Ablation-CAM: how much the class score drops when one channel is zeroed.

    .. math:: w_k^c = \frac{y^c - y^c_k}{y^c}, \qquad M^c = \mathrm{weighting}\Big(\sum_k w_k^c A^k\Big)

    with :math:`y^c_k` the score with channel k of the layer set to zero. Only the part of the
    network after the layer runs again, cut out of the model's own graph, all C ablations of an
    image batched; ops right after the layer that commute with zeroing a channel (ReLU, pooling,
    spatial means) and all classes but c of the final linear layer are skipped
    (see ``onnxcam.runtime.graph_cuts``).

    >>> result = session.explain(batch, method="ablationcam")  # doctest: +SKIP
    """

    name = "ablationcam"
    needs_gradients = False
    single_pass = False

    def channel_weights(self, outputs: LayerOutputs, context: MethodContext | None = None) -> np.ndarray:
        context.require_logit_target(self.name)
        weights = np.empty(outputs.activations.shape[:2], dtype=np.float64)
        for i, c in enumerate(context.class_index):
            score = float(context.logits[i, c])
            ablated = context.passes.ablated_scores(context.layer, outputs.activations[i : i + 1], int(c))
            weights[i] = (score - ablated) / score
        return weights
