"""The benchmark suite, run tiny (one model, batch 1, one round, 48x48 inputs) through the report and
one profile, so that it cannot rot; the report's arithmetic, the goals and the estimate on
hand-made numbers."""

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

from benchmarks.estimate import estimate
from benchmarks.headline import headline_markdown
from benchmarks.measure import timed_rounds
from benchmarks.plan import CAPTUM, FLOOR, ONNXCAM, ONNXCAM_INT8, PYTORCH_GRAD_CAM, TORCHCAM, BenchConfig, Row, plan
from benchmarks.profile import ort_op_times
from benchmarks.report import CSV_COLUMNS, SPEEDUP_CAPTUM_TORCHCAM, SPEEDUP_PGC, TIME_TO_FLOOR, goal_checks, issue_goals, load_rows, write_report

ROOT = Path(__file__).resolve().parents[2]
SMOKE_ENV = {
    "BENCH_FULL": "1",
    "BENCH_MODELS": "resnet18",
    "BENCH_BATCHES": "1",
    "BENCH_LAYERS": "last",
    "BENCH_INPUT_SIZE": "48",  # layer4 is 2x2: maps that are not constant, so their cosines mean something
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
    env = {**os.environ, **SMOKE_ENV}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/test_bench.py", "-q", "-p", "no:cacheprovider", f"--benchmark-json={json_path}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    csv_path, md_path = write_report(json_path, tmp_path)

    rows = pd.read_csv(csv_path)
    assert list(rows.columns) == CSV_COLUMNS
    assert (rows.batch == 1).all() and (rows.model == "resnet18").all()
    gradcam = rows[rows.method == "gradcam"]
    assert {FLOOR, ONNXCAM, ONNXCAM_INT8, PYTORCH_GRAD_CAM, TORCHCAM, CAPTUM} <= set(rows.implementation)
    assert {ONNXCAM, ONNXCAM_INT8, PYTORCH_GRAD_CAM, TORCHCAM, CAPTUM} <= set(gradcam.implementation)
    assert (rows.median_ms > 0).all() and rows.ratio_to_floor.notna().all()
    assert rows[rows.implementation == FLOOR].ratio_to_floor.tolist() == [1.0]
    assert rows[rows.implementation != FLOOR].peak_rss_mb.notna().all()
    assert (rows[rows.implementation != FLOOR].floor_ms > 0).all()  # floor calls interleaved with every row's
    # Same maps: onnxcam against pytorch-grad-cam for every method both have, int8 against fp32.
    ours = rows[rows.implementation == ONNXCAM].set_index("method")
    for method in ("gradcam", "gradcam++", "xgradcam", "layercam", "scorecam", "ablationcam"):
        assert ours.loc[method, "cosine_to_pytorch_grad_cam"] > 0.98, method
    assert rows[rows.implementation == ONNXCAM_INT8].cosine_to_fp32.notna().all()
    # Every onnxcam method in the plan either ran or was skipped with a reason in bench.md.
    text = md_path.read_text()
    assert "## resnet18 (cpu)" in text and "## Skipped rows" in text and "CUDA row" in text
    assert text.count("| onnxcam") >= len(issue_goals())  # every goal has a line, measured or not

    checks = goal_checks(load_rows(json.loads(json_path.read_text())), headline_model="resnet18")
    assert len(checks) == len(issue_goals())
    assert any(c.goal.quantity == TIME_TO_FLOOR and c.measured_ok and c.row.implementation == ONNXCAM for c in checks)
    assert "resnet18" in headline_markdown(rows, "resnet18")

    row = "resnet18-b1-last-onnxcam-gradcam-cpu"
    profiled = subprocess.run(
        [sys.executable, "-m", "benchmarks.profile", str(json_path), "--row", row],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert profiled.returncode == 0, profiled.stdout[-2000:] + profiled.stderr[-2000:]
    profile = (tmp_path / f"profile_{row}.md").read_text()
    assert "| Conv |" in profile and "| Gather |" in profile  # the forward, and the seed's classifier row
    assert "inside InferenceSession.run, ms | 0.0 |" not in profile


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

    checks = {
        c.goal.quantity: c
        for c in goal_checks(load_rows(document), [], "resnet50")
        if (c.row.model, c.goal.implementation, c.goal.batch, c.goal.method, c.goal.role)
        == ("resnet50", ONNXCAM, 8, "gradcam", "last")
    }
    assert checks[TIME_TO_FLOOR].measured == pytest.approx(1.25) and not checks[TIME_TO_FLOOR].met
    assert checks[TIME_TO_FLOOR].miss_factor == pytest.approx(1.25 / 1.05) and checks[TIME_TO_FLOOR].wants_profile
    assert checks[SPEEDUP_PGC].measured == pytest.approx(4.0) and checks[SPEEDUP_PGC].met
    faster_peer = checks[SPEEDUP_CAPTUM_TORCHCAM]
    assert faster_peer.measured == pytest.approx(1.6) and faster_peer.met and not faster_peer.wants_profile


def test_ratio_to_floor_uses_the_floor_calls_interleaved_with_the_row():
    document = _document([(FLOOR, "forward", "last", 0.200), (ONNXCAM, "gradcam", "last", 0.250)])
    document["benchmarks"][1]["extra_info"]["floor_ms"] = 240.0
    rows = load_rows(document).set_index("implementation")
    assert rows.loc[ONNXCAM, "floor_ms"] == 240.0
    assert rows.loc[ONNXCAM, "ratio_to_floor"] == pytest.approx(250 / 240)
    assert rows.loc[FLOOR, "floor_ms"] == pytest.approx(200.0) and rows.loc[FLOOR, "ratio_to_floor"] == 1.0


def test_unmeasured_goals_say_why():
    document = _document([(FLOOR, "forward", "last", 0.200), (ONNXCAM, "gradcam", "last", 0.250)])
    cuda_reason = "CUDA row: torch sees no CUDA device"
    skipped = [{"row": "resnet50-b32-last-onnxcam-gradcam-cuda", "reason": cuda_reason}]
    checks = goal_checks(load_rows(document), skipped, "resnet50")
    assert len(checks) == len(issue_goals())
    reasons = {c.reason for c in checks if not c.measured_ok}
    assert cuda_reason in reasons
    assert "row resnet50-b8-last-pytorch-grad-cam-gradcam-cpu not in this run's plan" in reasons
    assert sum(c.measured_ok for c in checks) == 1  # onnxcam gradcam b8 against the floor


def test_timed_rounds_fill_the_time_within_bounds():
    assert timed_rounds(0.05, 3.0, 3, 30) == 30
    assert timed_rounds(0.5, 3.0, 3, 30) == 6
    assert timed_rounds(1.2, 3.0, 3, 30) == 3
    assert timed_rounds(90.0, 3.0, 3, 30) == 1


def test_default_plan_holds_every_cpu_goal_row_and_the_cuda_rows():
    rows = set(plan(BenchConfig()))
    for goal in issue_goals():
        for row in [goal.row("resnet50"), *goal.compared_rows("resnet50")]:
            assert row in rows, row.id
    assert not any(row.model == "vgg16" and row.batch == 32 for row in rows)
    for model in ("vgg16", "mobilenet_v2", "efficientnet_lite0"):
        for batch in (1, 8):
            for implementation in (FLOOR, ONNXCAM, "onnxcam-fused", CAPTUM):
                method = "forward" if implementation == FLOOR else "gradcam"
                assert Row(model, batch, "last", implementation, method) in rows


def test_default_plan_is_estimated_at_about_15_minutes():
    """About 15 minutes once the models are exported (a fresh checkout adds their exports)."""
    config = BenchConfig()
    exported = {(model, file) for model in config.models for file in ("forward", "cam-last", "cam-middle", "int8")}
    frame, preparation, profiles = estimate(config, cached=exported)
    minutes = (frame.row_s.sum() + sum(preparation.values()) + sum(profiles.values())) / 60
    assert 12 <= minutes <= 18, minutes


def test_perturbation_rows_are_timed_once():
    assert Row("resnet50", 1, "last", PYTORCH_GRAD_CAM, "scorecam").runs_for_minutes
    assert Row("resnet50", 1, "last", ONNXCAM, "scorecam").runs_for_minutes
    assert Row("resnet50", 1, "last", PYTORCH_GRAD_CAM, "ablationcam").runs_for_minutes
    assert not Row("resnet50", 1, "last", ONNXCAM, "ablationcam").runs_for_minutes  # the head only


def test_row_ids_parse_back():
    for row in plan(BenchConfig(full=True)):
        assert Row.from_id(row.id) == row


def test_ort_profile_leaves_out_the_warm_up_runs():
    def run(ts: int) -> list[dict]:
        return [
            {"cat": "Node", "name": "conv_kernel_time", "ts": ts + 1, "dur": 100, "args": {"op_name": "Conv"}},
            {"cat": "Node", "name": "relu_kernel_time", "ts": ts + 2, "dur": 10, "args": {"op_name": "Relu"}},
            {"cat": "Session", "name": "model_run", "ts": ts, "dur": 200},
        ]

    events = [{"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 5000}] + run(10) + run(20) + run(30)
    assert ort_op_times(events, warmup_runs=1) == ({"Conv": 200, "Relu": 20}, 2)
    assert ort_op_times(events, warmup_runs=0) == ({"Conv": 300, "Relu": 30}, 3)
