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
# onnxcam.eval.chunk_metrics.METRIC_GROUPS, likewise (tests/eval/test_eval_metrics.py checks the two agree).
METRIC_GROUPS = ("localization", "faithfulness", "road", "sanity")

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
abs-weights, on the synthetic held-out set, the demo photos or an annotated folder:

  --dataset wsol --metadata DIR --image-root DIR          (WSOL-eval metadata: boxes or masks)
  --dataset imagenet --annotations DIR --image-root DIR --synsets FILE   (ILSVRC val XML)
  --dataset cub --root DIR [--split train|test|all]       (CUB_200_2011's own files)
  --dataset voc --root DIR --classes FILE                 (Annotations/ + JPEGImages/)
  --dataset coco --annotations FILE --image-root DIR      (instances JSON)

--class-map FILE (dataset_label,model_class_index per line) maps labels that are not the model's
class indices; an image with objects of several classes is evaluated once per class. Per-image
results are written as
they are computed under OUT/runs/<set>/<model>/ and a rerun resumes where it stopped, on either
engine (--engine ray: a Ray cluster, docs/evaluation_at_scale.md); then OUT gets
metrics.csv, diagnostics.csv, report.md and report.html with bootstrap 95% intervals."""


def register_eval(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` command."""
    parser = subparsers.add_parser(
        "eval", help="localization of every CAM method and weighting, with a report",
        description=EVAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models", nargs="*", type=Path, metavar="MODEL.onnx", help="CAM-ready models")
    add_dataset_options(parser)
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
        "--metrics", default=",".join(METRIC_GROUPS), metavar="GROUPS",
        help="map metrics besides the boxes, comma-separated: localization (pointing game, energy, rank "
        "accuracy, pixel AUC, sparseness), faithfulness (Average Drop, Increase in Confidence, deletion, "
        "insertion), road (ROAD combined), sanity (cascading randomization and random logit, per model); "
        "'none' for boxes only (default: all)",
    )
    parser.add_argument(
        "--metrics-budget", type=float, metavar="S",
        help="seconds per method and model for each of faithfulness and road (default: --method-budget); "
        "past it they run on a prefix of the method's images",
    )
    parser.add_argument(
        "--workers", type=int, help="worker processes that explain and score (default: one per core; 0: none)"
    )
    parser.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="where the (method, chunk) tasks run: worker processes here (default) or a Ray cluster",
    )
    parser.add_argument(
        "--address", metavar="auto|HOST:PORT",
        help="the Ray cluster of --engine ray (default: a Ray instance started here for the run)",
    )
    parser.add_argument(
        "--skip-missing", action="store_true",
        help="leave out missing or unreadable images (listed in run.json, counted in the report) instead of stopping",
    )
    parser.add_argument(
        "--detection", type=Path, metavar="MODEL.onnx",
        help="also score this multi-label model's maps as detections (COCO AP) on the multi-object set, "
        "for the report's detection section (docs/detection.md)",
    )
    parser.add_argument(
        "--detection-images", type=int, default=200, metavar="N", help="multi-object held-out images of --detection (default 200)"
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--no-report", action="store_true", help="only compute; write the report later")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Run ``onnxcam eval``; returns the exit code."""
    from onnxcam.apps.report import write_report
    from onnxcam.eval.run import EvaluationRun

    for path in [*args.models, *([args.detection] if args.detection else [])]:
        if not path.is_file():
            raise FileNotFoundError(f"model {path} not found")
    on_disk = None if args.dataset in MODEL_SETS else eval_set_from_args(args)  # built and checked once
    engine = _engine(args)
    try:
        for path in args.models:
            data = eval_set_from_args(args, path) if on_disk is None else on_disk
            check_model_classes(data, path)
            run = EvaluationRun(
                path, data, args.out, layer=args.layer, methods=args.method, step=args.step, chunk_size=args.chunk,
                method_budget_s=args.method_budget, workers=args.workers, engine=engine,
                skip_missing=args.skip_missing, progress=not args.quiet, metrics=metric_groups(args.metrics),
                metrics_budget_s=args.metrics_budget,
            )
            if run.state.get("skipped_images"):
                print(f"{path}: {len(run.state['skipped_images'])} unreadable images left out (listed in run.json)")
            print(f"{path}: results in {run.run()}")
    finally:
        if engine is not None:
            engine.close()
    if args.detection is not None:
        from onnxcam.apps.report_detection import run_detection

        print(f"{args.detection}: detections in {run_detection(args.detection, args.out, args.detection_images)}")
    if not args.no_report:
        metrics = write_report(args.out, n_resamples=args.resamples, progress=not args.quiet)
        print(f"wrote {args.out / 'metrics.csv'} ({len(metrics)} rows), report.md, report.html")
    return 0


def metric_groups(text: str) -> tuple[str, ...]:
    """``--metrics`` as groups: comma-separated names of :data:`METRIC_GROUPS`, or ``none``."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["none"]:
        return ()
    unknown = sorted(set(names) - set(METRIC_GROUPS))
    if unknown or not names:
        raise ValueError(f"--metrics {text!r}: name some of {', '.join(METRIC_GROUPS)}, or none")
    return tuple(names)


def _engine(args: argparse.Namespace):
    """The Ray engine of ``--engine ray`` (None: the run's own local worker processes)."""
    if args.engine == "local":
        if args.address is not None:
            raise ValueError("--address names a Ray cluster: use it with --engine ray")
        return None
    from onnxcam.eval.engine_ray import RayEngine

    return RayEngine(args.address, workers=args.workers)


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


# ---- data-set options (shared with other commands: add_dataset_options + eval_set_from_args) ----

MODEL_SETS = ("synthetic", "demo-photos")
"""Sets that are built for the model (the synthetic set at its input size and class count)."""
DATASETS = (*MODEL_SETS, "wsol", "imagenet", "cub", "voc", "coco")
"""``--dataset`` choices: the on-disk ones are ``onnxcam.eval.datasets.eval_sets.BUILDERS``."""
DATASET_OPTIONS = {
    "wsol": (("metadata", "image_root"), ("mask_root", "class_map")),
    "imagenet": (("annotations", "image_root"), ("synsets", "class_map")),
    "cub": (("root",), ("split", "class_map")),
    "voc": (("root",), ("classes", "class_map")),
    "coco": (("annotations", "image_root"), ("class_map",)),
}
"""Per on-disk set: the options it requires and those it takes (its builder's arguments)."""


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--dataset`` and the options that locate an evaluation set (see :data:`DATASET_OPTIONS`)."""
    group = parser.add_argument_group("data set")
    group.add_argument("--dataset", choices=DATASETS, default="synthetic", help="evaluation set (default synthetic)")
    group.add_argument("--images", type=int, default=2000, help="synthetic held-out images (default 2000)")
    group.add_argument("--metadata", type=Path, metavar="DIR", help="wsol: a WSOL-eval metadata split folder")
    group.add_argument("--image-root", type=Path, metavar="DIR", help="wsol, imagenet, coco: folder the image paths start from")
    group.add_argument("--mask-root", type=Path, metavar="DIR", help="wsol mask split: folder of the mask paths (default: --image-root)")
    group.add_argument("--annotations", type=Path, metavar="PATH", help="imagenet: folder of XML files; coco: the JSON file")
    group.add_argument("--synsets", type=Path, metavar="FILE", help="imagenet: the model's synsets in output order (n01440764 tench, ...)")
    group.add_argument("--root", type=Path, metavar="DIR", help="cub: the CUB_200_2011 folder; voc: the folder of Annotations/, JPEGImages/")
    group.add_argument("--split", choices=("train", "test", "all"), help="cub: which images (default test)")
    group.add_argument("--classes", type=Path, metavar="FILE", help="voc: class names in model output order, one a line")
    group.add_argument(
        "--class-map", type=Path, metavar="FILE", help="dataset_label,model_class_index per line, for labels that are not model indices"
    )


def eval_set_from_args(args: argparse.Namespace, model: Path | None = None):
    """The :class:`~onnxcam.eval.evalset.EvalSet` that ``args`` name; the synthetic set needs the
    ``model`` (its input size and class count). On-disk sets have their labels checked here."""
    from onnxcam.eval.evalset import demo_photos_eval_set, synthetic_eval_set

    if args.dataset == "demo-photos":
        return demo_photos_eval_set()
    if args.dataset == "synthetic":
        if model is None:
            raise ValueError("the synthetic set is built for a model: give MODEL.onnx")
        from onnxcam.runtime import CamSession

        metadata = CamSession(model).metadata
        return synthetic_eval_set(args.images, metadata.preprocessing.input_size[0], metadata.num_classes)
    from onnxcam.eval.datasets.eval_sets import BUILDERS

    required, optional = DATASET_OPTIONS[args.dataset]
    missing = [f"--{name.replace('_', '-')}" for name in required if getattr(args, name) is None]
    if missing:
        raise ValueError(f"--dataset {args.dataset} needs {' and '.join(missing)}")
    given = {name: getattr(args, name) for name in (*required, *optional) if getattr(args, name) is not None}
    others = [
        f"--{name.replace('_', '-')}"
        for names in DATASET_OPTIONS.values() for name in (*names[0], *names[1])
        if name not in given and getattr(args, name) is not None
    ]
    if others:
        raise ValueError(f"--dataset {args.dataset} does not take {', '.join(sorted(set(others)))}")
    return BUILDERS[args.dataset](**given)


def check_model_classes(data, model: Path) -> None:
    """Stop before any work if ``data`` names classes ``model`` does not have."""
    from onnxcam.eval.datasets.eval_sets import check_class_indices
    from onnxcam.runtime import CamSession

    check_class_indices(data, CamSession(model).metadata.num_classes, str(model))
