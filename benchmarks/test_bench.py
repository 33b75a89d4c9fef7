"""The benchmark rows (see benchmarks/plan.py for what runs, docs/benchmarks.md for how to read it).

Per row: pause (idle worker threads stop spinning), set up (session or CAM object, own copy of
the weights), one warm-up call, then ``timed_rounds`` calls timed by pytest-benchmark; a row that
runs for minutes (``Row.runs_for_minutes``) gets one timed call and no warm-up. Before each timed
call the floor (same model, batch and device) runs once, timed apart (``floor_ms``): the row's
``ratio_to_floor`` compares calls made in the same minutes, on the same noisy machine, not two
rows timed minutes apart. The output is checked to be maps of the right shape in [0, 1], so a row
that silently computes nothing cannot be timed, and compared with the maps of the rows named by
``map_references`` (same batch).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.implementations import RowUnavailable, cuda_unavailable_reason, make_runner, onnx_file
from benchmarks.measure import PeakMemory, input_batch, map_agreement, timed_rounds
from benchmarks.plan import FLOOR, FORWARD, LAST, BenchConfig, Row, map_references, plan

ROWS = plan(BenchConfig.from_env())
_maps: dict[Row, np.ndarray] = {}
"""The last output of every row that another row's maps are compared with."""
_referenced = {reference for row in ROWS for reference in map_references(row).values()}


def check_output(row: Row, output: np.ndarray, batch: int, size: int) -> None:
    output = np.asarray(output)
    if row.implementation == FLOOR:
        assert output.shape[0] == batch and output.ndim == 2, output.shape
        return
    assert output.shape == (batch, size, size), output.shape
    assert np.isfinite(output).all() and output.min() >= 0 and output.max() <= 1 + 1e-6


def agreement_columns(row: Row, maps: np.ndarray) -> dict[str, float]:
    """``cosine_to_<name>`` and ``max_abs_diff_to_<name>`` for each reference row that ran."""
    columns = {}
    for name, reference in map_references(row).items():
        if reference in _maps:
            for measure, value in map_agreement(maps, _maps[reference]).items():
                columns[f"{measure}_to_{name}"] = value
    return columns


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_row(row: Row, benchmark, bench_config: BenchConfig, bench_model) -> None:
    if row.device == "cuda" and (reason := cuda_unavailable_reason()):
        pytest.skip(f"CUDA row: {reason}")
    model = bench_model(row.model)
    batch = input_batch(row.batch, model.preprocessing)
    try:
        onnx_file(row, model)  # exported on first use: not part of the row's memory
    except RowUnavailable as exc:
        pytest.skip(str(exc))
    interleaved_floor = None
    if row.implementation != FLOOR:
        # Made and warmed before the row's memory is measured: its arena is allocated by then.
        interleaved_floor = make_runner(replace(row, layer=LAST, implementation=FLOOR, method=FORWARD), model, bench_config.threads)
        interleaved_floor(batch)
    floor_seconds: list[float] = []

    def floor_call() -> tuple[tuple[np.ndarray], dict]:
        if interleaved_floor is not None:
            started = time.perf_counter()
            interleaved_floor(batch)
            floor_seconds.append(time.perf_counter() - started)
        return (batch,), {}

    time.sleep(bench_config.pause_s)
    memory = PeakMemory()
    memory.start()
    try:
        runner = make_runner(row, model, bench_config.threads)
    except RowUnavailable as exc:
        pytest.skip(str(exc))
    if bench_config.warmup and not row.runs_for_minutes:
        started = time.perf_counter()
        check_output(row, runner(batch), row.batch, model.input_size)
        warm_call_s = time.perf_counter() - started
        rounds = timed_rounds(warm_call_s, bench_config.round_seconds, bench_config.min_rounds, bench_config.max_rounds)
    else:
        warm_call_s, rounds = None, 1 if row.runs_for_minutes else bench_config.min_rounds
    benchmark.extra_info.update(
        model=row.model,
        batch=row.batch,
        layer=model.layers[row.layer],
        layer_role=row.layer,
        implementation=row.implementation,
        method=row.method,
        device=row.device,
        threads=bench_config.threads,
        input_size=model.input_size,
        warmup_s=warm_call_s,
    )
    output = benchmark.pedantic(runner, setup=floor_call, rounds=rounds, iterations=1, warmup_rounds=0)
    check_output(row, output, row.batch, model.input_size)
    if row in _referenced:
        _maps[row] = np.asarray(output)
    # Other processes on the machine skew a row; the 1-minute load average lets a reader see it.
    benchmark.extra_info.update(
        peak_rss_mb=memory.added_mb(),
        load_1min=os.getloadavg()[0],
        floor_ms=statistics.median(floor_seconds) * 1e3 if floor_seconds else None,
        **agreement_columns(row, np.asarray(output)),
    )
