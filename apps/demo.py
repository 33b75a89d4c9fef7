"""``onnxcam demo`` (``make demo``): EfficientNet-Lite0 with its real ImageNet weights, exported
CAM-ready, explained on five photos that ship with scikit-image, boxes scored against
hand-labelled ground truth. Writes ``index.html`` and ``summary.md``."""

from __future__ import annotations

import argparse
import html
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxcam.apps.drawing import PREDICTED_COLOUR, TRUTH_COLOUR, draw_box
from onnxcam.atomic_write import write_text_atomically

ARCH = "efficientnet_lite0"
VARIANTS = (("cam", "relu"), ("cam", "abs"), ("gradcam", "relu"), ("gradcam", "abs"))
BOX_THRESHOLD = 0.15  # of the map's maximum, the Grad-CAM paper's rule


@dataclass(frozen=True)
class PhotoResult:
    file: str
    top1: int
    probability: float
    correct: bool
    ious: dict[tuple[str, str], float]


def export_demo_model(path: Path) -> Path:
    import torch

    from onnxcam.export import export_cam_model
    from onnxcam.export.zoo import build_model, zoo_entry

    entry = zoo_entry(ARCH)
    return export_cam_model(
        build_model(ARCH),
        torch.zeros(1, 3, *entry.preprocessing.input_size),
        [entry.last_layer],
        path,
        preprocessing=entry.preprocessing,
        arch=ARCH,
    )


def explain_photo(session, record: dict, image: np.ndarray, out: Path) -> PhotoResult:
    from onnxcam.eval import box_from_heatmap, box_iou
    from onnxcam.runtime.image_io import heatmap_overlay, write_png

    truth_boxes = np.array([obj["box"] for obj in record["objects"]])
    accepted = {c for obj in record["objects"] for c in obj["imagenet_classes"]}
    stem = Path(record["file"]).stem
    ious = {}
    for method, weighting in VARIANTS:
        result = session.explain([image], method=method, weighting=weighting)
        heatmap = result.maps[0]
        box = box_from_heatmap(heatmap, BOX_THRESHOLD)
        ious[method, weighting] = float(box_iou(box[None], truth_boxes).max())
        picture = heatmap_overlay(image, heatmap)
        for truth in truth_boxes:
            picture = draw_box(picture, truth, TRUTH_COLOUR)
        write_png(out / f"{stem}.{method}.{weighting}.png", draw_box(picture, box, PREDICTED_COLOUR))
    logits = result.logits[0].astype(np.float64)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    top1 = int(result.class_index[0])
    return PhotoResult(record["file"], top1, float(probabilities[top1]), top1 in accepted, ious)


def summary_markdown(results: list[PhotoResult], seconds: float) -> str:
    header = "| photo | top-1 class | p | correct | " + " | ".join(
        f"{m} {w} IoU" for m, w in VARIANTS
    ) + " |"
    lines = [
        "# onnxcam demo: EfficientNet-Lite0 (ImageNet weights) on scikit-image photos",
        "",
        f"Box: largest connected component of the map >= {BOX_THRESHOLD:.0%} of its maximum; "
        "IoU against the best-matching hand-labelled box (inclusive pixel coordinates).",
        "",
        header,
        "|" + "---|" * (4 + len(VARIANTS)),
    ]
    for r in results:
        cells = " | ".join(f"{r.ious[v]:.3f}" for v in VARIANTS)
        lines.append(f"| {r.file} | {r.top1} | {r.probability:.2f} | {'yes' if r.correct else 'no'} | {cells} |")
    means = " | ".join(f"{np.mean([r.ious[v] for r in results]):.3f}" for v in VARIANTS)
    lines += [f"| **mean** | | | | {means} |", "", f"Run time: {seconds:.1f} s."]
    return "\n".join(lines) + "\n"


def index_html(results: list[PhotoResult]) -> str:
    rows = []
    for r in results:
        stem = Path(r.file).stem
        cells = "".join(
            f'<td><img src="{stem}.{m}.{w}.png" width="320"><br>{m} / {w}: IoU {r.ious[m, w]:.3f}</td>'
            for m, w in VARIANTS
        )
        verdict = "correct" if r.correct else "wrong"
        rows.append(
            f"<tr><th>{html.escape(r.file)}<br>class {r.top1} (p={r.probability:.2f}, {verdict})</th>{cells}</tr>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>onnxcam demo</title>"
        "<style>body{font-family:sans-serif} td,th{padding:6px;text-align:center;vertical-align:top}</style>"
        "</head><body><h1>onnxcam demo: EfficientNet-Lite0 on scikit-image photos</h1>"
        "<p>Red: box from the map (largest component at 15% of max). Green: ground truth.</p>"
        f"<table>{''.join(rows)}</table></body></html>\n"
    )


def run_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from onnxcam.eval.datasets.demo_photos import demo_photos, skimage_data_dir
    from onnxcam.runtime import CamSession
    from onnxcam.runtime.image_io import read_rgb_image

    started = time.perf_counter()
    out = Path(args.out)
    model_path = export_demo_model(out / f"{ARCH}.cam.onnx")
    session = CamSession(model_path)
    data_dir = skimage_data_dir()
    records = demo_photos()["images"]
    results = [
        explain_photo(session, record, read_rgb_image(data_dir / record["file"]), out)
        for record in tqdm(records, desc="explaining photos", unit="photo")
    ]
    summary = summary_markdown(results, time.perf_counter() - started)
    write_text_atomically(out / "summary.md", summary)
    write_text_atomically(out / "index.html", index_html(results))
    print(summary)
    print(f"open {out / 'index.html'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="EfficientNet-Lite0 CAM and Grad-CAM on five real photos, with boxes and IoU",
        description=__doc__,
    )
    demo.add_argument("--out", default="reports/demo", help="output folder (default: reports/demo)")
    demo.set_defaults(func=run_demo)
