"""Faithfulness metrics: onnxcam (fp32 and int8) vs torchcam's and pytorch-grad-cam's own
implementations, ResNet-50 at batch 8 (issue 16). Run: ``pytest benchmarks/test_faithfulness.py``.

Every row scores the same Grad-CAM maps (onnxcam's, fp32) of the same preprocessed demo photos for
their top-1 classes, on the same weights:

- ``deletion_insertion``: 20 steps, zero baseline; torchcam 0.5's ``DeletionInsertionMetric`` (its
  default forward batch of 32) against :func:`onnxcam.eval.deletion_insertion`;
- ``road``: ``ROADCombined`` over the percentiles 10..90 with noisy linear imputation (noise 0.01);
  pytorch-grad-cam 1.5's against :func:`onnxcam.eval.road_combined`.

These are forward passes (ROAD also a sparse solve per image and percentile), so the fp32 rows
can be only as far ahead as ONNX Runtime's forward is ahead of torch's. Each call takes seconds to
a minute: one timed call per row, after a warm-up pass that builds the sessions. ``extra_info``
holds the metric's mean over the batch and its difference from onnxcam fp32's (for int8 also
the mean absolute difference per image; torchcam reports only batch means).
"""

from __future__ import annotations

import importlib
import os
import time

import numpy as np
import pytest
import torch

from benchmarks.measure import input_batch
from onnxcam.eval import deletion_insertion, road_combined
from onnxcam.eval.faithfulness import class_probabilities
from onnxcam.runtime import CamSession

ARCH = "resnet50"
BATCH = 8
STEPS = 20
PEERS = {"deletion_insertion": "torchcam", "road": "pytorch-grad-cam"}
ROWS = [(metric, implementation) for metric, peer in PEERS.items() for implementation in ("onnxcam", "onnxcam-int8", peer)]
"""onnxcam fp32 first in each metric: the later rows state their difference from it."""

_values: dict[tuple[str, str], np.ndarray] = {}
"""Per-image metric values of the rows run so far, for the int8-vs-fp32 difference."""


@pytest.fixture(scope="module")
def case(bench_model, bench_config):
    """(model, batch, maps, class_index): Grad-CAM (relu) maps of the fp32 export."""
    model = bench_model(ARCH)
    batch = input_batch(BATCH, model.preprocessing)
    session = CamSession(model.cam_path("last"), providers="cpu", threads=bench_config.threads)
    result = session.explain(batch, "gradcam", "relu")
    return model, batch, result.maps, result.class_index


def _onnxcam_runner(metric: str, path, threads: int, batch, maps, class_index):
    session = CamSession(path, providers="cpu", threads=threads)
    class_probabilities(session, batch[:1], class_index[:1])  # builds the forward session
    if metric == "deletion_insertion":
        return lambda: np.stack(deletion_insertion(session, batch, maps, class_index, steps=STEPS))
    return lambda: road_combined(session, batch, maps, class_index)


def _peer_runner(metric: str, module: torch.nn.Module, batch, maps, class_index):
    inputs = torch.from_numpy(batch)
    with torch.no_grad():
        module(inputs[:1])  # warm-up
    if metric == "deletion_insertion":
        from torchcam.metrics import DeletionInsertionMetric

        from helpers.fixed_maps import FixedMaps  # tests/ is on the pytest pythonpath

        def run() -> np.ndarray:
            metric = DeletionInsertionMetric(FixedMaps(module, maps), torch.nn.Softmax(dim=-1), steps=STEPS)
            metric.update(inputs, class_idx=[int(c) for c in class_index])
            summary = metric.summary()  # the batch means: torchcam accumulates, as its users read it
            return np.array([[summary["deletion_auc"]], [summary["insertion_auc"]]])

        return run
    from helpers.torchvision_standin import import_pytorch_grad_cam  # tests/ is on the pytest pythonpath

    import_pytorch_grad_cam()
    road = importlib.import_module("pytorch_grad_cam.metrics.road")
    targets = importlib.import_module("pytorch_grad_cam.utils.model_targets")
    softmax_targets = [targets.ClassifierOutputSoftmaxTarget(int(c)) for c in class_index]
    return lambda: road.ROADCombined()(inputs, maps, softmax_targets, module)


@pytest.mark.parametrize(("metric", "implementation"), ROWS, ids=[f"{m}-{i}" for m, i in ROWS])
def test_faithfulness_row(metric, implementation, benchmark, bench_config, case):
    model, batch, maps, class_index = case
    if implementation == PEERS[metric]:
        run = _peer_runner(metric, model.module, batch, maps, class_index)
    else:
        path = model.int8_path() if implementation == "onnxcam-int8" else model.cam_path("last")
        run = _onnxcam_runner(metric, path, bench_config.threads, batch, maps, class_index)
    time.sleep(bench_config.pause_s)  # idle worker threads of the previous row stop spinning
    values = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    values = np.asarray(values, dtype=np.float64)
    assert np.isfinite(values).all()
    _values[metric, implementation] = values
    info = dict(
        arch=ARCH, batch=BATCH, metric=metric, threads=bench_config.threads, load_1min=os.getloadavg()[0],
        implementation=implementation,
        mean=values.mean(axis=-1).tolist(),
    )
    fp32 = _values.get((metric, "onnxcam"))
    if fp32 is not None and implementation != "onnxcam":
        info["mean_minus_onnxcam_fp32_mean"] = (values.mean(axis=-1) - fp32.mean(axis=-1)).tolist()
        if values.shape == fp32.shape:
            info["mean_abs_difference_per_image_to_onnxcam_fp32"] = np.abs(values - fp32).mean(axis=-1).tolist()
    benchmark.extra_info.update(info)
