"""``onnxcam make-dataset``: the synthetic localization set written to disk in a data set's own
format (images plus annotations), a known-answer set for ``onnxcam eval --dataset FORMAT``."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

# Named here so that registering the command imports no evaluation dependency (OpenCV: the eval
# extra); a test checks each against its source.
FORMATS = ("wsol", "imagenet", "cub", "voc", "coco")
"""``onnxcam.eval.datasets.writers.FORMATS``."""
SYNTHETIC_TEST_SEED = 20_260_000
"""``onnxcam.eval.datasets.synthetic.SYNTHETIC_TEST_SEED``: the held-out split."""
MULTI_OBJECT_TEST_SEED = 20_260_100
"""``onnxcam.eval.datasets.multi_object.MULTI_OBJECT_TEST_SEED``: the multi-object held-out split."""
SYNTHETIC_CLASSES = 12
"""``len(onnxcam.eval.datasets.synthetic.CLASS_NAMES)``."""
REPORT_IMAGES = 2000
"""Images of the report's held-out split (``make report``: ``onnxcam eval --images 2000``)."""
REPORT_IMAGE_SIZE = 96
"""Input size of the committed synthetic models (``onnxcam.export.synthetic_models.IMAGE_SIZE``)."""

MAKE_DATASET_HELP = """\
Write the synthetic held-out set (by default the very images the report evaluates: seed
{seed}, {images} images of {size} px, {classes} classes) as image files plus annotations in a
data set's own format, and print the `onnxcam eval` options that read it:

  wsol      images/*.png, metadata/boxes/ and metadata/masks/ (WSOL-eval metadata), masks/*.png
  imagenet  Data/CLS-LOC/val/*.JPEG, Annotations/CLS-LOC/val/*.xml, LOC_synset_mapping.txt
  cub       CUB_200_2011's files: images/, images.txt, classes.txt, bounding_boxes.txt, ...
  voc       JPEGImages/, Annotations/ (1-based XML), ImageSets/Main/test.txt, classes.txt
  coco      images/, annotations/instances.json

--objects 1-4 writes the multi-object set instead (docs/detection.md: 1 to 4 possibly overlapping
objects per image, of one or several classes; seed {multi_seed}, the detection report's held-out
split, unless --seed is given); its formats are those that hold several objects per image:
imagenet, voc and coco."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``make-dataset`` command."""
    parser = subparsers.add_parser(
        "make-dataset", help="write the synthetic set as files in the WSOL, ImageNet, CUB, VOC or COCO format",
        description=MAKE_DATASET_HELP.format(
            seed=SYNTHETIC_TEST_SEED, multi_seed=MULTI_OBJECT_TEST_SEED, images=REPORT_IMAGES, size=REPORT_IMAGE_SIZE, classes=SYNTHETIC_CLASSES
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--format", required=True, choices=FORMATS, help="annotation format")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write (created)")
    parser.add_argument("--images", type=int, default=REPORT_IMAGES, metavar="N", help=f"images (default {REPORT_IMAGES})")
    parser.add_argument(
        "--seed", type=int,
        help=f"generator seed (default: the held-out split, {SYNTHETIC_TEST_SEED}; with --objects {MULTI_OBJECT_TEST_SEED})",
    )
    parser.add_argument(
        "--objects", type=object_range, metavar="LOW-HIGH",
        help="objects per image, e.g. 1-4: the multi-object set (default: the single-object set)",
    )
    parser.add_argument(
        "--image-size", type=int, default=REPORT_IMAGE_SIZE, metavar="PX", help=f"image side (default {REPORT_IMAGE_SIZE})"
    )
    parser.add_argument(
        "--classes", type=int, default=SYNTHETIC_CLASSES, metavar="K", help=f"classes, 2 to {SYNTHETIC_CLASSES} (default {SYNTHETIC_CLASSES})"
    )
    parser.add_argument(
        "--image-format", choices=("png", "jpeg"),
        help="image files: png (lossless) or jpeg (default: png for wsol, jpeg for the others)",
    )
    parser.set_defaults(func=run_make_dataset)


def object_range(text: str) -> tuple[int, int]:
    """``--objects``: ``"1-4"`` -> ``(1, 4)``, ``"2"`` -> ``(2, 2)``."""
    low, _, high = text.partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--objects takes LOW-HIGH such as 1-4, got {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"--objects needs 1 <= LOW <= HIGH, got {text!r}")
    return bounds


def dataset_seed(args: argparse.Namespace) -> int:
    """``--seed``, else the held-out split of the set written (single- or multi-object)."""
    if args.seed is not None:
        return args.seed
    return SYNTHETIC_TEST_SEED if args.objects is None else MULTI_OBJECT_TEST_SEED


def run_make_dataset(args: argparse.Namespace) -> int:
    """Run ``onnxcam make-dataset``; returns the exit code."""
    from onnxcam.eval.datasets.multi_object import make_multi_object_dataset
    from onnxcam.eval.datasets.synthetic import make_synthetic_dataset
    from onnxcam.eval.datasets.writers import eval_arguments, write_dataset

    if args.images < 1:
        raise ValueError(f"--images must be at least 1, got {args.images}")
    if args.objects is None:
        data = make_synthetic_dataset(args.images, dataset_seed(args), args.image_size, args.classes)
    else:
        data = make_multi_object_dataset(args.images, dataset_seed(args), args.image_size, args.classes, objects=args.objects)
    folder = write_dataset(data.objects(), args.out, args.format, args.image_format)
    print(f"wrote {len(data)} images ({args.format}) to {folder}")
    print(f"evaluate with: onnxcam eval MODEL.onnx {shlex.join(eval_arguments(args.format, folder))}")
    return 0
