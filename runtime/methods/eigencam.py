"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext
from onnxcam.runtime.weighting import rectify


def first_principal_projection(activations: np.ndarray) -> np.ndarray:
    """(N, C, h, w) -> (N, h, w): each position's channel vector, centred over positions,
    projected on the first right singular vector.

    The sign of a singular vector is arbitrary; it is fixed here so that the projection correlates
    positively with the channel sum of the activations (what the network "sees" most).
    """
    n, c, h, w = activations.shape
    flat = activations.reshape(n, c, h * w).transpose(0, 2, 1).astype(np.float64)  # (N, hw, C)
    flat = np.nan_to_num(flat)
    centred = flat - flat.mean(axis=1, keepdims=True)
    # The first right singular vector of the centred matrix is the top eigenvector of its (C, C)
    # Gram matrix: one small symmetric eigensolve instead of an SVD (measured ~20x faster).
    _, vectors = np.linalg.eigh(np.swapaxes(centred, 1, 2) @ centred)
    projection = centred @ vectors[:, :, -1:]  # (N, hw, 1)
    total = flat.sum(axis=2, keepdims=True)
    sign = np.sign(((projection - projection.mean(axis=1, keepdims=True)) * total).sum(axis=1, keepdims=True))
    projection = projection * np.where(sign == 0, 1.0, sign)
    return projection.reshape(n, h, w)


class EigenCAM(CamMethod):
    r"""Eigen-CAM: the activations' first principal component, no gradients, no class.

    .. math:: M = \mathrm{weighting}\big((A - \bar A)\, v_1\big),
        \quad A - \bar A = U \Sigma V^T,\ v_1 = V_{:,1}

    with A the (hw, C) matrix of channel vectors centred over positions, as pytorch-grad-cam
    does. The map does not depend on the class.

    >>> result = session.explain(batch, method="eigencam")  # doctest: +SKIP
    """

    name = "eigencam"
    needs_gradients = False
    weightings = ("relu", "abs", "none")

    def raw_maps_by_weighting(
        self, outputs: LayerOutputs, weightings: Sequence[str], context: MethodContext | None = None
    ) -> dict[str, np.ndarray]:
        signed = first_principal_projection(outputs.activations)
        return {w: rectify(signed, w) for w in weightings}
