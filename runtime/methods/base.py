"""The base of every CAM method: a method says which model outputs it reads and how it turns
them into one raw map per image; the session does the rest (running, resizing, normalising).

Methods that need more than the one pass (Score-CAM, Ablation-CAM, occlusion) get a
:class:`MethodContext` with the batch, the explained classes and :class:`ModelPasses`, which runs
the extra passes batched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from onnxcam.contract import LayerInfo, TargetInfo
from onnxcam.runtime.weighting import WEIGHTINGS, graph_weighted_activation_sum, weighted_activation_sum

if TYPE_CHECKING:
    import onnx

    from onnxcam.graph import GraphBuilder
    from onnxcam.runtime.methods.passes import ModelPasses
    from onnxcam.runtime.methods.target_passes import TargetPasses


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
    native_maps: np.ndarray | None = None  # (N, K, h, w): the model's own class maps, e.g. ACoL's


def require_logit_target(method: str, target: TargetInfo) -> None:
    """Refuse, for ``method``, which re-runs the classifier head and scores its logits, a model
    exported with another ``target`` than the class logit."""
    if target.kind != "logit":
        raise ValueError(
            f"method {method!r} re-runs the classifier head for the class logit only; this "
            f"model was exported with the {target.kind!r} target: use 'scorecam', "
            "'occlusion' or a gradient method"
        )


@dataclass(frozen=True)
class MethodContext:
    """What a method needs besides the layer outputs, for extra passes.

    batch: (N, C_in, H, W) model input; class_index: (N,) the explained classes (resolved, >= 0);
    logits: (N, K) of the main pass; layer: the target layer; passes: runs more passes.
    target: what the model's gradients differentiate (``onnxcam.export.targets``); for every
    target but the logit, target_inputs ``{name: (N, ...)}`` (a mask, a box), target_scores (N,)
    of the main pass and target_passes, which scores the same target on other inputs.
    """

    batch: np.ndarray
    class_index: np.ndarray
    logits: np.ndarray
    layer: LayerInfo
    passes: ModelPasses
    target: TargetInfo = field(default_factory=TargetInfo)
    target_inputs: Mapping[str, np.ndarray] = field(default_factory=dict)
    target_scores: np.ndarray | None = None
    target_passes: TargetPasses | None = None

    def score(self, i: int) -> float:
        """Image ``i``'s target value in the main pass (its class logit for the logit target)."""
        if self.target_scores is None:
            return float(self.logits[i, self.class_index[i]])
        return float(self.target_scores[i])

    def require_logit_target(self, method: str) -> None:
        """Refuse, for ``method``, which re-runs the classifier head and scores its logits, a model
        exported with another target than the class logit."""
        require_logit_target(method, self.target)

    def rescore(self, i: int, inputs: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Image ``i``'s target (same class, same mask or box) on other inputs (M, C_in, H, W) -> (M,)."""
        c = int(self.class_index[i])
        if self.target_passes is None:
            return self.passes.logits(inputs, batch_size)[:, c]
        extra = {name: np.repeat(value[i : i + 1], len(inputs), axis=0) for name, value in self.target_inputs.items()}
        return self.target_passes.scores(inputs, np.full(len(inputs), c, dtype=np.int64), extra, batch_size)


class CamMethod:
    """A class activation map method: ``M = weighting(sum_k w_k A^k)``.

    Subclasses set ``name`` and the outputs they need, and implement :meth:`channel_weights`
    ((N, C) weights) or :meth:`elementwise_weights` ((N, C, h, w) weights). Methods that are not a
    weighted sum of channels override :meth:`raw_maps_by_weighting`. Either way, what the weighting
    does not change (the weights, a signed map, the input gradients, and every extra model pass
    behind them) is computed once however many weightings are asked for.

    A method whose weights are graph ops on the layer's outputs also implements
    :meth:`graph_weights`, the twin of its numpy weights; a method whose map needs more of the
    model (ReciproCAM re-runs the head) overrides :meth:`graph_raw_maps` instead. Either way the
    exporter can finish its maps inside the model (``heatmap/<method>/<weighting>`` outputs).

    needs_gradients / needs_cam_weights: fetch ``gradients/L`` / ``cam_weights/L``.
    input_gradient_rule: fetch ``input_gradients/<rule>`` (maps then come at input resolution).
    weightings: the weightings the method accepts.
    single_pass: the maps come from one run's outputs alone; False for methods that run the
        model again through :class:`MethodContext` (perturbation methods).
    """

    name: ClassVar[str]
    needs_gradients: ClassVar[bool] = True
    needs_cam_weights: ClassVar[bool] = False
    input_gradient_rule: ClassVar[str | None] = None
    native_maps: ClassVar[str | None] = None  # fetch this (N, K, h, w) class-map output (ACoL's)
    weightings: ClassVar[tuple[str, ...]] = WEIGHTINGS
    single_pass: ClassVar[bool] = True

    def channel_weights(self, outputs: LayerOutputs, context: MethodContext | None = None) -> np.ndarray:
        """(N, C) weight of each activation channel."""
        raise NotImplementedError

    def elementwise_weights(self, outputs: LayerOutputs) -> np.ndarray | None:
        """(N, C, h, w) weight of each activation, for methods that weigh positions; else None."""
        return None

    def graph_weights(self, b: GraphBuilder, layer: LayerInfo) -> str:
        """The weights as graph ops on the layer's output tensors (``layer.activations``,
        ``layer.gradients``, ``layer.cam_weights``): (N, C, 1, 1) channel weights or (N, C, h, w)
        per-position weights, equal to :meth:`channel_weights` / :meth:`elementwise_weights`.
        Methods that cannot be computed inside the graph leave it unimplemented."""
        raise NotImplementedError(f"method {self.name!r} cannot be computed inside the graph")

    def graph_raw_maps(
        self, b: GraphBuilder, layer: LayerInfo, weighting: str, model: onnx.ModelProto, target: TargetInfo
    ) -> str:
        """The raw map as graph ops, the twin of :meth:`raw_maps`: (N, 1, h, w) under ``weighting``
        (already checked), before resizing and normalisation, added by ``b`` to ``model`` (the
        CAM-ready model, exported for ``target``, whose tensors the ops may read: the layer's
        outputs, ``input``, ``class_index``, ``logits``, the head's nodes and weights). By default
        :meth:`graph_weights` summed with the activations under the weighting."""
        return graph_weighted_activation_sum(b, self.graph_weights(b, layer), layer.activations, weighting)

    @classmethod
    def fusable(cls) -> bool:
        """Whether the method implements :meth:`graph_weights` or :meth:`graph_raw_maps`: its maps
        can be fused into the model."""
        return cls.graph_weights is not CamMethod.graph_weights or cls.graph_raw_maps is not CamMethod.graph_raw_maps

    def raw_maps_by_weighting(
        self, outputs: LayerOutputs, weightings: Sequence[str], context: MethodContext | None = None
    ) -> dict[str, np.ndarray]:
        """One (N, h, w) map per weighting, at the layer's resolution, before resizing and
        normalisation, all from one computation of the weights."""
        weights = self.elementwise_weights(outputs)
        if weights is None:
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
