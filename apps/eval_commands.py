"""``onnxcam score``: localization metrics for heatmaps made by any library; ``onnxcam eval``: a
resumable evaluation of CAM-ready models, every method and weighting, and the report."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from onnxcam.atomic_write import write_text_atomically

# onnxcam.eval.scoring.PROTOCOLS, named here so that registering the commands does not import the
# evaluation's dependencies (OpenCV, numba: the eval extra); a test checks the two agree.
PROTOCOLS = ("wsol", "native")

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
    register_eval(subparsers)


EVAL_HELP = """\
Evaluate CAM-ready models: every method of the runtime and the weightings relu, abs and
abs-weights, on the synthetic held-out set or the demo photos. Per-image results are written as
they are computed under OUT/runs/<set>/<model>/ and a rerun resumes where it stopped; then OUT gets
metrics.csv, diagnostics.csv, report.md and report.html with bootstrap 95% intervals."""


def register_eval(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` command."""
    parser = subparsers.add_parser(
        "eval", help="localization of every CAM method and weighting, with a report",
        description=EVAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models", nargs="*", type=Path, metavar="MODEL.onnx", help="CAM-ready models")
    parser.add_argument("--dataset", choices=("synthetic", "demo-photos"), default="synthetic")
    parser.add_argument("--images", type=int, default=2000, help="synthetic held-out images (default 2000)")
    parser.add_argument("--out", type=Path, default=Path("reports/localization"), help="output folder")
    parser.add_argument("--layer", help="exported layer (default: the first)")
    parser.add_argument("--method", action="append", help="only these methods (default: all of the runtime)")
    parser.add_argument("--step", type=float, default=0.01, help="threshold sweep step (default 0.01)")
    parser.add_argument("--chunk", type=int, default=100, help="images per result file (default 100)")
    parser.add_argument(
        "--method-budget", type=float, metavar="S",
        help="seconds a method may take per model; slower methods run on a prefix of the images",
    )
    parser.add_argument(
        "--workers", type=int, help="worker processes that explain and score (default: one per core; 0: none)"
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--no-report", action="store_true", help="only compute; write the report later")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Run ``onnxcam eval``; returns the exit code."""
    from onnxcam.apps.report import write_report
    from onnxcam.eval.evalset import demo_photos_eval_set, synthetic_eval_set
    from onnxcam.eval.run import EvaluationRun
    from onnxcam.runtime import CamSession

    for path in args.models:
        if not path.is_file():
            raise FileNotFoundError(f"model {path} not found")
        if args.dataset == "synthetic":
            metadata = CamSession(path).metadata
            data = synthetic_eval_set(args.images, metadata.preprocessing.input_size[0], metadata.num_classes)
        else:
            data = demo_photos_eval_set()
        run = EvaluationRun(
            path, data, args.out, layer=args.layer, methods=args.method, step=args.step, chunk_size=args.chunk,
            method_budget_s=args.method_budget, workers=args.workers, progress=not args.quiet,
        )
        print(f"{path}: results in {run.run()}")
    if not args.no_report:
        metrics = write_report(args.out, n_resamples=args.resamples, progress=not args.quiet)
        print(f"wrote {args.out / 'metrics.csv'} ({len(metrics)} rows), report.md, report.html")
    return 0


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
    from onnxcam.eval.datasets.wsol_metadata import read_wsol_metadata
    from onnxcam.eval.scoring import score_boxes, score_masks

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
    path = write_text_atomically(args.out / "metrics.json", json.dumps(_json_ready(document), indent=1) + "\n")
    summary = "  ".join(f"{name} {scores[name]:.2f}" for name in headline)
    print(f"{summary}  ({len(metadata.image_ids)} images) -> {path}")
    return 0
