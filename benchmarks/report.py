"""pytest-benchmark JSON -> ``bench.csv`` and ``bench.md`` (tables, goals of issue 8, skipped rows).

    python -m benchmarks.report reports/bench/bench.json --out reports/bench
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from onnxcam.atomic_write import write_text_atomically

from benchmarks.plan import (
    CAPTUM,
    FLOOR,
    LAST,
    MIDDLE,
    ONNXCAM,
    ONNXCAM_FUSED,
    ONNXCAM_INT8,
    PEERS,
    PYTORCH_GRAD_CAM,
    SKIPPED_FILE,
    TORCHCAM,
)

CSV_COLUMNS = [
    "model",
    "batch",
    "implementation",
    "method",
    "layer",
    "median_ms",
    "images_per_s",
    "ratio_to_floor",
    "speedup_vs_fastest_peer",
    "peak_rss_mb",
    "rounds",
    "load_1min",
    "machine",
]


def machine_name(machine_info: dict, device: str) -> str:
    """'<CPU brand>, <n> cores, <t> threads' (CPU rows) or '<GPU name>' (CUDA rows)."""
    bench = machine_info.get("onnxcam_bench", {})
    if device == "cuda":
        return str(bench.get("gpu") or "CUDA device")
    cpu = machine_info.get("cpu", {})
    return f"{cpu.get('brand_raw', machine_info.get('processor') or 'CPU')}, {cpu.get('count', '?')} cores, {bench.get('threads', '?')} threads"


def implementation_label(implementation: str, device: str) -> str:
    return implementation if device == "cpu" else f"{implementation} ({device})"


def load_rows(document: dict) -> pd.DataFrame:
    """One row per benchmark, with the derived columns of :data:`CSV_COLUMNS` (plus ``device`` and
    the unlabelled ``impl``).

    ratio_to_floor = median / median of the floor (same model, batch, device);
    speedup_vs_fastest_peer = median of the fastest peer (same model, batch, layer, method,
    device) / median: above 1 is faster than every peer.
    """
    records = []
    for bench in document["benchmarks"]:
        info = bench["extra_info"]
        if "layer_role" not in info:  # another suite's benchmark (e.g. test_ablation_head.py)
            continue
        median_ms = bench["stats"]["median"] * 1e3
        records.append(
            {
                "model": info["model"],
                "batch": int(info["batch"]),
                "impl": info["implementation"],
                "implementation": implementation_label(info["implementation"], info["device"]),
                "method": info["method"],
                "layer": info["layer"],
                "role": info["layer_role"],
                "device": info["device"],
                "median_ms": median_ms,
                "images_per_s": int(info["batch"]) / median_ms * 1e3,
                "peak_rss_mb": info.get("peak_rss_mb"),
                "rounds": int(bench["stats"]["rounds"]),
                "load_1min": info.get("load_1min"),
                "machine": machine_name(document["machine_info"], info["device"]),
            }
        )
    rows = pd.DataFrame.from_records(records, columns=[*CSV_COLUMNS, "impl", "role", "device"])
    if rows.empty:
        return rows
    floors = rows[rows.impl == FLOOR].groupby(["model", "batch", "device"]).median_ms.min()
    rows["ratio_to_floor"] = [
        median / floors.get((model, batch, device), math.nan)
        for model, batch, device, median in zip(rows.model, rows.batch, rows.device, rows.median_ms)
    ]
    keys = ["model", "batch", "layer", "method", "device"]
    fastest = rows[rows.impl.isin(PEERS)].groupby(keys).median_ms.min()
    rows["speedup_vs_fastest_peer"] = [
        fastest.get(key, math.nan) / median for key, median in zip(rows[keys].itertuples(index=False), rows.median_ms)
    ]
    return rows.sort_values(["model", "device", "batch", "layer", "method", "median_ms"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class GoalCheck:
    """One measured goal of issue 8: ``measured`` against ``bound`` (``<=`` or ``>=``)."""

    row: str
    quantity: str
    measured: float
    bound: float
    at_most: bool

    @property
    def met(self) -> bool:
        return self.measured <= self.bound if self.at_most else self.measured >= self.bound


def _median(rows: pd.DataFrame, **where) -> float:
    selected = rows
    for column, value in where.items():
        selected = selected[selected[column] == value]
    return float(selected.median_ms.min()) if len(selected) else math.nan


def goal_checks(rows: pd.DataFrame, headline_model: str = "resnet50") -> list[GoalCheck]:
    """The goals table of issue 8, for the rows present (missing rows give no check)."""
    checks: list[GoalCheck] = []
    if rows.empty:
        return checks
    model_rows = rows[rows.model == headline_model]

    def add(row: str, quantity: str, numerator: float, denominator: float, bound: float, at_most: bool) -> None:
        value = numerator / denominator
        if math.isfinite(value):
            checks.append(GoalCheck(row, quantity, value, bound, at_most))

    for device in sorted(set(model_rows.device)):
        on_device = model_rows[model_rows.device == device]
        ours_rows = on_device[on_device.impl.isin([ONNXCAM, ONNXCAM_FUSED])]
        for batch in sorted(set(on_device.batch)):
            floor = _median(on_device, impl=FLOOR, batch=batch)
            for impl, role, layer, method in sorted(
                set(ours_rows[ours_rows.batch == batch][["impl", "role", "layer", "method"]].itertuples(index=False))
            ):
                max_ratio, min_speedup = _goal_bounds(method, role, batch, device)
                ours = _median(on_device, impl=impl, batch=batch, layer=layer, method=method)
                name = f"{impl} {method}, {headline_model} {layer}, batch {batch}, {device}"
                if max_ratio is not None:
                    add(name, "time / floor", ours, floor, max_ratio, True)
                if min_speedup is not None:
                    pgc = _median(on_device, impl=PYTORCH_GRAD_CAM, batch=batch, layer=layer, method=method)
                    add(name, "speed-up vs pytorch-grad-cam", pgc, ours, min_speedup, False)
                if method == "gradcam" and role == LAST and device == "cpu":
                    faster = min(_median(on_device, impl=peer, batch=batch, layer=layer, method=method) for peer in (CAPTUM, TORCHCAM))
                    add(name, "speed-up vs faster of captum, torchcam", faster, ours, 1.5, False)
            int8 = _median(on_device, impl=ONNXCAM_INT8, batch=batch, method="gradcam", role=LAST)
            add(f"{ONNXCAM_INT8} gradcam, {headline_model}, batch {batch}, {device}", "time / fp32 floor", int8, floor, 0.75, True)
    return checks


def _goal_bounds(method: str, role: str, batch: int, device: str) -> tuple[float | None, float | None]:
    """(max time / floor, min speed-up vs pytorch-grad-cam) that issue 8 sets for a row, None where
    it sets none."""
    if device == "cuda":
        return (1.1, 3.0) if (method, role, batch) == ("gradcam", LAST, 32) else (None, None)
    if method == "gradcam" and role == LAST:
        return 1.05, 4.0
    if batch != 1:
        return None, None
    if method == "gradcam" and role == MIDDLE:
        return 1.3, None
    if method in ("gradcam++", "xgradcam", "layercam") and role == LAST:
        return 1.1, 4.0
    if method == "ablationcam" and role == LAST:
        return 1.2, 50.0
    if method == "scorecam" and role == LAST:
        return None, 5.0
    return None, None


def _number(value: float, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:,.{digits}f}"


def markdown_table(frame: pd.DataFrame, columns: list[str], digits: dict[str, int]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in frame[columns].itertuples(index=False):
        cells = [
            _number(value, digits[column]) if column in digits else str(value)
            for column, value in zip(columns, record)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLE_COLUMNS = ["batch", "layer", "method", "implementation", "median_ms", "images_per_s", "ratio_to_floor", "speedup_vs_fastest_peer", "peak_rss_mb", "rounds"]
TABLE_DIGITS = {"median_ms": 1, "images_per_s": 1, "ratio_to_floor": 2, "speedup_vs_fastest_peer": 2, "peak_rss_mb": 0}


def render_markdown(document: dict, rows: pd.DataFrame, skipped: list[dict[str, str]]) -> str:
    machine_info = document["machine_info"]
    bench = machine_info.get("onnxcam_bench", {})
    versions = ", ".join(f"{name} {version}" for name, version in bench.get("versions", {}).items())
    commit = document.get("commit_info", {}).get("id") or "unknown"
    load = bench.get("load_average_at_end")
    parts = [
        "# onnxcam benchmarks",
        "",
        f"- date: {document.get('datetime', '')}",
        f"- machine: {machine_name(machine_info, 'cpu')}; python {machine_info.get('python_version', '')}",
        f"- GPU: {bench.get('gpu') or 'none'}",
        f"- versions: {versions}",
        f"- commit: {commit}{' (dirty)' if document.get('commit_info', {}).get('dirty') else ''}",
        f"- mode: {'BENCH_FULL' if bench.get('full') else 'default'}; {bench.get('pause_s')} s idle before every row "
        "(worker threads stop spinning); ONNX Runtime sessions with onnxcam's default options "
        "(ORT_ENABLE_ALL, spinning allowed) for the floor and onnxcam alike",
        f"- load average (1, 5, 15 min) at the end: {', '.join(f'{v:.1f}' for v in load) if load else 'unknown'}; "
        "per-row 1-minute load in bench.csv",
        "",
        "median_ms: median of the timed calls (one call = a preprocessed float32 batch to normalised "
        "maps at input resolution; the floor: to logits). ratio_to_floor: / the ONNX Runtime forward of "
        "the plain classifier, same batch. speedup_vs_fastest_peer: fastest of pytorch-grad-cam, "
        "torchcam, captum for the same method and layer / this row. peak_rss_mb: resident memory the "
        "row added at its peak (its own weights included).",
        "",
    ]
    checks = goal_checks(rows)
    if checks:
        parts += ["## Goals (issue 8)", "", "| row | quantity | measured | goal | met |", "|---|---|---|---|---|"]
        for check in checks:
            goal = f"{'<=' if check.at_most else '>='} {check.bound:g}"
            parts.append(f"| {check.row} | {check.quantity} | {check.measured:.2f} | {goal} | {'yes' if check.met else '**no**'} |")
        parts.append("")
    for (model, device), group in rows.groupby(["model", "device"], sort=True):
        parts += [f"## {model} ({device})", "", markdown_table(group, TABLE_COLUMNS, TABLE_DIGITS), ""]
    if skipped:
        parts += ["## Skipped rows", "", "| rows | reason |", "|---|---|"]
        for reason, count in sorted(Counter(item["reason"] for item in skipped).items()):
            parts.append(f"| {count} | {reason} |")
        parts.append("")
    return "\n".join(parts)


def write_report(json_path: Path, out: Path) -> tuple[Path, Path]:
    """Write ``bench.csv`` and ``bench.md`` into ``out`` from the pytest-benchmark JSON."""
    document = json.loads(Path(json_path).read_text())
    rows = load_rows(document)
    skipped_path = Path(json_path).parent / SKIPPED_FILE
    skipped = json.loads(skipped_path.read_text()) if skipped_path.exists() else []
    csv_path = write_text_atomically(out / "bench.csv", rows[CSV_COLUMNS].to_csv(index=False, float_format="%.4g"))
    md_path = write_text_atomically(out / "bench.md", render_markdown(document, rows, skipped))
    return csv_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("--out", type=Path, default=None, help="folder for bench.csv and bench.md (default: the JSON's)")
    args = parser.parse_args(argv)
    for path in write_report(args.json, args.out or args.json.parent):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
