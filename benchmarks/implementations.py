"""One runner per row: ``runner(batch)`` takes the preprocessed float32 ``(N, 3, S, S)`` numpy batch
and returns min-max normalised ``(N, S, S)`` maps (the floor: the logits).

Each runner is built the way a user of that library would write it, explaining the top-1 class
from the same forward pass wherever the library allows, with everything that is made once
(sessions, CAM objects, hooks) made before timing and the per-call work timed.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from onnxcam.contract import INPUT, LOGITS
from onnxcam.runtime import METHODS, CamSession
from onnxcam.runtime.session_options import default_session_options, without_spinning

from benchmarks.models import BenchModel
from benchmarks.plan import (
    CAPTUM,
    FLOOR,
    ONNXCAM_FUSED,
    ORT_IMPLEMENTATIONS,
    PEER_CLASSES,
    PYTORCH_GRAD_CAM,
    TORCHCAM,
    Row,
)

Runner = Callable[[np.ndarray], np.ndarray]


class RowUnavailable(Exception):
    """The row cannot run in this checkout or on this machine; the message says why."""


def cuda_unavailable_reason() -> str | None:
    """Why CUDA rows cannot run here, or None when both ONNX Runtime and torch have CUDA."""
    reasons = []
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        reasons.append(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (install onnxruntime-gpu)")
    if not torch.cuda.is_available():
        reasons.append(f"torch {torch.__version__} sees no CUDA device")
    return "; ".join(reasons) or None


def _providers(device: str) -> list[str]:
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]


def session_options(threads: int, profile_prefix: Path | None = None) -> ort.SessionOptions:
    """onnxcam's default session options without spinning, for the floor and onnxcam alike
    (a row's calls alternate with the floor's: spinning threads of one would slow the other),
    ONNX Runtime's profiler on when ``profile_prefix`` is given (``benchmarks.profile``)."""
    options = without_spinning(default_session_options(threads))
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return options


def _floor(path: Path, row: Row, options: ort.SessionOptions) -> Runner:
    session = ort.InferenceSession(str(path), options, providers=_providers(row.device))
    return lambda batch: session.run([LOGITS], {INPUT: batch})[0]


def _onnxcam(path: Path, row: Row, layer: str, options: ort.SessionOptions) -> Runner:
    if row.method not in METHODS:
        raise RowUnavailable(f"method {row.method!r} is not in onnxcam.runtime.methods.METHODS yet")
    session = CamSession(path, providers=row.device, session_options=options)
    if METHODS[row.method].needs_cam_weights and not session.metadata.layer(layer).has_cam_weights:
        raise RowUnavailable(f"{row.method!r} needs a global-average-pool + linear head after {layer!r}")
    return lambda batch: session.explain(batch, row.method, "relu", layer=layer).maps


def _upsample_normalize(maps: torch.Tensor, size: int) -> np.ndarray:
    """(N, h, w) maps -> (N, size, size) numpy, bilinear, min-max per image; constant maps -> 0."""
    maps = F.interpolate(maps[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), 0).cpu().numpy()


def _pytorch_grad_cam(module: torch.nn.Module, row: Row, layer: str) -> Runner:
    from helpers.torchvision_standin import import_pytorch_grad_cam  # tests/ is on the pytest pythonpath

    cam_class = getattr(import_pytorch_grad_cam(), PEER_CLASSES[PYTORCH_GRAD_CAM][row.method])
    cam = cam_class(model=module, target_layers=[module.get_submodule(layer)])
    device = row.device
    # targets=None: pytorch-grad-cam explains each image's top-1 class of its own forward pass and
    # returns (N, H, W) maps, min-max normalised and resized to the input with OpenCV.
    return lambda batch: cam(input_tensor=torch.from_numpy(batch).to(device), targets=None)


def _torchcam(module: torch.nn.Module, row: Row, layer: str, size: int) -> Runner:
    methods = importlib.import_module("torchcam.methods")
    extractor = getattr(methods, PEER_CLASSES[TORCHCAM][row.method])(module, target_layer=layer, input_shape=(3, size, size))
    needs_grad = row.method != "scorecam"
    device = row.device

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.set_grad_enabled(needs_grad):
            scores = module(torch.from_numpy(batch).to(device))
        (maps,) = extractor(scores.argmax(dim=1).tolist(), scores)
        return _upsample_normalize(maps, size)

    return run


def _captum(module: torch.nn.Module, row: Row, layer: str, size: int) -> Runner:
    from captum.attr import LayerGradCam

    # The top-1 score as the attributed output explains each image's own top-1 class with one
    # forward pass (passing target= would need a second forward to find the class first).
    gradcam = LayerGradCam(lambda x: module(x).amax(dim=1), module.get_submodule(layer))
    device = row.device

    def run(batch: np.ndarray) -> np.ndarray:
        maps = gradcam.attribute(torch.from_numpy(batch).to(device), relu_attributions=True)
        return _upsample_normalize(maps[:, 0].detach(), size)

    return run


def onnx_file(row: Row, model: BenchModel) -> Path | None:
    """The ONNX file an ONNX Runtime row runs (exported on first use), None for a torch row;
    RowUnavailable where this checkout cannot make it."""
    if row.implementation not in ORT_IMPLEMENTATIONS:
        return None
    if row.implementation == ONNXCAM_FUSED and model.fused_path is None:
        raise RowUnavailable("export_cam_model has no `fused` option yet (issue 4)")
    return model.path_for(row.implementation, row.layer)


def make_runner(row: Row, model: BenchModel, threads: int, profile_prefix: Path | None = None) -> Runner:
    """The runner of ``row``; RowUnavailable when this checkout or machine cannot run it.

    Torch peers get their own deep copy of the module, so that their weights count in the row's
    peak memory as an ONNX Runtime session's do. ``profile_prefix`` turns ONNX Runtime's profiler
    on for the row's sessions (ignored by torch rows).
    """
    if row.device == "cuda" and (reason := cuda_unavailable_reason()):
        raise RowUnavailable(f"CUDA row: {reason}")
    layer = model.layers[row.layer]
    path = onnx_file(row, model)
    if row.implementation == FLOOR:
        return _floor(path, row, session_options(threads, profile_prefix))
    if path is not None:
        return _onnxcam(path, row, layer, session_options(threads, profile_prefix))
    module = copy.deepcopy(model.module).to(row.device).eval()
    if row.implementation == PYTORCH_GRAD_CAM:
        return _pytorch_grad_cam(module, row, layer)
    if row.implementation == TORCHCAM:
        return _torchcam(module, row, layer, model.input_size)
    if row.implementation == CAPTUM:
        return _captum(module, row, layer, model.input_size)
    raise ValueError(f"unknown implementation {row.implementation!r}")
