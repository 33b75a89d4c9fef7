"""Size and speed of the int8 and fp16 copies of a CAM-ready model against fp32 (docs/edge.md).

Rows: architecture x precision x batch, each a fused Grad-CAM ``CamSession.explain`` on a
preprocessed batch (one ``run``: logits, gradients and the finished maps). ``extra_info`` holds the
file size. int8 is static QDQ calibrated on scikit-image photos that are not demo photos
(``onnxcam.demo.calibration_photos``); ``int8-backward`` quantizes the gradient subgraph too.
fp16 is meant for CUDA: on CPU it measures the conversion's overhead, not a gain.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.measure import timed_rounds
from onnxcam.runtime import CamSession

ARCHS = ("efficientnet_lite0", "resnet18")
PRECISIONS = ("fp32", "int8", "int8-backward", "fp16")
BATCHES = (1, 8)


def precision_copy(fused_path: Path, precision: str) -> Path:
    """The ``precision`` copy of the fused export, made next to it once (the cache key of the
    export's folder covers onnxcam's export sources, so a changed quantizer makes new copies)."""
    if precision == "fp32":
        return fused_path
    path = fused_path.with_name(f"cam-fused.{precision}.onnx")
    if path.exists():
        return path
    if precision == "fp16":
        from onnxcam.export.precision import convert_to_fp16

        return convert_to_fp16(fused_path, path)
    from onnxcam.demo import calibration_photos

    from onnxcam.export.quantize import quantize_cam_model

    return quantize_cam_model(fused_path, calibration_photos(), path, include_backward=precision == "int8-backward")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("arch", ARCHS)
def test_quantized_row(arch: str, precision: str, batch: int, benchmark, bench_config, bench_model) -> None:
    model = bench_model(arch)
    if model.fused_path is None:
        pytest.skip("this exporter has no fused heatmaps")
    path = precision_copy(model.fused_path, precision)
    session = CamSession(path, providers="cpu", threads=bench_config.threads)
    inputs = np.random.default_rng(0).standard_normal((batch, 3, model.input_size, model.input_size)).astype(np.float32)
    time.sleep(bench_config.pause_s)  # idle worker threads of the previous row stop spinning

    def explain() -> np.ndarray:
        return session.explain(inputs, "gradcam", "relu").maps

    start = time.perf_counter()
    maps = explain()
    rounds = timed_rounds(time.perf_counter() - start, bench_config.round_seconds, bench_config.min_rounds, bench_config.max_rounds)
    assert maps.shape == (batch, model.input_size, model.input_size) and np.isfinite(maps).all()
    benchmark.extra_info.update(
        arch=arch, precision=precision, batch=batch, file_mb=path.stat().st_size / 1e6,
        threads=bench_config.threads, load_1min=os.getloadavg()[0],
    )
    benchmark.pedantic(explain, rounds=rounds, iterations=1, warmup_rounds=0)
