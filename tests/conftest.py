"""Shared fixtures: zoo models exported once per test session (exports take 10-30 s each)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.target_models import exported_targets  # noqa: F401, E402 - session fixture of the target tests

ZOO_SEED = 0


@dataclass(frozen=True)
class ExportedZooModel:
    arch: str
    model: object  # torch.nn.Module, with the exact weights that were exported
    entry: object  # onnxcam.export.zoo.ZooEntry
    path: Path  # CAM-ready ONNX with entry.last_layer and entry.middle_layer


@pytest.fixture(scope="session")
def exported_zoo_model(tmp_path_factory) -> Callable[[str], ExportedZooModel]:
    """``exported_zoo_model(arch)``: the zoo model (seeded random init, or shipped weights) and its
    CAM-ready export at the last and the middle layer, made on first use."""
    torch = pytest.importorskip("torch")
    from onnxcam.export import export_cam_model
    from onnxcam.export.zoo import build_model, zoo_entry

    cache: dict[str, ExportedZooModel] = {}
    folder = tmp_path_factory.mktemp("zoo_exports")

    def get(arch: str) -> ExportedZooModel:
        if arch not in cache:
            entry = zoo_entry(arch)
            torch.manual_seed(ZOO_SEED)
            model = build_model(arch)
            path = export_cam_model(
                model,
                torch.zeros(1, 3, *entry.preprocessing.input_size),
                [entry.last_layer, entry.middle_layer],
                folder / f"{arch}.onnx",
                preprocessing=entry.preprocessing,
                class_labels=entry.class_labels,
                arch=arch,
            )
            cache[arch] = ExportedZooModel(arch, model, entry, path)
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def tiny_cam_model(tmp_path_factory) -> Path:
    """A small CNN (3x32x32 -> 10 classes, GAP + linear head) exported CAM-ready at ``features``:
    cheap enough for tests that push thousands of images or many corrupted copies through."""
    torch = pytest.importorskip("torch")
    from torch import nn

    from onnxcam.contract import Preprocessing
    from onnxcam.export import export_cam_model

    torch.manual_seed(ZOO_SEED)
    model = nn.Sequential()
    model.add_module("stem", nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU()))
    model.add_module("features", nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()))
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc", nn.Linear(16, 10))
    return export_cam_model(
        model,
        torch.zeros(1, 3, 32, 32),
        ["features"],
        tmp_path_factory.mktemp("tiny") / "tiny.onnx",
        preprocessing=Preprocessing(input_size=(32, 32)),
        arch="tiny",
    )


@pytest.fixture(scope="session")
def edge_zoo_model(exported_zoo_model, tmp_path_factory) -> Callable[..., Path]:
    """``edge_zoo_model(arch, precision="fp32")``: the zoo export with the fused heatmaps of
    ``edge_models.FUSED`` added, and for ``precision="int8"`` its static int8 copy (backward float,
    calibrated on ``onnxcam.demo.calibration_photos()``), made on first use."""
    from helpers.edge_models import fused_copy
    from onnxcam.demo import calibration_photos

    cache: dict[tuple[str, str], Path] = {}
    folder = tmp_path_factory.mktemp("edge_models")

    def get(arch: str, precision: str = "fp32") -> Path:
        if (arch, precision) not in cache:
            fused = cache.get((arch, "fp32")) or fused_copy(exported_zoo_model(arch).path, folder / f"{arch}.fused.onnx")
            cache[arch, "fp32"] = fused
            if precision == "int8":
                from onnxcam.export.quantize import quantize_cam_model

                cache[arch, precision] = quantize_cam_model(fused, calibration_photos(), folder / f"{arch}.int8.onnx")
            elif precision != "fp32":
                raise ValueError(f"precision {precision!r}: 'fp32' or 'int8'")
        return cache[arch, precision]

    return get


@pytest.fixture(scope="session")
def small_vit(tmp_path_factory):
    """A 2-block ViT on 32x32 inputs (4x4 patches of 8 px), exported at the last block's ln_1:
    ``(torch model, CAM-ready file)``. Its export takes the batch size of the token reshapes from
    ``class_index``'s shape."""
    import torch

    from onnxcam.contract import Preprocessing
    from onnxcam.export import export_cam_model
    from onnxcam.export.zoo.vit import VisionTransformer, tokens_to_grid

    torch.manual_seed(6)
    model = VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=5).eval()
    path = export_cam_model(
        model, torch.zeros(1, 3, 32, 32), ["encoder.layers.encoder_layer_1.ln_1"],
        tmp_path_factory.mktemp("vit") / "vit.onnx", preprocessing=Preprocessing(input_size=(32, 32)),
        reshape=tokens_to_grid,
    )
    return model, path
