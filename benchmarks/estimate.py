"""How long ``make bench`` takes on 2 idle cores, from its plan and a table of measured costs.

    python -m benchmarks.estimate              # the default plan, exports counted where not cached
    BENCH_FULL=1 python -m benchmarks.estimate
    python -m benchmarks.estimate --check reports/bench/bench.json   # estimate against a real run

A row costs its pause, its set-up (an ONNX Runtime session, or a torch module's deep copy and
hooks), its warm-up call and its timed calls (``benchmarks.measure.timed_rounds``; one call and no
warm-up for a row that runs for minutes), and the floor calls interleaved with them, exactly as
``benchmarks/test_bench.py`` spends them. A call's cost comes from :data:`COSTS`: the floor's time per model and batch, times a factor per
implementation; perturbation rows (Score-CAM, the peers' Ablation-CAM) cost one forward pass per
channel of the layer per image. Exports and the int8 copy count once per model when their files
are not in the cache. The run ends with ``benchmarks.profile`` on the rows whose goals the
estimate expects to miss. ``--check`` sets each row's estimate beside its real cost in a run
(warm-up + timed calls from the JSON) to see how far the table is off.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from benchmarks.measure import timed_rounds
from benchmarks.plan import (
    CAPTUM,
    FLOOR,
    LAST,
    MIDDLE,
    ONNXCAM,
    ONNXCAM_FUSED,
    ONNXCAM_INT8,
    ORT_IMPLEMENTATIONS,
    PYTORCH_GRAD_CAM,
    TORCHCAM,
    BenchConfig,
    Row,
    plan,
)


@dataclass(frozen=True)
class ModelCosts:
    """Idle 2-core, 2-thread costs of one architecture at 224x224, in seconds.

    forward_b1 / forward_per_image: the floor at batch 1 / per image at batch 8 and more;
    torch_per_image: a torch no-grad forward per image in batches of 16-32 (the peers'
    perturbation passes); session: creating an ONNX Runtime session of a CAM-ready file;
    torch_setup: deep copy of the module plus the CAM object; build: building the seeded module;
    export_forward_fused / export_cam: the forward + fused exports / one CAM-ready export;
    quantize: the int8 copy; channels: channels of the last and middle layers.
    """

    forward_b1: float
    forward_per_image: float
    torch_per_image: float
    session: float
    torch_setup: float
    build: float
    export_forward_fused: float
    export_cam: float
    quantize: float
    channels: dict[str, int]


COSTS = {
    "resnet50": ModelCosts(0.042, 0.040, 0.100, 0.5, 0.5, 1.5, 37.0, 22.0, 60.0, {LAST: 2048, MIDDLE: 1024}),
    "vgg16": ModelCosts(0.20, 0.19, 0.22, 5.0, 2.5, 4.0, 40.0, 24.0, 120.0, {LAST: 512, MIDDLE: 512}),
    "mobilenet_v2": ModelCosts(0.009, 0.008, 0.020, 0.2, 0.3, 0.5, 53.0, 28.0, 45.0, {LAST: 1280, MIDDLE: 64}),
    "efficientnet_lite0": ModelCosts(0.008, 0.008, 0.020, 0.2, 0.3, 1.0, 64.0, 36.0, 45.0, {LAST: 1280, MIDDLE: 112}),
    "resnet18": ModelCosts(0.018, 0.017, 0.030, 0.2, 0.3, 0.5, 25.0, 15.0, 30.0, {LAST: 512, MIDDLE: 256}),
}
"""Measured here: the resnet50 floor, pytorch-grad-cam, captum and torchcam rows on an idle machine
(docs/benchmarks.md; the peers' perturbation passes: pytorch-grad-cam's AblationCAM and ScoreCAM
took 195 s and 220 s for 2,048 passes on 2026-11-22); the other models' floors, set-ups and
exports measured under load and scaled by resnet50's floor under the same load; exports as
measured (an upper bound)."""

CALL_FACTORS = {
    (FLOOR, LAST): 1.0,
    (ONNXCAM, LAST): 1.03,
    (ONNXCAM, MIDDLE): 1.3,
    (ONNXCAM_FUSED, LAST): 1.03,
    (ONNXCAM_INT8, LAST): 0.7,
    (ONNXCAM_INT8, MIDDLE): 1.0,
    (PYTORCH_GRAD_CAM, LAST): 5.2,
    (PYTORCH_GRAD_CAM, MIDDLE): 5.5,
    (CAPTUM, LAST): 1.8,
    (CAPTUM, MIDDLE): 2.0,
    (TORCHCAM, LAST): 1.8,
    (TORCHCAM, MIDDLE): 2.0,
}
"""A call's time over the floor's (same model, batch), for the rows that are not perturbations;
onnxcam's Ablation-CAM counts as its Grad-CAM plus the head passes (x 1.2)."""
ABLATION_HEAD_FACTOR = 1.2
STARTUP_S = 15.0
"""Python start, imports of torch and the peers, pytest collection, the report."""
PROFILED_CALLS = 5
"""``benchmarks.profile``: warm-up + this many calls of a row and of its floor."""


def floor_seconds(costs: ModelCosts, batch: int) -> float:
    return costs.forward_b1 if batch == 1 else costs.forward_per_image * batch


def call_seconds(row: Row, costs: ModelCosts) -> float:
    """The estimated time of one call of ``row`` (224x224, 2 idle threads)."""
    passes = row.batch * costs.channels[row.layer]
    if row.method == "scorecam":
        per_image = costs.forward_per_image if row.implementation in ORT_IMPLEMENTATIONS else costs.torch_per_image
        return passes * per_image
    if row.method == "ablationcam":
        if row.implementation in ORT_IMPLEMENTATIONS:
            return floor_seconds(costs, row.batch) * ABLATION_HEAD_FACTOR
        return passes * costs.torch_per_image
    return floor_seconds(costs, row.batch) * CALL_FACTORS[(row.implementation, row.layer)]


def calls_seconds(row: Row, config: BenchConfig) -> float:
    """Warm-up + timed calls, as test_bench.py makes them, with the floor calls interleaved with
    a row's own (one to warm up, one before each timed call)."""
    costs = COSTS[row.model]
    call = call_seconds(row, costs)
    floor = 0.0 if row.implementation == FLOOR else floor_seconds(costs, row.batch)
    if row.runs_for_minutes:
        return call + 2 * floor
    rounds = timed_rounds(call, config.round_seconds, config.min_rounds, config.max_rounds)
    return call * (rounds + (1 if config.warmup else 0)) + floor * (rounds + 1)


def row_seconds(row: Row, config: BenchConfig) -> float:
    """Pause + set-up + :func:`calls_seconds`."""
    costs = COSTS[row.model]
    setup = costs.session if row.implementation in ORT_IMPLEMENTATIONS else costs.torch_setup
    return config.pause_s + setup + calls_seconds(row, config)


def preparation_seconds(rows: list[Row], config: BenchConfig, cached: set[tuple[str, str]]) -> dict[str, float]:
    """Seconds of building and exporting per model; ``cached``: (model, file) pairs already on
    disk, files being ``forward``, ``cam-last``, ``cam-middle``, ``int8``."""
    needed: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.device != "cpu":
            continue
        needed[row.model].add("forward")
        if row.implementation == ONNXCAM:
            needed[row.model].add(f"cam-{row.layer}")
        if row.implementation == ONNXCAM_INT8:
            needed[row.model] |= {"cam-last", "int8"}
    seconds = {}
    for model, files in needed.items():
        costs = COSTS[model]
        prices = {"forward": costs.export_forward_fused, "cam-last": costs.export_cam, "cam-middle": costs.export_cam, "int8": costs.quantize}
        seconds[model] = costs.build + sum(prices[file] for file in files if (model, file) not in cached)
    return seconds


def cached_files(config: BenchConfig, models: set[str]) -> set[tuple[str, str]]:
    """The (model, file) pairs whose export is already in ``config.cache`` under the current key."""
    from benchmarks.models import cache_folder

    names = {"forward": "cam-fused.onnx", "cam-last": "cam-last.onnx", "cam-middle": "cam-middle.onnx", "int8": "cam-last.int8.onnx"}
    found = set()
    for model in models:
        folder = cache_folder(config.cache, model, config.input_size)
        found |= {(model, file) for file, name in names.items() if (folder / name).exists()}
    return found


def estimated_medians(rows: list[Row]) -> pd.DataFrame:
    """The rows as ``benchmarks.report.load_rows`` would read them, with estimated medians (maps
    assumed to agree), for the goal checks."""
    return pd.DataFrame.from_records(
        [
            {
                "model": row.model, "batch": row.batch, "impl": row.implementation, "method": row.method,
                "role": row.layer, "device": row.device, "median_ms": call_seconds(row, COSTS[row.model]) * 1e3,
                "ratio_to_floor": call_seconds(row, COSTS[row.model]) / floor_seconds(COSTS[row.model], row.batch),
                "cosine_to_pytorch_grad_cam": 1.0, "cosine_to_fp32": 1.0,
            }
            for row in rows
            if row.device == "cpu"
        ]
    )


def expected_profiles(rows: list[Row], config: BenchConfig) -> dict[Row, float]:
    """The rows ``benchmarks.profile`` will profile if the estimate is right, with their seconds."""
    from benchmarks.report import goal_checks, goal_model

    frame = estimated_medians(rows)
    missed = dict.fromkeys(check.row for check in goal_checks(frame, [], goal_model(frame)) if check.wants_profile)
    seconds = {}
    for row in missed:
        floor = replace(row, layer=LAST, implementation=FLOOR, method="forward")
        calls = 1 if row.runs_for_minutes else 1 + PROFILED_CALLS
        costs = COSTS[row.model]
        seconds[row] = 2 * costs.session + calls * (call_seconds(row, costs) + call_seconds(floor, costs))
    return seconds


def estimate(config: BenchConfig, cached: set[tuple[str, str]]) -> tuple[pd.DataFrame, dict[str, float], dict[Row, float]]:
    """(rows with their estimated seconds, preparation seconds per model, profiles' seconds); CUDA
    rows cost nothing without a GPU."""
    rows = [row for row in plan(config) if row.device == "cpu" and row.model in COSTS]
    frame = pd.DataFrame(
        {
            "row": [row.id for row in rows],
            "call_s": [call_seconds(row, COSTS[row.model]) for row in rows],
            "calls_s": [calls_seconds(row, config) for row in rows],
            "row_s": [row_seconds(row, config) for row in rows],
        }
    )
    return frame, preparation_seconds(rows, config, cached), expected_profiles(rows, config)


def summary(frame: pd.DataFrame, preparation: dict[str, float], profiles: dict[Row, float]) -> str:
    total = STARTUP_S + frame.row_s.sum() + sum(preparation.values()) + sum(profiles.values())
    lines = [
        f"{len(frame)} CPU rows: {frame.row_s.sum() / 60:.1f} min",
        *(f"  {model}: build and exports {seconds / 60:.1f} min" for model, seconds in preparation.items()),
        *(f"  profile of {row.id} (expected miss): {seconds / 60:.1f} min" for row, seconds in profiles.items()),
        f"  start-up and report: {STARTUP_S / 60:.1f} min",
        f"total: {total / 60:.1f} min",
        "",
        "slowest rows:",
        *(f"  {record.row}: {record.row_s:.0f} s" for record in frame.nlargest(8, "row_s").itertuples()),
    ]
    return "\n".join(lines)


def check_against_run(frame: pd.DataFrame, json_path: Path) -> pd.DataFrame:
    """Each row's estimated calls beside a real run's (warm-up + timed calls; set-up is not in the
    JSON), and the ratio."""
    document = json.loads(Path(json_path).read_text())
    spent = {
        bench["name"].split("[", 1)[-1].rstrip("]"): (bench["extra_info"].get("warmup_s") or 0.0) + bench["stats"]["total"]
        for bench in document["benchmarks"]
    }
    measured = frame.assign(measured_calls_s=[spent.get(row_id, math.nan) for row_id in frame.row])
    return measured.assign(measured_over_estimate=measured.measured_calls_s / measured.calls_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", type=Path, default=None, help="a run's pytest-benchmark JSON to compare with")
    parser.add_argument("--no-cache", action="store_true", help="count every export, as on a fresh checkout")
    args = parser.parse_args(argv)
    config = BenchConfig.from_env()
    models = set(config.models) & set(COSTS)
    if unknown := sorted(set(config.models) - models):
        print(f"no costs for {', '.join(unknown)}: their rows are not counted")
    cached = set() if args.no_cache else cached_files(config, models)
    frame, preparation, profiles = estimate(config, cached)
    print(summary(frame, preparation, profiles))
    if args.check is not None:
        print()
        print(check_against_run(frame, args.check).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
