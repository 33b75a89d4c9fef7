"""Maps from the gradient of the class score with respect to the input pixels: vanilla saliency
(Simonyan et al., 2014), guided backpropagation (Springenberg et al., 2015), deconvnet (Zeiler &
Fergus, 2014) and Guided Grad-CAM (Selvaraju et al., 2017). They need a model exported with
``input_gradients=`` (``onnxcam export --input-gradients``); their maps come at input resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext
from onnxcam.runtime.methods.gradcam import GradCAM
from onnxcam.runtime.resize import resize_maps


def reduce_channels(gradients: np.ndarray, weighting: str) -> np.ndarray:
    """(N, C, H, W) input gradients -> (N, H, W) map, over the colour channels:

    ``abs`` / ``abs-weights``: max_c |G_c| (Simonyan et al.'s saliency map); ``relu``:
    max_c ReLU(G_c) (the positive evidence); ``none``: sum_c G_c (signed).
    """
    if weighting == "none":
        return gradients.sum(axis=1)
    if weighting == "relu":
        return np.maximum(gradients, 0.0).max(axis=1)
    return np.abs(gradients).max(axis=1)


class InputGradientMethod(CamMethod):
    """A map made from ``input_gradients/<rule>`` alone, reduced over colour channels."""

    needs_gradients = False

    def raw_maps_by_weighting(
        self, outputs: LayerOutputs, weightings: Sequence[str], context: MethodContext | None = None
    ) -> dict[str, np.ndarray]:
        return {w: reduce_channels(outputs.input_gradients, w) for w in weightings}


class Saliency(InputGradientMethod):
    r"""Vanilla saliency: :math:`M = \max_c |\partial y^c / \partial x_c|` (weighting ``abs``).

    >>> result = session.explain(batch, method="saliency", weighting="abs")  # doctest: +SKIP
    """

    name = "saliency"
    input_gradient_rule = "plain"


class GuidedBackprop(InputGradientMethod):
    r"""Guided backpropagation: through every ReLU the gradient passes only where both the
    forward input and the incoming gradient are positive.

    >>> result = session.explain(batch, method="guided-backprop")  # doctest: +SKIP
    """

    name = "guided-backprop"
    input_gradient_rule = "guided"


class Deconvnet(InputGradientMethod):
    r"""Deconvnet: through every ReLU the gradient passes where the incoming gradient is positive.

    >>> result = session.explain(batch, method="deconvnet")  # doctest: +SKIP
    """

    name = "deconvnet"
    input_gradient_rule = "deconvnet"


class GuidedGradCAM(CamMethod):
    r"""Guided Grad-CAM: guided backpropagation times the (ReLU) Grad-CAM map upsampled bilinearly
    to the input, then reduced over colour channels by the weighting (see ``reduce_channels``).

    .. math:: M = \mathrm{reduce}_c\big(G^{guided}_c \odot U(\mathrm{ReLU}(\textstyle\sum_k \alpha_k A^k))\big)

    >>> result = session.explain(batch, method="guided-gradcam")  # doctest: +SKIP
    """

    name = "guided-gradcam"
    input_gradient_rule = "guided"

    def raw_maps_by_weighting(
        self, outputs: LayerOutputs, weightings: Sequence[str], context: MethodContext | None = None
    ) -> dict[str, np.ndarray]:
        gradcam = GradCAM().raw_maps(outputs, "relu")
        upsampled = resize_maps(gradcam, outputs.input_gradients.shape[2:])
        guided = outputs.input_gradients * upsampled[:, None]
        return {w: reduce_channels(guided, w) for w in weightings}
