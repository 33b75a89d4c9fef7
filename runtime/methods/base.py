"""The base of every CAM method: a method says which model outputs it reads and how it turns
them into one raw map per image; the session does the rest (running, resizing, normalising).

Methods that need more than the one pass (Score-CAM, Ablation-CAM, occlusion) get a
:class:`MethodContext` with the batch, the explained classes and :class:`ModelPasses`, which runs
the extra passes batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from onnxcam.contract import LayerInfo
from onnxcam.runtime.weighting import WEIGHTINGS, rectify, weighted_activation_sum

if TYPE_CHECKING:
    from onnxcam.runtime.methods.passes import ModelPasses


@dataclass(frozen=True)
class LayerOutputs:
    """What a CAM-ready model returns for one target layer.

    activations: (N, C, h, w); gradients: (N, C, h, w) = dy^c/dA or None when not fetched;
    cam_weights: (N, C), the classifier rows w^c, or None when the layer has no GAP + linear head;
    input_gradients: (N, C_in, H, W) = dy^c/dx under the method's backward rule, or None.
    """

    activations: np.ndarray
    gradients: np.ndarray | None = None
    cam_weights: np.ndarray | None = None
    input_gradients: np.ndarray | None = None


@dataclass(frozen=True)
class MethodContext:
    """What a method needs besides the layer outputs, for extra passes.

    batch: (N, C_in, H, W) model input; class_index: (N,) the explained classes (resolved, >= 0);
    logits: (N, K) of the main pass; layer: the target layer; passes: runs more passes.
    """

    batch: np.ndarray
    class_index: np.ndarray
    logits: np.ndarray
    layer: LayerInfo
    passes: ModelPasses


def elementwise_weighted_sum(weights: np.ndarray, activations: np.ndarray, weighting: str) -> np.ndarray:
    """Per-position weights (N, C, h, w) times activations (N, C, h, w), summed over C -> (N, h, w),
    under ``weighting`` (``abs-weights`` takes |weights|)."""
    if weighting == "abs-weights":
        weights = np.abs(weights)
    return rectify((weights * activations).sum(axis=1), weighting)


class CamMethod:
    """A class activation map method: ``M = weighting(sum_k w_k A^k)``.

    Subclasses set ``name`` and the outputs they need, and implement :meth:`channel_weights`
    ((N, C) weights) or :meth:`elementwise_weights` ((N, C, h, w) weights). Methods that are not a
    weighted sum of channels override :meth:`raw_maps_by_weighting`. Either way, what the weighting
    does not change (the weights, a signed map, the input gradients, and every extra model pass
    behind them) is computed once however many weightings are asked for.

    needs_gradients / needs_cam_weights: fetch ``gradients/L`` / ``cam_weights/L``.
    input_gradient_rule: fetch ``input_gradients/<rule>`` (maps then come at input resolution).
    weightings: the weightings the method accepts.
    """

    name: ClassVar[str]
    needs_gradients: ClassVar[bool] = True
    needs_cam_weights: ClassVar[bool] = False
    input_gradient_rule: ClassVar[str | None] = None
    weightings: ClassVar[tuple[str, ...]] = WEIGHTINGS

    def channel_weights(self, outputs: LayerOutputs, context: MethodContext | None = None) -> np.ndarray:
        """(N, C) weight of each activation channel."""
        raise NotImplementedError

    def elementwise_weights(self, outputs: LayerOutputs) -> np.ndarray | None:
        """(N, C, h, w) weight of each activation, for methods that weigh positions; else None."""
        return None

    def raw_maps_by_weighting(
        self, outputs: LayerOutputs, weightings: Sequence[str], context: MethodContext | None = None
    ) -> dict[str, np.ndarray]:
        """One (N, h, w) map per weighting, at the layer's resolution, before resizing and
        normalisation, all from one computation of the weights."""
        elementwise = self.elementwise_weights(outputs)
        if elementwise is not None:
            return {w: elementwise_weighted_sum(elementwise, outputs.activations, w) for w in weightings}
        weights = self.channel_weights(outputs, context).astype(np.float32, copy=False)
        return {w: weighted_activation_sum(weights, outputs.activations, w) for w in weightings}

    def raw_maps(
        self, outputs: LayerOutputs, weighting: str, context: MethodContext | None = None
    ) -> np.ndarray:
        """(N, h, w) map at the layer's resolution, before resizing and normalisation."""
        return self.raw_maps_by_weighting(outputs, (weighting,), context)[weighting]

    def check_weighting(self, weighting: str) -> str:
        if weighting not in self.weightings:
            raise ValueError(
                f"method {self.name!r} takes weighting {', '.join(self.weightings)}; got {weighting!r}"
            )
        return weighting
