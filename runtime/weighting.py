"""How weights and activations combine into a map: the ReLU-vs-abs question, once in numpy and once
as ONNX graph ops (for heatmaps fused into the model).

With alpha the weights, (N, C) per channel or (N, C, h, w) per position, and A the (N, C, h, w)
activations:

- ``relu``: ReLU(sum_k alpha_k A^k), as in the Grad-CAM paper;
- ``abs``: |sum_k alpha_k A^k|, as some reference code does;
- ``abs-weights``: sum_k |alpha_k| A^k;
- ``none``: sum_k alpha_k A^k, signed, for analysis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnxcam.graph import GraphBuilder

WEIGHTINGS = ("relu", "abs", "abs-weights", "none")


def check_weighting(weighting: str) -> str:
    """Return ``weighting`` if it is one of WEIGHTINGS, else raise a ValueError naming them."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    return weighting


def weighted_activation_sum(weights: np.ndarray, activations: np.ndarray, weighting: str) -> np.ndarray:
    """weights (N, C) per channel or (N, C, h, w) per position, activations (N, C, h, w) -> (N, h, w)
    map under ``weighting``."""
    check_weighting(weighting)
    if weighting == "abs-weights":
        weights = np.abs(weights)
    if weights.ndim == 4:
        return rectify((weights * activations).sum(axis=1), weighting)
    n, c, h, w = activations.shape
    return rectify(np.matmul(weights[:, None, :], activations.reshape(n, c, h * w)).reshape(n, h, w), weighting)


def rectify(maps: np.ndarray, weighting: str) -> np.ndarray:
    """The last step of a weighting on signed maps (any shape): ``relu`` keeps the positive part,
    ``abs`` the magnitude; ``abs-weights`` and ``none`` leave the maps as they are (``abs-weights``
    acts on the weights, before the sum)."""
    if weighting == "relu":
        return np.maximum(maps, 0.0)
    if weighting == "abs":
        return np.abs(maps)
    return maps


def graph_weighted_activation_sum(b: GraphBuilder, weights: str, activations: str, weighting: str) -> str:
    """:func:`weighted_activation_sum` as graph ops: weights (N, C, 1, 1) per channel or (N, C, h, w)
    per position, activations (N, C, h, w) -> (N, 1, h, w) map under ``weighting``."""
    check_weighting(weighting)
    if weighting == "abs-weights":
        weights = b.op("Abs", weights)
    return graph_rectify(b, b.reduce("ReduceSum", b.op("Mul", weights, activations), [1]), weighting)


def graph_rectify(b: GraphBuilder, maps: str, weighting: str) -> str:
    """:func:`rectify` as graph ops."""
    if weighting == "relu":
        return b.op("Relu", maps)
    if weighting == "abs":
        return b.op("Abs", maps)
    return maps
