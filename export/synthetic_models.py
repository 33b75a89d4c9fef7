"""Two small classifiers for the synthetic localization set, and their checkpoints.

- ``synthetic_resnet``: ResNet-style, a strided stem and four residual blocks (the zoo's
  :class:`~onnxcam.export.zoo.resnet.BasicBlock`; ``layer2`` holds two), global average pooling and
  one linear layer: the head CAM needs. ``(N, 3, 96, 96) -> (N, 12)``; target layer ``layer3``
  ``(N, 128, 12, 12)``, whose receptive field (103 px) covers the largest objects.
- ``synthetic_vgg``: VGG-style, conv/BN/ReLU stacks and max-pools in one ``features``
  ``nn.Sequential``, then flatten and two fully-connected layers: no GAP head, so only gradient
  methods apply. Target layer ``features.20`` (the last ReLU, ``(N, 128, 12, 12)``).

Both keep torchvision-style module names (``conv1``/``bn1``/``layerN``/``fc``;
``features.N``/``classifier.N``) so that they read like the zoo's models. A checkpoint (``.pt``) is
a plain dict, loadable with ``torch.load(weights_only=True)``: ``arch``, ``state_dict``,
``num_classes``, ``image_size``, ``preprocessing`` (the contract's fields) and ``class_names``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from onnxcam.contract import Preprocessing
from onnxcam.export.synthetic_backbone import SyntheticBackbone
from onnxcam.export.synthetic_detector import SyntheticDetector
from onnxcam.export.synthetic_segmenter import SyntheticSegmenter
from onnxcam.export.zoo._init import init_like_torchvision

IMAGE_SIZE = 96
# The synthetic images have no data-set statistics worth matching; centre 0..1 pixels roughly.
SYNTHETIC_MEAN = (0.5, 0.5, 0.5)
SYNTHETIC_STD = (0.25, 0.25, 0.25)


def synthetic_preprocessing(image_size: int = IMAGE_SIZE) -> Preprocessing:
    """The contract's preprocessing of the synthetic models: ``(pixel / 255 - 0.5) / 0.25``, RGB."""
    return Preprocessing(input_size=(image_size, image_size), mean=SYNTHETIC_MEAN, std=SYNTHETIC_STD)


class SyntheticResNet(SyntheticBackbone):
    """``(N, 3, H, W) -> (N, num_classes)``; ``layer3`` gives ``(N, 128, H/8, W/8)``, which the head
    averages globally and maps with ``fc``.

    The head averages every position alike, so each position of ``layer3`` must see a whole object
    to name it: objects span up to ~75 px of 96. With one block per stage the receptive field was
    71 px and the model stalled near 55% held-out accuracy; the second block of ``layer2`` (at
    12 x 12, +20% compute) takes it to 103 px.
    """

    def __init__(self, num_classes: int = 12) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(128, num_classes)
        init_like_torchvision(self, linear_std=None)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``layer3``'s output ``(N, 128, H/8, W/8)``, which the heads read."""
        return self.stages(x)[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


# Output channels of each conv (+BN+ReLU); "M" is a 2x2 max-pool. The last ReLU is features.20.
_VGG_CONFIG: tuple[int | str, ...] = (16, "M", 32, "M", 64, 64, "M", 128, 128, "M")


class SyntheticVGG(nn.Module):
    """``(N, 3, H, W) -> (N, num_classes)`` through ``features`` (``features.20``:
    ``(N, 128, H/8, W/8)``), a last max-pool to ``H/16``, flatten and ``classifier``. The fully
    connected head sees every position separately, so CAM's GAP identity does not hold."""

    def __init__(self, num_classes: int = 12, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in _VGG_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = int(item)
                layers += [nn.Conv2d(in_channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                in_channels = out
        self.features = nn.Sequential(*layers)
        side = image_size // 16
        self.classifier = nn.Sequential(
            nn.Linear(in_channels * side * side, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(128, num_classes),
        )
        init_like_torchvision(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@dataclass(frozen=True)
class TrainingRecipe:
    """How ``onnxcam train-synthetic`` trains an architecture by default (each field is an option)."""

    epochs: int = 4
    images_per_epoch: int = 3500
    batch_size: int = 64
    learning_rate: float = 3e-3


@dataclass(frozen=True)
class SyntheticArch:
    """A synthetic-set architecture: its builder ``(num_classes, image_size) -> module``, the
    ``named_modules()`` name of its target layer and its default training recipe."""

    name: str
    build: Callable[[int, int], nn.Module]
    target_layer: str
    recipe: TrainingRecipe = TrainingRecipe()
    # An export of its own, (loaded model, out, input_gradients) -> path, where the plain
    # classifier's does not fit (ACoL's maps as an output).
    export: Callable[[LoadedSyntheticModel, Path, Sequence[str]], Path] | None = None
    # What export-synthetic differentiates by default (onnxcam.export.targets.TARGETS).
    target: str = "logit"


SYNTHETIC_ARCHITECTURES: dict[str, SyntheticArch] = {
    arch.name: arch
    for arch in (
        # Smaller batches: twice the optimizer steps for the same images (~8 min on 2 idle cores).
        SyntheticArch(
            "synthetic_resnet", lambda k, size: SyntheticResNet(k), "layer3",
            TrainingRecipe(epochs=5, images_per_epoch=4000, batch_size=32, learning_rate=4e-3),
        ),
        SyntheticArch("synthetic_vgg", lambda k, size: SyntheticVGG(k, size), "features.20"),
        # ACoL (export/synthetic_acol.py): synthetic_resnet's backbone, two erasing classifier branches.
        SyntheticArch(
            "synthetic_acol", lambda k, size: _acol_module().SyntheticACoL(k), "layer3",
            TrainingRecipe(epochs=5, images_per_epoch=4000, batch_size=32, learning_rate=4e-3),
            export=lambda loaded, out, rules: _acol_module().export_synthetic_acol(loaded, out, rules),
        ),
        # Per-pixel logits (1 + K channels, background first) and a CenterNet-style detector,
        # explained through SegmentationRegion and DetectionBoxScore (onnxcam.export.targets).
        SyntheticArch(
            "synthetic_segmenter", lambda k, size: SyntheticSegmenter(k), "layer3",
            TrainingRecipe(epochs=3, images_per_epoch=3000, batch_size=32, learning_rate=3e-3),
            target="segmentation",
        ),
        SyntheticArch(
            "synthetic_detector", lambda k, size: SyntheticDetector(k), "layer3",
            TrainingRecipe(epochs=5, images_per_epoch=4000, batch_size=32, learning_rate=4e-3),
            target="detection",
        ),
        # synthetic_resnet trained multi-label (sigmoid, BCE) on the multi-object set.
        SyntheticArch(
            "synthetic_multilabel", lambda k, size: SyntheticResNet(k), "layer3",
            TrainingRecipe(epochs=6, images_per_epoch=4000, batch_size=32, learning_rate=4e-3),
        ),
    )
}


def _acol_module():
    """``onnxcam.export.synthetic_acol``, imported on use: it builds on this module."""
    from onnxcam.export import synthetic_acol

    return synthetic_acol


def synthetic_arch(name: str) -> SyntheticArch:
    """The :class:`SyntheticArch` called ``name``; ``ValueError`` naming the valid ones if unknown."""
    try:
        return SYNTHETIC_ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown synthetic architecture {name!r}; valid: {', '.join(SYNTHETIC_ARCHITECTURES)}"
        ) from None


def build_synthetic_model(name: str, num_classes: int = 12, image_size: int = IMAGE_SIZE) -> nn.Module:
    """A freshly initialised synthetic-set model (call ``torch.manual_seed`` first to fix it)."""
    if image_size % 16:
        raise ValueError(f"image_size must be a multiple of 16, got {image_size}")
    return synthetic_arch(name).build(num_classes, image_size)


def checkpoint_dict(
    name: str, model: nn.Module, image_size: int, class_names: tuple[str, ...], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The checkpoint document of a trained model (see the module docstring)."""
    return {
        "arch": name,
        "state_dict": {key: value.detach().clone() for key, value in model.state_dict().items()},
        "num_classes": len(class_names),
        "image_size": image_size,
        "preprocessing": asdict(synthetic_preprocessing(image_size)),
        "class_names": list(class_names),
        **(extra or {}),
    }


@dataclass(frozen=True)
class LoadedSyntheticModel:
    """A checkpoint's model (eval mode) and what is needed to export and feed it."""

    arch: SyntheticArch
    model: nn.Module
    preprocessing: Preprocessing
    class_names: tuple[str, ...]


def load_synthetic_checkpoint(path: str | os.PathLike) -> LoadedSyntheticModel:
    """Load a ``.pt`` checkpoint written by ``onnxcam train-synthetic`` (strict state-dict keys)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    document = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(document, dict) or "arch" not in document or "state_dict" not in document:
        raise ValueError(f"{path} is not a synthetic-model checkpoint (no 'arch' / 'state_dict')")
    arch = synthetic_arch(document["arch"])
    model = build_synthetic_model(arch.name, int(document["num_classes"]), int(document["image_size"]))
    model.load_state_dict(document["state_dict"], strict=True)
    return LoadedSyntheticModel(
        arch=arch,
        model=model.eval(),
        preprocessing=Preprocessing.from_dict(document["preprocessing"]),
        class_names=tuple(document["class_names"]),
    )


def export_synthetic_model(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    input_gradients: Sequence[str] = (),
    target: str | None = None,
) -> Path:
    """Export a synthetic-model checkpoint CAM-ready at its target layer; returns ``out``.

    ``input_gradients``: backward rules (``plain``, ``guided``, ``deconvnet``) whose input gradients
    the file also computes, on every call (see ``export_cam_model``). ``target``: a built-in
    target's name (``onnxcam.export.targets.TARGETS``); default the architecture's own
    (``segmentation`` for ``synthetic_segmenter``, ``detection`` for ``synthetic_detector``,
    ``logit`` for the classifiers).
    """
    from onnxcam.export.cam_export import export_cam_model
    from onnxcam.export.targets import target_by_name

    loaded = load_synthetic_checkpoint(checkpoint)
    target_name = target or loaded.arch.target
    class_labels = loaded.class_names
    if target_name == "segmentation" and loaded.arch.target == "segmentation":
        class_labels = ("background", *class_labels)  # channel 0 of the per-pixel logits
    if loaded.arch.export is not None:
        return loaded.arch.export(loaded, Path(out), input_gradients)
    return export_cam_model(
        loaded.model,
        torch.zeros(1, 3, *loaded.preprocessing.input_size),
        [loaded.arch.target_layer],
        out,
        preprocessing=loaded.preprocessing,
        class_labels=class_labels,
        arch=loaded.arch.name,
        input_gradients=input_gradients,
        target=target_by_name(target_name),
    )
