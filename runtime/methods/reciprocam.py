"""ReciproCAM and ViT-ReciproCAM (Byun & Lee, "Recipro-CAM: Fast gradient-free visual
explanations for convolutional neural networks", 2022)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxcam.contract import LOGITS, LayerInfo, TargetInfo
from onnxcam.runtime.class_scores import graph_explained_class, softmax
from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext, require_logit_target
from onnxcam.runtime.methods.masked_heads import SpatialHead, TokenHead, graph_masked_logits
from onnxcam.runtime.weighting import graph_rectify, rectify

if TYPE_CHECKING:
    import onnx

    from onnxcam.graph import GraphBuilder

SCORES = ("probability", "logit")

GAUSSIAN = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 16
"""The paper's 3 x 3 neighbourhood weights: 1/4 at the centre, 1/8 at the edges, 1/16 at the corners."""


def onehot_masks(height: int, width: int) -> np.ndarray:
    """(h*w, h, w) float32: mask p is 1 at position p (row-major) and 0 elsewhere."""
    return np.eye(height * width, dtype=np.float32).reshape(height * width, height, width)


def gaussian_masks(height: int, width: int) -> np.ndarray:
    """(h*w, h, w) float32: mask p is :data:`GAUSSIAN` centred at position p, cut at the borders
    (not renormalised, as OpenVINO XAI's)."""
    padded = np.zeros((height * width, height + 2, width + 2), dtype=np.float32)
    for position in range(height * width):
        row, col = divmod(position, width)
        padded[position, row : row + 3, col : col + 3] = GAUSSIAN
    return padded[:, 1:-1, 1:-1].copy()


MASKS = {"onehot": onehot_masks, "gaussian": gaussian_masks}


def position_scores(logits: np.ndarray, class_index: np.ndarray, score: str) -> np.ndarray:
    """(N, P, K) logits of the masked copies -> (N, P) score of each image's class: its softmax
    probability (``"probability"``) or its logit (``"logit"``)."""
    values = softmax(logits) if score == "probability" else logits.astype(np.float64)
    return np.take_along_axis(values, class_index[:, None, None], axis=2)[..., 0]


def graph_position_scores(b: GraphBuilder, logits: str, positions: int, score: str) -> str:
    """:func:`position_scores` as graph ops: (N, P, K) logits of the P = ``positions`` masked
    copies -> (N, P, 1), for the class ``class_index`` (a negative index: the top-1 class of the
    model's ``logits``, as the session resolves it)."""
    values = b.op("Softmax", logits, axis=-1) if score == "probability" else logits
    index = b.op("Expand", b.op("Reshape", graph_explained_class(b, LOGITS), b.ints([-1, 1, 1])), b.ints([1, positions, 1]))  # (N, P, 1)
    return b.op("GatherElements", values, index, axis=2)


class ReciproCAM(CamMethod):
    r"""ReciproCAM: the class score of the head run on the layer's activations masked to each
    position in turn.

    .. math:: M^c_{ij} = \mathrm{softmax}\big(f(A \odot m_{ij})\big)_c

    with f the part of the network after the layer and :math:`m_{ij}` the mask of position (i, j):
    ``mask="onehot"`` (1 at (i, j), OpenVINO XAI's CNN variant, the default) or ``"gaussian"``
    (:data:`GAUSSIAN` around (i, j), the paper's). ``score="logit"`` takes the logit instead of
    the probability. Gradient-free; costs one head pass per position, all h*w positions of all
    images batched; for a global-average-pool head only the pooled vectors are built
    (``onnxcam.runtime.methods.masked_heads``). Probabilities are non-negative: ``relu``, ``abs``
    and ``none`` give the same map (they differ for signed logits) and ``abs-weights``, which has
    no weights to act on, is refused.

    Fusable: the exporter's ``heatmap/reciprocam/<weighting>`` output is this computation inside
    the graph with the default options (one-hot masks, probability): the head's nodes copied after
    the layer, fed the N * h * w copies (pooled vectors for a global-average-pool head).

    >>> result = session.explain(batch, method="reciprocam")  # doctest: +SKIP
    >>> result = session.explain(batch, method=ReciproCAM(mask="gaussian", score="logit"))  # doctest: +SKIP
    """

    name = "reciprocam"
    needs_gradients = False
    single_pass = False
    weightings = ("relu", "abs", "none")
    default_mask = "onehot"

    def __init__(self, score: str = "probability", mask: str | None = None):
        if score not in SCORES:
            raise ValueError(f"{self.name}: score must be one of {', '.join(SCORES)}; got {score!r}")
        mask = mask or self.default_mask
        if mask not in MASKS:
            raise ValueError(f"{self.name}: mask must be one of {', '.join(MASKS)}; got {mask!r}")
        self.score, self.mask = score, mask

    def check_weighting(self, weighting: str) -> str:
        if weighting == "abs-weights":
            raise ValueError(
                f"method {self.name!r} has no channel weights for 'abs-weights' to take the magnitude "
                "of (its map is the class score of each masked copy); use 'relu', 'abs' or 'none'"
            )
        return super().check_weighting(weighting)

    def head_logits(self, outputs: LayerOutputs, context: MethodContext, masks: np.ndarray) -> np.ndarray:
        """(N, P, K) logits of the head on the (P, h, w) masked copies of each image's layer."""
        key = ("reciprocam/spatial", context.layer.name)
        head = context.passes.cached(key, lambda: SpatialHead(context.passes, context.layer))
        return head.logits(outputs.activations, masks)

    def raw_maps_by_weighting(
        self, outputs: LayerOutputs, weightings: Sequence[str], context: MethodContext | None = None
    ) -> dict[str, np.ndarray]:
        context.require_logit_target(self.name)
        n, _, height, width = outputs.activations.shape
        logits = self.head_logits(outputs, context, MASKS[self.mask](height, width))
        scores = position_scores(logits, context.class_index, self.score).reshape(n, height, width)
        return {weighting: rectify(scores, weighting) for weighting in weightings}

    def graph_raw_maps(
        self, b: GraphBuilder, layer: LayerInfo, weighting: str, model: onnx.ModelProto, target: TargetInfo
    ) -> str:
        require_logit_target(self.name, target)
        _, height, width = layer.shape
        scope, b.scope = b.scope, f"{b.scope}/{self.name}"
        logits = graph_masked_logits(b, model, layer, MASKS[self.mask](height, width))
        maps = b.op("Reshape", graph_position_scores(b, logits, height * width, self.score), b.ints([-1, 1, height, width]))
        b.scope = scope
        return graph_rectify(b, maps, weighting)


class ViTReciproCAM(ReciproCAM):
    r"""ViT-ReciproCAM: ReciproCAM on the patch tokens of a transformer layer (exported with
    ``reshape=``, tokens to grid): each copy keeps the class token and weighs patch token (i, j)'s
    neighbourhood by the mask; a pre-norm layer's skip input is masked alike (as OpenVINO XAI's
    ``ViTReciproCAM``). ``mask="gaussian"`` by default.

    .. math:: M^c_{ij} = \mathrm{softmax}\big(f([t_{cls}, T \odot m_{ij}])\big)_c

    Runs the network up to the layer once more per batch (the tokens are not model outputs).

    >>> result = session.explain(batch, method="vit-reciprocam")  # doctest: +SKIP
    """

    name = "vit-reciprocam"
    default_mask = "gaussian"
    # No in-graph form (yet): its head reads the tokens before the reshaped layer.
    graph_raw_maps = CamMethod.graph_raw_maps

    def head_logits(self, outputs: LayerOutputs, context: MethodContext, masks: np.ndarray) -> np.ndarray:
        key = ("reciprocam/tokens", context.layer.name)
        head = context.passes.cached(key, lambda: TokenHead(context.passes, context.layer))
        return head.logits(context.batch, masks)
