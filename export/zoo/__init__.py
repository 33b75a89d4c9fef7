"""The model zoo: CNN classifiers in plain torch, ready to export CAM-ready.

Each architecture keeps the module names and state-dict keys of its reference implementation
(torchvision for ResNet, VGG and MobileNetV2; the shipped checkpoint for EfficientNet-Lite0), so a
user's checkpoint loads with ``load_state_dict(strict=True)`` without torchvision installed. Every
model maps ``(N, 3, 224, 224)`` float32 to ``(N, 1000)`` logits and traces with ``torch.export`` and
``make_fx(tracing_mode="symbolic")`` with a dynamic batch (no data-dependent control flow).

Each :class:`ZooEntry` names two target layers, chosen by one rule: ``last_layer`` is the module
whose output is the final activated conv feature map (stride 32, or 16 for VGG, whose last map is
before pool5), ``middle_layer`` the last module one resolution level up (twice the side).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from onnxcam.contract import Preprocessing
from onnxcam.export.zoo.efficientnet_lite import efficientnet_lite0
from onnxcam.export.zoo.mobilenet_v2 import mobilenet_v2
from onnxcam.export.zoo.resnet import resnet18, resnet50
from onnxcam.export.zoo.vgg import vgg16

__all__ = ["ARCHITECTURES", "ZooEntry", "build_model", "zoo_entry"]


@dataclass(frozen=True)
class ZooEntry:
    """One architecture of the zoo.

    ``build`` returns the model in train mode: random torchvision-style init, or the real weights
    where a package ships them (``efficientnet_lite0``). ``last_layer`` / ``middle_layer`` are
    ``named_modules()`` names of the target layers (shapes for a 224x224 input in
    :data:`ARCHITECTURES`' comments). ``class_labels`` is ``None``: no installed package ships the
    ImageNet-1k label names.
    """

    name: str
    build: Callable[[], torch.nn.Module]
    last_layer: str
    middle_layer: str
    preprocessing: Preprocessing
    class_labels: tuple[str, ...] | None = None


_IMAGENET = Preprocessing()  # ImageNet mean/std, RGB, 224x224: torchvision's training inputs.
# (pixel - 127) / 128 on 0..255 is (pixel/255 - 127/255) / (128/255): the contract's mean/std form.
_TF_LITE = Preprocessing(mean=(127 / 255,) * 3, std=(128 / 255,) * 3)

ARCHITECTURES: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        # layer4 (N, 512, 7, 7); layer3 (N, 256, 14, 14)
        ZooEntry("resnet18", resnet18, "layer4", "layer3", _IMAGENET),
        # layer4 (N, 2048, 7, 7); layer3 (N, 1024, 14, 14)
        ZooEntry("resnet50", resnet50, "layer4", "layer3", _IMAGENET),
        # features.29 = ReLU(conv5_3) (N, 512, 14, 14); features.22 = ReLU(conv4_3) (N, 512, 28, 28)
        ZooEntry("vgg16", vgg16, "features.29", "features.22", _IMAGENET),
        # features.18 = 1x1 head conv + ReLU6 (N, 1280, 7, 7); features.13 (N, 96, 14, 14)
        ZooEntry("mobilenet_v2", mobilenet_v2, "features.18", "features.13", _IMAGENET),
        # _relu_head = ReLU6(_bn1(_conv_head)) (N, 1280, 7, 7); _blocks.10 (N, 112, 14, 14)
        ZooEntry("efficientnet_lite0", efficientnet_lite0, "_relu_head", "_blocks.10", _TF_LITE),
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
