"""How channel weights and activations combine into a map: the ReLU-vs-abs question.

With alpha the (N, C) channel weights and A the (N, C, h, w) activations:

- ``relu``: ReLU(sum_k alpha_k A^k), as in the Grad-CAM paper;
- ``abs``: |sum_k alpha_k A^k|, as some reference code does;
- ``abs-weights``: sum_k |alpha_k| A^k;
- ``none``: sum_k alpha_k A^k, signed, for analysis.
"""

from __future__ import annotations

import numpy as np

WEIGHTINGS = ("relu", "abs", "abs-weights", "none")


def check_weighting(weighting: str) -> str:
    """Return ``weighting`` if it is one of WEIGHTINGS, else raise a ValueError naming them."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    return weighting


def weighted_activation_sum(weights: np.ndarray, activations: np.ndarray, weighting: str) -> np.ndarray:
    """weights (N, C), activations (N, C, h, w) -> (N, h, w) map under ``weighting``."""
    check_weighting(weighting)
    if weighting == "abs-weights":
        weights = np.abs(weights)
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
