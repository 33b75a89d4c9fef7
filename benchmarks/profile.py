"""Where the time of a benchmark row goes, written to ``profile_<row id>.md`` beside bench.md.

    python -m benchmarks.profile reports/bench/bench.json        # every missed CPU timing goal
    python -m benchmarks.profile reports/bench/bench.json --row resnet50-b1-last-onnxcam-scorecam-cpu

For the row and for the floor (same model and batch) it times a few calls with ONNX Runtime's
profiler on (``enable_profiling``) and cProfile around them, and reports: the wall time per call,
how much of it is spent inside ``InferenceSession.run`` (and in how many runs), the Python/numpy
side (channel weights, weighted sum, resize, normalisation), ONNX Runtime's kernel time per op
type for the row beside the floor's, and cProfile's top functions. Warm-up calls are left out of
both profiles. The profilers add some overhead; the ratios between the two columns are what to
read. The environment (``BENCH_THREADS``, ``BENCH_INPUT_SIZE``, ``BENCH_CACHE``) is the run's.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from onnxcam.atomic_write import write_text_atomically

from benchmarks.measure import input_batch
from benchmarks.plan import FLOOR, FORWARD, LAST, BenchConfig, Row
from benchmarks.report import goal_checks, goal_model, load_run, machine_name, profile_file

PROFILED_CALLS = 5
"""Timed calls per profiled row (one for a row that runs for minutes), after one warm-up call."""
TOP_FUNCTIONS = 15
ORT_RUN_NAMES = ("onnxruntime_pybind11_state.run>", "'run' of 'onnxruntime.capi.onnxruntime_pybind11_state")
"""How cProfile names ONNX Runtime's native ``run`` (by pybind11 version): its own time is the time
spent in the graph."""


@dataclass(frozen=True)
class RowProfile:
    """Per-call figures of one row: wall and in-``run`` milliseconds, ORT runs per session file,
    ORT kernel milliseconds per op type, and cProfile's statistics."""

    wall_ms: float
    ort_run_ms: float
    runs_per_call: dict[str, float]
    op_ms: dict[str, float]
    stats: pstats.Stats
    calls: int


def ort_op_times(events: list[dict], warmup_runs: int) -> tuple[dict[str, float], int]:
    """(kernel microseconds per op type, runs kept) of one ONNX Runtime profile, leaving out the
    nodes of its first ``warmup_runs`` runs (``model_run`` events mark the runs)."""
    runs = sorted(event["ts"] for event in events if event.get("cat") == "Session" and event.get("name") == "model_run")
    start = runs[warmup_runs] if warmup_runs < len(runs) else float("inf")
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time") and event["ts"] >= start:
            totals[event["args"]["op_name"]] += event["dur"]
    return dict(totals), max(len(runs) - warmup_runs, 0)


def _ort_profiles(folder: Path, warmup_calls: int, calls: int) -> tuple[dict[str, float], dict[str, float]]:
    """(kernel ms per op type per call, runs per call by profile file) over every session of a row.
    A session's runs split evenly over its calls: a session first used inside a call (Score-CAM's
    forward-only pass) has its warm-up runs counted from the runs it made."""
    op_ms: dict[str, float] = defaultdict(float)
    runs_per_call = {}
    for path in sorted(folder.glob("*.json")):
        events = json.loads(path.read_text())
        total_runs = sum(1 for event in events if event.get("name") == "model_run")
        warmup_runs = total_runs * warmup_calls // (warmup_calls + calls)
        totals, kept = ort_op_times(events, warmup_runs)
        for op, microseconds in totals.items():
            op_ms[op] += microseconds / 1e3 / calls
        runs_per_call[path.stem] = kept / calls
    return dict(op_ms), runs_per_call


def _ort_run_ms(stats: pstats.Stats, calls: int) -> float:
    native_runs = [entry for (_, _, name), entry in stats.stats.items() if any(run in name for run in ORT_RUN_NAMES)]
    return sum(entry[2] for entry in native_runs) * 1e3 / calls


def profile_one(row: Row, config: BenchConfig, folder: Path) -> RowProfile:
    """Profile ``row`` (ONNX Runtime rows only), its session profiles written under ``folder``."""
    from benchmarks.implementations import make_runner
    from benchmarks.models import prepare_model

    model = prepare_model(row.model, config.input_size, config.cache)
    batch = input_batch(row.batch, model.preprocessing)
    folder.mkdir(parents=True, exist_ok=True)
    runner = make_runner(row, model, config.threads, profile_prefix=folder / "ort")
    warmup_calls, calls = (0, 1) if row.runs_for_minutes else (1, PROFILED_CALLS)
    for _ in range(warmup_calls):
        runner(batch)
    time.sleep(config.pause_s)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(calls):
        runner(batch)
    profiler.disable()
    wall_ms = (time.perf_counter() - started) * 1e3 / calls
    del runner
    gc.collect()  # the sessions write their profiles when they end
    stats = pstats.Stats(profiler)
    op_ms, runs_per_call = _ort_profiles(folder, warmup_calls, calls)
    return RowProfile(wall_ms, _ort_run_ms(stats, calls), runs_per_call, op_ms, stats, calls)


def _top_functions(stats: pstats.Stats, calls: int) -> list[str]:
    entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:TOP_FUNCTIONS]
    lines = ["| function | own ms / call | cumulative ms / call | calls / call |", "|---|---|---|---|"]
    for (file, line, name), (_, ncalls, own, cumulative, _) in entries:
        where = f"{Path(file).name}:{line} " if line else ""
        lines.append(f"| `{where}{name}` | {own * 1e3 / calls:.2f} | {cumulative * 1e3 / calls:.2f} | {ncalls / calls:g} |")
    return lines


def render_profile(row: Row, ours: RowProfile, floor: RowProfile, config: BenchConfig, machine: str) -> str:
    python_ms = ours.wall_ms - ours.ort_run_ms
    runs = " + ".join(f"{count:g}" for _, count in sorted(ours.runs_per_call.items()))
    ops = sorted(set(ours.op_ms) | set(floor.op_ms), key=lambda op: ours.op_ms.get(op, 0.0), reverse=True)
    lines = [
        f"# Profile of {row.id}",
        "",
        f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}; machine: {machine}; "
        f"input {config.input_size}x{config.input_size}, batch {row.batch}",
        f"- calls profiled: {ours.calls} "
        f"({'no warm-up: a row that runs for minutes' if row.runs_for_minutes else 'after one warm-up call'}); "
        f"1-minute load at the end: {os.getloadavg()[0]:.1f}",
        "",
        "## Per call",
        "",
        "| | row | floor |",
        "|---|---|---|",
        f"| wall ms (profilers on) | {ours.wall_ms:.1f} | {floor.wall_ms:.1f} |",
        f"| inside InferenceSession.run, ms | {ours.ort_run_ms:.1f} | {floor.ort_run_ms:.1f} |",
        f"| Python / numpy side, ms | {python_ms:.1f} ({python_ms / ours.wall_ms:.0%}) | {floor.wall_ms - floor.ort_run_ms:.1f} |",
        f"| ONNX Runtime runs (per session) | {runs} | {sum(floor.runs_per_call.values()):g} |",
        f"| row / floor (wall) | {ours.wall_ms / floor.wall_ms:.2f} | 1 |",
        "",
        "## ONNX Runtime kernel time per op type, ms per call",
        "",
        "| op type | row | floor | row - floor |",
        "|---|---|---|---|",
    ]
    for op in ops:
        mine, base = ours.op_ms.get(op, 0.0), floor.op_ms.get(op, 0.0)
        lines.append(f"| {op} | {mine:.2f} | {base:.2f} | {mine - base:+.2f} |")
    lines += [
        f"| **total** | {sum(ours.op_ms.values()):.2f} | {sum(floor.op_ms.values()):.2f} | "
        f"{sum(ours.op_ms.values()) - sum(floor.op_ms.values()):+.2f} |",
        "",
        f"## cProfile of the row, top {TOP_FUNCTIONS} functions by own time",
        "",
        *_top_functions(ours.stats, ours.calls),
        "",
    ]
    return "\n".join(lines)


def profile_row(row: Row, config: BenchConfig, out: Path, machine: str) -> Path:
    """Profile ``row`` and the floor of its model and batch; write ``out / profile_<row id>.md``."""
    floor_row = replace(row, layer=LAST, implementation=FLOOR, method=FORWARD)
    with tempfile.TemporaryDirectory(prefix="onnxcam-profile-") as folder:
        ours = profile_one(row, config, Path(folder) / "row")
        floor = profile_one(floor_row, config, Path(folder) / "floor")
    return write_text_atomically(out / profile_file(row), render_profile(row, ours, floor, config, machine))


def missed_rows(rows: pd.DataFrame, skipped: list[dict[str, str]]) -> list[Row]:
    """The rows of the missed CPU timing goals of a run, each once."""
    checks = goal_checks(rows, skipped, goal_model(rows))
    return list(dict.fromkeys(check.row for check in checks if check.wants_profile))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="the run's pytest-benchmark JSON")
    parser.add_argument("--row", action="append", default=[], help="a row id to profile (default: the missed goals' rows)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the profiles (default: the JSON's)")
    args = parser.parse_args(argv)
    document, rows, skipped = load_run(args.json)
    targets = [Row.from_id(row_id) for row_id in args.row] or missed_rows(rows, skipped)
    if not targets:
        print("no missed CPU timing goal: nothing to profile")
    config = BenchConfig.from_env()
    machine = machine_name(document["machine_info"], "cpu")
    for row in targets:
        print(profile_row(row, config, args.out or args.json.parent, machine), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
