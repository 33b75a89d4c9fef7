"""The benchmark suite, run tiny (one model, batch 1, one round, 32x32 inputs), so that it cannot rot;
and the report's arithmetic on hand-made numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.measure import timed_rounds
from benchmarks.plan import CAPTUM, FLOOR, ONNXCAM, PYTORCH_GRAD_CAM, TORCHCAM, BenchConfig, plan
from benchmarks.report import CSV_COLUMNS, goal_checks, load_rows, write_report

ROOT = Path(__file__).resolve().parents[1]
SMOKE_ENV = {
    "BENCH_FULL": "1",
    "BENCH_MODELS": "resnet18",
    "BENCH_BATCHES": "1",
    "BENCH_LAYERS": "last",
    "BENCH_INPUT_SIZE": "32",
    "BENCH_THREADS": "1",
    "BENCH_PAUSE_S": "0",
    "BENCH_WARMUP": "0",
    "BENCH_MIN_ROUNDS": "1",
}


def test_bench_suite_smoke(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("torchcam")
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        pytest.skip("grad-cam is not installed (make install adds it with --no-deps)")
    json_path = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_bench.py", "-q", "-p", "no:cacheprovider", f"--benchmark-json={json_path}"],
        cwd=ROOT,
        env={**os.environ, **SMOKE_ENV},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    csv_path, md_path = write_report(json_path, tmp_path)

    rows = pd.read_csv(csv_path)
    assert list(rows.columns) == CSV_COLUMNS
    assert (rows.batch == 1).all() and (rows.model == "resnet18").all()
    assert {FLOOR, ONNXCAM, PYTORCH_GRAD_CAM, TORCHCAM, CAPTUM} <= set(rows.implementation)
    gradcam = rows[rows.method == "gradcam"]
    assert {ONNXCAM, PYTORCH_GRAD_CAM, TORCHCAM, CAPTUM} <= set(gradcam.implementation)
    assert (rows.median_ms > 0).all() and rows.ratio_to_floor.notna().all()
    assert rows[rows.implementation == FLOOR].ratio_to_floor.tolist() == [1.0]
    assert rows[rows.implementation != FLOOR].peak_rss_mb.notna().all()
    # Every onnxcam method in the plan either ran or was skipped with a reason in bench.md.
    text = md_path.read_text()
    assert "## resnet18 (cpu)" in text and "## Skipped rows" in text and "CUDA row" in text

    checks = goal_checks(load_rows(json.loads(json_path.read_text())), headline_model="resnet18")
    assert any(c.quantity == "time / floor" and "onnxcam gradcam" in c.row for c in checks)


def _document(rows: list[tuple[str, str, str, float]]) -> dict:
    """A pytest-benchmark JSON document with (implementation, method, role, median_s) rows."""
    return {
        "machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}, "onnxcam_bench": {"threads": 2}},
        "benchmarks": [
            {
                "extra_info": {
                    "model": "resnet50",
                    "batch": 8,
                    "implementation": implementation,
                    "method": method,
                    "layer": {"last": "layer4", "middle": "layer3"}[role],
                    "layer_role": role,
                    "device": "cpu",
                    "peak_rss_mb": 10.0,
                },
                "stats": {"median": median, "rounds": 3},
            }
            for implementation, method, role, median in rows
        ],
    }


def test_report_ratios_and_goals_by_hand():
    document = _document(
        [
            (FLOOR, "forward", "last", 0.200),
            (ONNXCAM, "gradcam", "last", 0.250),
            (PYTORCH_GRAD_CAM, "gradcam", "last", 1.000),
            (TORCHCAM, "gradcam", "last", 0.500),
            (CAPTUM, "gradcam", "last", 0.400),
        ]
    )
    rows = load_rows(document).set_index("implementation")
    assert rows.loc[ONNXCAM, "ratio_to_floor"] == pytest.approx(1.25)
    assert rows.loc[ONNXCAM, "speedup_vs_fastest_peer"] == pytest.approx(0.400 / 0.250)
    assert rows.loc[CAPTUM, "speedup_vs_fastest_peer"] == pytest.approx(1.0)
    assert rows.loc[ONNXCAM, "images_per_s"] == pytest.approx(8 / 0.25)
    assert math.isnan(rows.loc[FLOOR, "speedup_vs_fastest_peer"])
    assert rows.loc[ONNXCAM, "machine"] == "Test CPU, 2 cores, 2 threads"

    checks = {c.quantity: c for c in goal_checks(load_rows(document))}
    assert checks["time / floor"].measured == pytest.approx(1.25) and not checks["time / floor"].met
    assert checks["speed-up vs pytorch-grad-cam"].measured == pytest.approx(4.0) and checks["speed-up vs pytorch-grad-cam"].met
    faster_peer = checks["speed-up vs faster of captum, torchcam"]
    assert faster_peer.measured == pytest.approx(1.6) and faster_peer.met


def test_timed_rounds_fill_the_time_within_bounds():
    assert timed_rounds(0.05, 3.0, 3, 30) == 30
    assert timed_rounds(0.5, 3.0, 3, 30) == 6
    assert timed_rounds(1.2, 3.0, 3, 30) == 3
    assert timed_rounds(90.0, 3.0, 3, 30) == 1


def test_default_plan_holds_the_goal_rows():
    rows = {(r.model, r.batch, r.layer, r.implementation, r.method, r.device) for r in plan(BenchConfig())}
    for batch in (1, 8, 32):
        assert ("resnet50", batch, "last", ONNXCAM, "gradcam", "cpu") in rows
        assert ("resnet50", batch, "last", FLOOR, "forward", "cpu") in rows
    for method in ("gradcam++", "xgradcam", "layercam", "ablationcam", "scorecam"):
        assert ("resnet50", 1, "last", PYTORCH_GRAD_CAM, method, "cpu") in rows
    assert ("resnet50", 1, "middle", ONNXCAM, "gradcam", "cpu") in rows
    assert ("resnet50", 32, "last", ONNXCAM, "gradcam", "cuda") in rows
    assert not any(model == "vgg16" and batch == 32 for model, batch, *_ in rows)
