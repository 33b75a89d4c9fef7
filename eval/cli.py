"""``onnxcam score``: localization metrics for heatmaps made by any library."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from onnxcam.eval.datasets.wsol_metadata import read_wsol_metadata
from onnxcam.eval.scoring import PROTOCOLS, score_boxes, score_masks

SCORE_HELP = """\
Score 2-D heatmaps against WSOL-eval metadata and write OUT/metrics.json (numbers in percent).
MAPS.npz holds one map per image, keyed by image id; DIR holds image_ids.txt, class_labels.txt,
image_sizes.txt (id,w,h) and localization.txt: boxes (id,x0,y0,x1,y1, inclusive) give MaxBoxAcc
and MaxBoxAccV2 with their curves and best thresholds; masks (id,mask,ignore) give PxAP."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``score`` command to the ``onnxcam`` command line."""
    parser = subparsers.add_parser(
        "score", help="localization metrics (MaxBoxAcc, MaxBoxAccV2, PxAP) for saved heatmaps",
        description=SCORE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--maps", required=True, type=Path, metavar="MAPS.npz", help="one 2-D map per image id")
    parser.add_argument(
        "--metadata", required=True, type=Path, metavar="DIR", help="a WSOL-eval metadata split folder"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for metrics.json")
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="wsol",
        help="wsol: maps resized to 224x224 and the WSOL code's rules (default); native: maps at image size",
    )
    parser.add_argument("--step", type=float, default=0.001, help="threshold sweep step (default 0.001)")
    parser.add_argument(
        "--mask-root", type=Path, metavar="DIR", help="root of the mask paths of a mask layout (default: DIR)"
    )
    parser.set_defaults(func=run_score)


def _json_ready(value: object) -> object:
    """Replace non-finite floats by ``None`` so the file is strict JSON."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_score(args: argparse.Namespace) -> int:
    """Run ``onnxcam score``; returns the exit code."""
    if not args.maps.is_file():
        raise FileNotFoundError(f"maps file {args.maps} not found")
    metadata = read_wsol_metadata(args.metadata)
    with np.load(args.maps, allow_pickle=False) as archive:
        maps = {key: archive[key] for key in archive.files}
    if metadata.boxes:
        scores = score_boxes(maps, metadata, args.protocol, args.step)
        headline = ("MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU50", "MaxBoxAccV2_IoU70")
    elif metadata.mask_paths:
        scores = score_masks(maps, metadata, args.mask_root or args.metadata, args.protocol, args.step)
        headline = ("PxAP",)
    else:
        raise ValueError(f"{args.metadata} has no localization.txt with boxes or masks to score against")
    document = {"protocol": args.protocol, "step": args.step, "n_images": len(metadata.image_ids), **scores}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "metrics.json"
    path.write_text(json.dumps(_json_ready(document), indent=1) + "\n", encoding="utf-8")
    summary = "  ".join(f"{name} {scores[name]:.2f}" for name in headline)
    print(f"{summary}  ({len(metadata.image_ids)} images) -> {path}")
    return 0
