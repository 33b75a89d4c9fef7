"""``onnxcam explain``: heatmap overlays and raw maps for image files."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxcam.runtime.weighting import WEIGHTINGS


def run_explain(args: argparse.Namespace) -> int:
    from onnxcam.runtime.class_scores import class_name, softmax
    from onnxcam.runtime.image_io import heatmap_overlay, read_rgb_image, write_npy, write_png
    from onnxcam.runtime.session import CamSession

    session = CamSession(args.model, providers=args.providers)
    images = [read_rgb_image(path) for path in args.images]
    result = session.explain(
        images,
        method=args.method,
        weighting=args.weighting,
        class_index=args.class_index,
        layer=args.layer,
    )
    out = Path(args.out)
    probabilities = softmax(result.logits)
    labels = session.metadata.class_labels
    for path, image, heatmap, index, row in zip(args.images, images, result.maps, result.class_index, probabilities):
        stem = f"{Path(path).stem}.{args.method}.{args.weighting}"
        write_png(out / f"{stem}.png", heatmap_overlay(image, heatmap))
        write_npy(out / f"{stem}.npy", heatmap)
        print(f"{path}: {class_name(int(index), labels)} (p={row[index]:.3f}) -> {out / stem}.png, .npy")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from onnxcam.runtime.methods import METHODS

    explain = subparsers.add_parser(
        "explain",
        help="write heatmap overlays (PNG) and maps (.npy) for images",
        description="Explain images with a CAM-ready model: one overlay PNG and one .npy map "
        "(float32 in [0, 1], at the image's size) per image.",
    )
    explain.add_argument("model", help="a CAM-ready .onnx file")
    explain.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    explain.add_argument(
        "--method", default="gradcam", choices=sorted(METHODS), metavar="METHOD",
        help=f"how the map is made (default: gradcam): {', '.join(sorted(METHODS))}; docs/methods.md",
    )
    explain.add_argument(
        "--weighting", default="relu", choices=WEIGHTINGS,
        help="relu: the paper's positive evidence (default); abs: evidence for and against the class; "
        "abs-weights: |channel weights|; none: signed",
    )
    explain.add_argument("--class-index", type=int, help="class to explain (default: top-1)")
    explain.add_argument("--layer", help="exported layer to use (default: the first)")
    explain.add_argument("--providers", help="cpu or cuda (default: the best available)")
    explain.add_argument("--out", required=True, help="output folder")
    explain.set_defaults(func=run_explain)
