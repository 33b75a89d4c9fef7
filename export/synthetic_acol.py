r"""ACoL (Zhang et al., "Adversarial Complementary Learning for Weakly Supervised Object
Localization", CVPR 2018) on the synthetic ResNet-style backbone.

Two classifier branches read the backbone's features ``F`` (``layer3``, ``(N, 128, h, w)``). Each
is a 3 x 3 convolution and ReLU then a 1 x 1 convolution to the K classes, so its output *is* a
class activation map per class, and its logits are their global averages (the paper's Section
3.1: CAM's GAP + linear head, reordered). Branch A's map of the explained class ``c``, min-max
normalised to ``[0, 1]``, marks the most discriminative region; branch B reads the features
erased there:

.. math:: F_B = F \odot \mathbb{1}[\tilde{M}_A^c < \delta]

so that B must find the object's other parts. The loss is the cross-entropy of both branches'
logits; ``c`` is the ground-truth class in training and branch A's top-1 class otherwise
(wsolevaluation's rule when no label is given). The localization map is the element-wise maximum
of the two branches' normalised maps, :func:`fused_maps`, and the model's class scores are branch
A's logits. Defaults follow the paper and its public code: ``delta = 0.6`` (its CUB setting;
``torch.ge``, so a position at exactly delta is erased), per-map min-max normalisation, the
features detached for the erasing mask.

For export the model returns ``(logits, acol_maps)`` (``return_maps=True``) and
:class:`ACoLLogit` makes ``acol_maps`` an output of the CAM-ready file beside the gradients of
branch A's logit, so the runtime's ``acol`` method reads the maps from one forward pass.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
import torch
from torch import nn

from onnxcam.atomic_write import write_atomically
from onnxcam.contract import ACOL_MAPS, METADATA_KEY, ModelMetadata
from onnxcam.export.synthetic_models import SyntheticResNet
from onnxcam.export.targets import ClassLogit, Outputs, TargetError, one_hot_rows
from onnxcam.export.zoo._init import init_like_torchvision

if TYPE_CHECKING:
    from onnxcam.export.synthetic_models import LoadedSyntheticModel

DEFAULT_DELTA = 0.6
"""The erasing threshold delta of the paper's public code for CUB-200 (its ImageNet runs used 0.6-0.9)."""


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each ``(h, w)`` map of ``(N, K, h, w)`` to ``[0, 1]``; a flat map becomes 0
    (the paper's code divides by zero there)."""
    low = maps.amin(dim=(2, 3), keepdim=True)
    span = maps.amax(dim=(2, 3), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def fused_maps(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """ACoL's localization maps ``(N, K, h, w)``: the element-wise max of both branches' normalised maps."""
    return torch.maximum(normalize_maps(maps_a), normalize_maps(maps_b))


def erasing_mask(maps_a: torch.Tensor, index: torch.Tensor, delta: float | torch.Tensor) -> torch.Tensor:
    """``(N, 1, h, w)`` float: 0 where branch A's normalised map of class ``index`` (N,) is at least
    ``delta``, 1 elsewhere. Computed on detached maps: the mask is not differentiated."""
    chosen = (maps_a.detach() * one_hot_rows(index, maps_a.shape[1], maps_a.dtype)[:, :, None, None]).sum(1, keepdim=True)
    return (normalize_maps(chosen) < delta).to(maps_a.dtype)


def classifier_branch(channels: int, num_classes: int) -> nn.Sequential:
    """One ACoL branch, the paper's (3 x 3 conv, ReLU, ..., 1 x 1 conv to K) with one 3 x 3 conv."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=False), nn.Conv2d(channels, num_classes, 1)
    )


@dataclass(frozen=True)
class ACoLOutputs:
    """Everything one ACoL pass computes: both branches' maps ``(N, K, h, w)`` and logits ``(N, K)``,
    the features ``(N, C, h, w)``, the erasing mask ``(N, 1, h, w)`` and branch B's input."""

    features: torch.Tensor
    maps_a: torch.Tensor
    logits_a: torch.Tensor
    mask: torch.Tensor
    erased: torch.Tensor
    maps_b: torch.Tensor
    logits_b: torch.Tensor

    @property
    def fused(self) -> torch.Tensor:
        return fused_maps(self.maps_a, self.maps_b)


class SyntheticACoL(SyntheticResNet):
    """``(N, 3, H, W) -> (N, K)`` (branch A's logits), or ``(logits, acol_maps (N, K, H/8, W/8))``
    with ``return_maps``. The backbone and its module names are ``synthetic_resnet``'s
    (``conv1`` ... ``layer3``); its GAP + ``fc`` head gives way to ``classifier_A`` and
    ``classifier_B``."""

    def __init__(self, num_classes: int = 12, delta: float = DEFAULT_DELTA, return_maps: bool = False) -> None:
        super().__init__(num_classes)
        del self.fc, self.avgpool
        channels = self.layer3.conv2.out_channels
        self.classifier_A = classifier_branch(channels, num_classes)
        self.classifier_B = classifier_branch(channels, num_classes)
        init_like_torchvision(self.classifier_A, linear_std=None)
        init_like_torchvision(self.classifier_B, linear_std=None)
        # A buffer, so that the checkpoint keeps the delta the model was trained with.
        self.register_buffer("delta", torch.tensor(float(delta)))
        self.return_maps = return_maps

    def acol(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> ACoLOutputs:
        """One pass; ``labels`` ``(N,)`` chooses the erased class (default: branch A's top-1)."""
        features = self.features(x)
        maps_a = self.classifier_A(features)
        logits_a = maps_a.mean(dim=(2, 3))
        index = logits_a.argmax(dim=1) if labels is None else labels
        mask = erasing_mask(maps_a, index, self.delta)
        erased = features * mask
        maps_b = self.classifier_B(erased)
        return ACoLOutputs(features, maps_a, logits_a, mask, erased, maps_b, maps_b.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        outputs = self.acol(x)
        return (outputs.logits_a, outputs.fused) if self.return_maps else outputs.logits_a

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's loss, cross-entropy of both branches with the ground truth erasing A's
        region, and branch A's logits: ``(loss, logits (N, K))``."""
        outputs = self.acol(x, labels)
        loss = nn.functional.cross_entropy(outputs.logits_a, labels) + nn.functional.cross_entropy(outputs.logits_b, labels)
        return loss, outputs.logits_a


class ACoLLogit(ClassLogit):
    """The class logit of a model returning ``(logits (N, K), acol_maps (N, K, h, w))``: the
    gradients are branch A's logit's, and ``acol_maps`` becomes an output of the file."""

    def check(self, outputs: Outputs) -> None:
        if not (isinstance(outputs, (tuple, list)) and len(outputs) == 2 and outputs[0].ndim == 2 and outputs[1].ndim == 4):
            raise TargetError("ACoLLogit needs a model returning (logits (N, K), acol_maps (N, K, h, w)): build it with return_maps=True")

    def logits(self, outputs: Outputs) -> torch.Tensor:
        return outputs[0]

    def extra_outputs(self, outputs: Outputs) -> dict[str, torch.Tensor]:
        return {ACOL_MAPS: outputs[1]}


def export_synthetic_acol(loaded: LoadedSyntheticModel, out: str | os.PathLike, input_gradients: Sequence[str] = ()) -> Path:
    """Export a loaded ``synthetic_acol`` checkpoint CAM-ready at ``layer3`` with ``acol_maps``;
    the metadata lists it in ``native_maps``."""
    from onnxcam.export.cam_export import export_cam_model

    model = loaded.model
    model.return_maps = True
    try:
        path = export_cam_model(
            model,
            torch.zeros(1, 3, *loaded.preprocessing.input_size),
            [loaded.arch.target_layer],
            out,
            preprocessing=loaded.preprocessing,
            class_labels=loaded.class_names,
            arch=loaded.arch.name,
            input_gradients=input_gradients,
            target=ACoLLogit(),
        )
    finally:
        model.return_maps = False
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    metadata = ModelMetadata.from_json(props[METADATA_KEY])
    props[METADATA_KEY] = dataclasses.replace(metadata, native_maps=(ACOL_MAPS,)).to_json()
    onnx.helper.set_model_props(proto, props)
    return write_atomically(path, lambda temporary: onnx.save(proto, temporary))
