"""Fixtures of the benchmark suite: the run's configuration, models prepared once per architecture,
and a record of skipped rows (pytest-benchmark's JSON holds only the rows that ran)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # pytest-grad-cam's progress bars, per batch of passes

import pytest
import torch

from onnxcam.atomic_write import write_text_atomically

from benchmarks.models import BenchModel, prepare_model
from benchmarks.plan import SKIPPED_FILE, BenchConfig

_skipped: list[dict[str, str]] = []


@pytest.fixture(scope="session")
def bench_config() -> BenchConfig:
    config = BenchConfig.from_env()
    torch.set_num_threads(config.threads)
    return config


@pytest.fixture(scope="session")
def bench_model(bench_config) -> Callable[[str], BenchModel]:
    """``bench_model(arch)``: the torch module and its exports, prepared on first use."""
    cache: dict[str, BenchModel] = {}

    def get(arch: str) -> BenchModel:
        if arch not in cache:
            cache.clear()  # one architecture at a time: rows are ordered by model
            cache[arch] = prepare_model(arch, bench_config.input_size, bench_config.cache)
        return cache[arch]

    return get


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("onnxcam", "onnxruntime", "onnx", "numpy", "torch", "grad-cam", "torchcam", "captum"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    bench = BenchConfig.from_env()
    machine_info["onnxcam_bench"] = {
        "versions": _versions(),
        "threads": bench.threads,
        "pause_s": bench.pause_s,
        "full": bench.full,
        "load_average_at_end": os.getloadavg(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append({"row": report.nodeid.rsplit("[", 1)[-1].rstrip("]"), "reason": reason.removeprefix("Skipped: ")})


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the skipped rows beside the pytest-benchmark JSON, for the report."""
    json_path = session.config.getoption("benchmark_json", None)
    if json_path is not None:
        write_text_atomically(json_path.parent / SKIPPED_FILE, json.dumps(_skipped, indent=1))
