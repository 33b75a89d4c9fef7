"""The README's benchmark rows, as markdown, from a run's bench.csv (with its date and machine).

    python -m benchmarks.headline reports/bench/bench.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmarks.plan import FLOOR, HEADLINE_MODEL, ONNXCAM, ONNXCAM_INT8, PYTORCH_GRAD_CAM
from benchmarks.report import markdown_table

HEADLINE_COLUMNS = ["method", "batch", "implementation", "median_ms", "images_per_s", "ratio_to_floor", "speedup_vs_fastest_peer"]
HEADLINE_DIGITS = {"median_ms": 1, "images_per_s": 1, "ratio_to_floor": 2, "speedup_vs_fastest_peer": 2}


def headline_rows(rows: pd.DataFrame, model: str = HEADLINE_MODEL) -> pd.DataFrame:
    """CPU rows of ``model`` at its last layer: the floor and every Grad-CAM row at each batch;
    onnxcam's and pytorch-grad-cam's Ablation-CAM and Score-CAM; onnxcam's int8 Grad-CAM."""
    rows = rows[(rows.model == model) & ~rows.implementation.str.contains(r"\(")]  # CUDA rows are labelled "(cuda)"
    last_layer = rows[rows.implementation == FLOOR].layer
    rows = rows[rows.layer.isin(set(last_layer))]
    keep = rows.method.isin(["forward", "gradcam"]) | (
        rows.method.isin(["ablationcam", "scorecam"]) & rows.implementation.isin([ONNXCAM, PYTORCH_GRAD_CAM])
    )
    order = {"forward": 0, "gradcam": 1, "ablationcam": 2, "scorecam": 3}
    selected = rows[keep].assign(order=rows.method.map(order))
    return selected.sort_values(["order", "batch", "median_ms"], kind="stable").drop(columns="order")


def headline_markdown(rows: pd.DataFrame, model: str = HEADLINE_MODEL) -> str:
    """The headline table with the run's date and machine above it."""
    selected = headline_rows(rows, model)
    if selected.empty:
        raise ValueError(f"no CPU rows of {model!r} in this bench.csv")
    dates, machines = sorted(set(selected.date.astype(str))), sorted(set(selected.machine))
    lines = [
        f"{model} at {selected.layer.iloc[0]}, median of warm calls, measured {', '.join(dates)} on "
        f"{'; '.join(machines)} (`make bench`; every row and the goals: reports/bench/bench.md).",
        "",
        markdown_table(selected, HEADLINE_COLUMNS, HEADLINE_DIGITS),
    ]
    int8 = selected[selected.implementation == ONNXCAM_INT8]
    if len(int8) and pd.notna(int8.cosine_to_fp32.iloc[0]):
        lines += ["", f"int8 maps against fp32 maps, same batch: cosine {int8.cosine_to_fp32.iloc[0]:.4f}."]
    scorecam = selected[(selected.method == "scorecam") & (selected.implementation == ONNXCAM)]
    if len(scorecam) and pd.notna(scorecam.cosine_to_pytorch_grad_cam.iloc[0]):
        lines += [
            "",
            f"Score-CAM maps against pytorch-grad-cam's: cosine {scorecam.cosine_to_pytorch_grad_cam.iloc[0]:.4f}, "
            f"largest difference {scorecam.max_abs_diff_to_pytorch_grad_cam.iloc[0]:.4f}.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, nargs="?", default=Path("reports/bench/bench.csv"))
    parser.add_argument("--model", default=HEADLINE_MODEL)
    args = parser.parse_args(argv)
    print(headline_markdown(pd.read_csv(args.csv), args.model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
