"""Long runs and concurrency: memory stays flat, threads give the sequential maps.

The default sizes keep this under a minute here; ONNXCAM_LONG=1 runs the long version.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from onnxcam.runtime import CamSession

LONG = os.environ.get("ONNXCAM_LONG") == "1"


def resident_memory_mb() -> float:
    """This process's resident set size, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc (Linux)")
def test_memory_stays_flat_over_thousands_of_images(tiny_cam_model):
    session = CamSession(tiny_cam_model, providers="cpu")
    rng = np.random.default_rng(0)
    batch_size, batches = 50, (400 if LONG else 80)  # 20,000 or 4,000 images
    warm_up = 10
    for step in range(batches):
        batch = rng.standard_normal((batch_size, 3, 32, 32)).astype(np.float32)
        method = ("gradcam", "cam")[step % 2]
        result = session.explain(batch, method=method, weighting="relu")
        assert np.isfinite(result.maps).all()
        if step == warm_up:
            after_warm_up = resident_memory_mb()
    growth = resident_memory_mb() / after_warm_up - 1
    assert growth < 0.05, f"resident memory grew {growth:.1%} after warm-up"


def test_one_session_from_four_threads_gives_the_sequential_maps(tiny_cam_model):
    session = CamSession(tiny_cam_model, providers="cpu")
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((8, 3, 32, 32)).astype(np.float32) for _ in range(16)]
    jobs = [(batch, ("gradcam", "cam")[i % 2], ("relu", "abs")[(i // 2) % 2]) for i, batch in enumerate(batches)]
    sequential = [session.explain(b, method=m, weighting=w).maps for b, m, w in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda job: session.explain(job[0], method=job[1], weighting=job[2]).maps, jobs))
    for expected, got in zip(sequential, concurrent):
        np.testing.assert_array_equal(got, expected)
