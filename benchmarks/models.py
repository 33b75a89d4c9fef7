"""The models every row of one architecture shares: one torch module, its ONNX exports.

Exports take 10-60 s each, so they are cached on disk under a key made of everything that decides
their content: architecture, input size, seed, the versions of torch/onnx/onnxscript and a hash of
onnxcam's export sources. A changed exporter therefore never benchmarks a stale graph.
"""

from __future__ import annotations

import hashlib
import inspect
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import onnx
import torch

from onnxcam.atomic_write import write_atomically
from onnxcam.contract import INPUT, LOGITS, Preprocessing
from onnxcam.export import export_cam_model
from onnxcam.export.cam_export import MAX_BATCH
from onnxcam.export.quantize import quantize_cam_model
from onnxcam.export.zoo import build_model, zoo_entry

from benchmarks.plan import FLOOR, LAST, MIDDLE, ONNXCAM, ONNXCAM_FUSED, ONNXCAM_INT8

SEED = 0
EXPORT_SOURCES = Path(inspect.getfile(export_cam_model)).parent
FUSED_GRADCAM = ("gradcam", "relu")


@dataclass(frozen=True)
class BenchModel:
    """One architecture as the rows see it.

    ``module`` is the torch classifier in eval mode (the peers' model); ``forward_path`` its plain
    forward-only ONNX export (the floor); ``cam_path(role)`` the CAM-ready export at that one
    layer, made on first use; ``fused_path`` the CAM-ready export at the last layer with a fused
    Grad-CAM output, or None while the exporter has no ``fused`` option. ``layers`` maps the roles
    ``last`` / ``middle`` to module names.

    One layer per CAM-ready file, as a user who wants that layer's maps would export it: ONNX
    Runtime runs the whole graph whatever outputs are fetched, so a file exported at layer4 and
    layer3 makes every layer4 call pay for the gradient down to layer3 (measured: +20-30% of the
    forward on resnet50, all in ConvTranspose nodes).
    """

    arch: str
    module: torch.nn.Module
    input_size: int
    layers: dict[str, str]
    forward_path: Path
    fused_path: Path | None
    folder: Path
    preprocessing: Preprocessing

    def cam_path(self, role: str) -> Path:
        path = self.folder / f"cam-{role}.onnx"
        if not path.exists():
            example = torch.zeros(1, 3, self.input_size, self.input_size)
            export_cam_model(
                self.module, example, [self.layers[role]], path, preprocessing=self.preprocessing, arch=self.arch
            )
        return path

    def int8_path(self) -> Path:
        """Static QDQ int8 copy of the last-layer export (``onnxcam.export.quantize``: calibrated on
        scikit-image photos that are not demo photos, gradient subgraph kept float32), made on
        first use."""
        path = self.folder / "cam-last.int8.onnx"
        if not path.exists():
            from onnxcam.demo import calibration_photos

            quantize_cam_model(self.cam_path(LAST), calibration_photos(), path)
        return path

    def path_for(self, implementation: str, role: str) -> Path:
        """The ONNX file an ONNX Runtime row of ``implementation`` at layer ``role`` runs, exported
        (or quantized) on first use."""
        if implementation == FLOOR:
            return self.forward_path
        if implementation == ONNXCAM:
            return self.cam_path(role)
        if implementation == ONNXCAM_INT8:
            return self.int8_path()
        if implementation == ONNXCAM_FUSED and self.fused_path is not None:
            return self.fused_path
        raise ValueError(f"{implementation!r} has no ONNX file in this checkout")


def _cache_key(arch: str, input_size: int) -> str:
    digest = hashlib.sha256()
    for source in sorted(EXPORT_SOURCES.rglob("*.py")):
        digest.update(source.read_bytes())
    import onnxscript

    versions = f"{arch}|{input_size}|{SEED}|{torch.__version__}|{onnx.__version__}|{onnxscript.__version__}"
    digest.update(versions.encode())
    return f"{arch}-{input_size}-{digest.hexdigest()[:12]}"


def cache_folder(cache: Path, arch: str, input_size: int) -> Path:
    """Where the exports of ``arch`` at ``input_size`` made by this exporter are kept."""
    return cache / _cache_key(arch, input_size)


def export_forward_model(module: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """The plain classifier, ``input`` -> ``logits``, exported as the users of torch.onnx would:
    ``torch.onnx.export(dynamo=True)`` with a dynamic batch."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # Two rows, so that torch.export does not specialise the batch size to 1.
    example = example[:1].expand(2, -1, -1, -1).contiguous()
    program = torch.onnx.export(
        module,
        (example,),
        input_names=[INPUT],
        output_names=[LOGITS],
        dynamic_shapes=({0: batch},),
        external_data=False,
        dynamo=True,
        verbose=False,
    )
    return write_atomically(path, program.save)


def _remove_stale_exports(cache: Path, arch: str, input_size: int, keep: Path) -> None:
    """Exports made by an older exporter are never read again; they would fill the disk."""
    for folder in cache.glob(f"{arch}-{input_size}-*"):
        if folder != keep and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def exporter_supports_fused() -> bool:
    """True once ``export_cam_model`` takes ``fused=[(method, weighting), ...]`` (issue 4)."""
    return "fused" in inspect.signature(export_cam_model).parameters


def prepare_model(arch: str, input_size: int, cache: Path) -> BenchModel:
    """Build ``arch`` (seeded; shipped weights where the zoo has them) and its exports, cached."""
    entry = zoo_entry(arch)
    torch.manual_seed(SEED)
    module = build_model(arch)
    preprocessing = replace(entry.preprocessing, input_size=(input_size, input_size))
    example = torch.zeros(1, 3, input_size, input_size)
    folder = cache_folder(cache, arch, input_size)
    forward_path = folder / "forward.onnx"
    if not forward_path.exists():
        export_forward_model(module, example, forward_path)
    fused_path = None
    if exporter_supports_fused():
        fused_path = folder / "cam-fused.onnx"
        if not fused_path.exists():
            export_cam_model(
                module, example, [entry.last_layer], fused_path, preprocessing=preprocessing, arch=arch, fused=[FUSED_GRADCAM]
            )
    _remove_stale_exports(cache, arch, input_size, keep=folder)
    return BenchModel(
        arch=arch,
        module=module,
        input_size=input_size,
        layers={LAST: entry.last_layer, MIDDLE: entry.middle_layer},
        forward_path=forward_path,
        fused_path=fused_path,
        folder=folder,
        preprocessing=preprocessing,
    )
