"""Ablation-CAM through the head graph vs one forward pass of the whole network, ResNet-50 at
224x224, batch 1 (issue 4's acceptance: less than 2x). Run: ``pytest benchmarks/test_ablation_head.py``.

Both rows use the same ONNX Runtime options; the forward row runs the forward graph cut out of the
same CAM-ready file (no backward). A pause before each row keeps the previous row's spinning
worker threads from stealing cores (design notes).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from onnxcam.contract import INPUT, LOGITS  # noqa: E402
from onnxcam.runtime import CamSession  # noqa: E402


@pytest.fixture(scope="module")
def resnet50_session(tmp_path_factory):
    from onnxcam.export import export_cam_model
    from onnxcam.export.zoo import build_model, zoo_entry

    entry = zoo_entry("resnet50")
    torch.manual_seed(0)
    path = export_cam_model(
        build_model("resnet50"), torch.zeros(1, 3, 224, 224), [entry.last_layer],
        tmp_path_factory.mktemp("ablation") / "resnet50.onnx",
    )
    return CamSession(path, providers="cpu")


def _batch() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)


def test_forward_resnet50_batch1(benchmark, resnet50_session):
    passes = resnet50_session._passes()
    batch = _batch()
    passes.logits(batch)  # builds the forward session outside the timing
    time.sleep(0.3)
    benchmark.pedantic(passes.logits, args=(batch,), rounds=10, warmup_rounds=2)


def test_ablationcam_resnet50_batch1(benchmark, resnet50_session):
    batch = _batch()
    resnet50_session.explain(batch, "ablationcam")  # builds the head sessions outside the timing
    time.sleep(0.3)
    benchmark.pedantic(resnet50_session.explain, args=(batch, "ablationcam"), rounds=10, warmup_rounds=2)
