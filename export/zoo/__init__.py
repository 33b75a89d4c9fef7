"""The model zoo: CNN classifiers in plain torch, ready to export CAM-ready.

Each architecture keeps the module names and state-dict keys of its reference implementation
(torchvision for ResNet, VGG and MobileNetV2; the shipped checkpoint for EfficientNet-Lite0), so a
user's checkpoint loads with ``load_state_dict(strict=True)`` without torchvision installed. Every
model maps ``(N, 3, 224, 224)`` float32 to ``(N, 1000)`` logits and traces with ``torch.export`` and
``make_fx(tracing_mode="symbolic")`` with a dynamic batch (no data-dependent control flow).

Each :class:`ZooEntry` names three target layers, chosen by one rule: ``last_layer`` is the module
whose output is the final activated conv feature map (stride 32, or 16 for VGG, whose last map is
before pool5; DenseNet's ``features.norm5`` precedes a functional ReLU), ``middle_layer`` the last
module one resolution level up (twice the side), ``early_layer`` the last one a level further up.
The ViT has one resolution: its three layers are the ``ln_1`` of its last, third and second
blocks, and its entry carries the ``reshape`` (tokens -> grid) that every export of it needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from onnxcam.contract import Preprocessing
from onnxcam.export.zoo.convnext import convnext_tiny
from onnxcam.export.zoo.densenet import densenet121
from onnxcam.export.zoo.efficientnet_lite import efficientnet_lite0
from onnxcam.export.zoo.imagenet_labels import imagenet_class_labels
from onnxcam.export.zoo.mobilenet_v2 import mobilenet_v2
from onnxcam.export.zoo.mobilenet_v3 import mobilenet_v3_large
from onnxcam.export.zoo.resnet import resnet18, resnet50
from onnxcam.export.zoo.vgg import vgg16
from onnxcam.export.zoo.vit import tokens_to_grid, vit_tiny

__all__ = ["ARCHITECTURES", "ZooEntry", "build_model", "zoo_entry"]


@dataclass(frozen=True)
class ZooEntry:
    """One architecture of the zoo.

    ``build`` returns the model in train mode: random torchvision-style init, or the real weights
    where a package ships them (``efficientnet_lite0``). ``last_layer`` / ``middle_layer`` are
    ``named_modules()`` names of the target layers (shapes for a 224x224 input in
    :data:`ARCHITECTURES`' comments). ``class_labels`` are the ImageNet-1k names, every model of
    the zoo being a 1,000-class ImageNet classifier; ``pretrained`` says whether ``build`` gives
    trained weights (only ``efficientnet_lite0``'s ship in a package). ``early_layer`` is a third, shallower target layer; ``reshape`` maps
    the target layers' outputs to ``(N, C, h, w)`` maps where they are not (ViT tokens), as the
    ``reshape`` argument of :func:`onnxcam.export.export_cam_model`; ``None`` for CNNs.
    """

    name: str
    build: Callable[[], torch.nn.Module]
    last_layer: str
    middle_layer: str
    preprocessing: Preprocessing
    early_layer: str = field(kw_only=True)
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, kw_only=True)
    pretrained: bool = field(default=False, kw_only=True)

    @property
    def class_labels(self) -> tuple[str, ...]:
        return imagenet_class_labels()


_IMAGENET = Preprocessing()  # ImageNet mean/std, RGB, 224x224: torchvision's training inputs.
# (pixel - 127) / 128 on 0..255 is (pixel/255 - 127/255) / (128/255): the contract's mean/std form.
_TF_LITE = Preprocessing(mean=(127 / 255,) * 3, std=(128 / 255,) * 3)

ARCHITECTURES: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        # layer4 (N, 512, 7, 7); layer3 (N, 256, 14, 14); layer2 (N, 128, 28, 28)
        ZooEntry("resnet18", resnet18, "layer4", "layer3", _IMAGENET, early_layer="layer2"),
        # layer4 (N, 2048, 7, 7); layer3 (N, 1024, 14, 14); layer2 (N, 512, 28, 28)
        ZooEntry("resnet50", resnet50, "layer4", "layer3", _IMAGENET, early_layer="layer2"),
        # features.29 = ReLU(conv5_3) (N, 512, 14, 14); features.22 = ReLU(conv4_3) (N, 512, 28, 28);
        # features.15 = ReLU(conv3_3) (N, 256, 56, 56)
        ZooEntry("vgg16", vgg16, "features.29", "features.22", _IMAGENET, early_layer="features.15"),
        # features.18 = 1x1 head conv + ReLU6 (N, 1280, 7, 7); features.13 (N, 96, 14, 14);
        # features.6 (N, 32, 28, 28)
        ZooEntry(
            "mobilenet_v2", mobilenet_v2, "features.18", "features.13", _IMAGENET,
            early_layer="features.6",
        ),
        # _relu_head = ReLU6(_bn1(_conv_head)) (N, 1280, 7, 7); _blocks.10 (N, 112, 14, 14);
        # _blocks.4 (N, 40, 28, 28)
        ZooEntry(
            "efficientnet_lite0", efficientnet_lite0, "_relu_head", "_blocks.10", _TF_LITE,
            early_layer="_blocks.4", pretrained=True,
        ),
        # features.norm5 (N, 1024, 7, 7), before the functional ReLU; features.denseblock3
        # (N, 1024, 14, 14); features.denseblock2 (N, 512, 28, 28)
        ZooEntry(
            "densenet121", densenet121, "features.norm5", "features.denseblock3", _IMAGENET,
            early_layer="features.denseblock2",
        ),
        # features.16 = 1x1 head conv + Hardswish (N, 960, 7, 7); features.12 (N, 112, 14, 14);
        # features.6 (N, 40, 28, 28)
        ZooEntry(
            "mobilenet_v3_large", mobilenet_v3_large, "features.16", "features.12", _IMAGENET,
            early_layer="features.6",
        ),
        # features.7 (N, 768, 7, 7); features.5 (N, 384, 14, 14); features.3 (N, 192, 28, 28)
        ZooEntry(
            "convnext_tiny", convnext_tiny, "features.7", "features.5", _IMAGENET,
            early_layer="features.3",
        ),
        # ln_1 of blocks 3, 2, 1: (N, 197, 64) tokens, (N, 64, 14, 14) through tokens_to_grid
        ZooEntry(
            "vit_tiny", vit_tiny, "encoder.layers.encoder_layer_3.ln_1",
            "encoder.layers.encoder_layer_2.ln_1", _IMAGENET,
            early_layer="encoder.layers.encoder_layer_1.ln_1", reshape=tokens_to_grid,
        ),
    )
}


def zoo_entry(arch: str) -> ZooEntry:
    """The :class:`ZooEntry` of ``arch``; ``ValueError`` naming the valid architectures if unknown."""
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(
            f"unknown architecture {arch!r}; the zoo has: {', '.join(sorted(ARCHITECTURES))}"
        ) from None


def build_model(arch: str, weights: str | os.PathLike[str] | None = None) -> torch.nn.Module:
    """Build ``arch`` in eval mode, ``(N, 3, H, W) -> (N, 1000)``.

    ``weights``: a checkpoint saved with ``torch.save``: a state dict with the reference
    implementation's keys, or a dict holding it under ``"state_dict"`` or ``"model"``; a
    ``"module."`` prefix on every key (``DataParallel`` / DDP checkpoints) is dropped. It is loaded
    with ``strict=True``, so a mismatched checkpoint fails loudly. ``None`` keeps what
    :attr:`ZooEntry.build` gives (random init, or the shipped weights of ``efficientnet_lite0``).
    """
    model = zoo_entry(arch).build()
    if weights is not None:
        model.load_state_dict(_read_state_dict(weights), strict=True)
    return model.eval()


def _read_state_dict(path: str | os.PathLike[str]) -> Mapping[str, torch.Tensor]:
    # weights_only: a checkpoint is data; refuse pickled code from an untrusted file.
    checkpoint: Any = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{os.fspath(path)!r} holds a {type(checkpoint).__name__}, not a state dict")
    prefix = "module."
    if checkpoint and all(name.startswith(prefix) for name in checkpoint):
        return {name[len(prefix):]: tensor for name, tensor in checkpoint.items()}
    return checkpoint
