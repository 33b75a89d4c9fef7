"""ACoL (Zhang et al., "Adversarial Complementary Learning for Weakly Supervised Object
Localization", CVPR 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcam.contract import ACOL_MAPS
from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext


class ACoL(CamMethod):
    r"""The class maps an ACoL model computes in its own forward pass.

    .. math:: M^c = \max\big(\tilde{S}_A^c,\ \tilde{S}_B^c\big)

    where :math:`S_A^c` and :math:`S_B^c` are the two classifier branches' 1 x 1-convolution outputs
    for class c (branch B reading the features with branch A's top-1 region, normalised map
    :math:`\geq \delta`, erased) and the tilde is min-max normalisation. The model returns them
    for every class as the output ``acol_maps`` ``(N, K, h, w)`` (``onnxcam.export.synthetic_acol``);
    this method picks class c's, so a map costs one forward pass and no weights. The maps are in
    [0, 1] already: the only weighting is ``relu`` (a no-op here).

    >>> result = session.explain(batch, method="acol")  # doctest: +SKIP
    """

    name = "acol"
    needs_gradients = False
    native_maps = ACOL_MAPS
    weightings = ("relu",)

    def raw_maps_by_weighting(
        self, outputs: LayerOutputs, weightings: Sequence[str], context: MethodContext | None = None
    ) -> dict[str, np.ndarray]:
        if context is None or outputs.native_maps is None:
            raise ValueError("method 'acol' needs the model's acol_maps output and the explained classes")
        maps = outputs.native_maps[np.arange(len(context.class_index)), context.class_index]
        return dict.fromkeys(weightings, maps)
