"""``onnxcam export``, ``augment``, ``train-synthetic``, ``export-synthetic``, ``quantize`` and ``mobile``.
torch is imported only when a command that needs it runs (``quantize`` and ``mobile`` never do)."""

from __future__ import annotations

import argparse
import sys


# onnxcam.export.zoo.ARCHITECTURES, named here so that registering the commands imports no torch;
# a test checks the two agree.
ZOO_ARCHITECTURES = (
    "convnext_tiny", "densenet121", "efficientnet_lite0", "mobilenet_v2", "mobilenet_v3_large",
    "resnet18", "resnet50", "vgg16", "vit_tiny",
)

INPUT_GRADIENTS_HELP = (
    "add dy/dinput for backward rules plain, guided, deconvnet (comma-separated): needed by saliency, "
    "guided-backprop, deconvnet, guided-gradcam; the file then computes them on every call"
)


def _layer_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name for value in values for name in value.split(",") if name]


def run_export(args: argparse.Namespace) -> int:
    import torch

    from onnxcam.export import export_cam_model
    from onnxcam.export.fused_heatmaps import parse_fused
    from onnxcam.export.zoo import build_model, zoo_entry

    entry = zoo_entry(args.arch)
    if args.weights is None and not entry.pretrained:
        torch.manual_seed(args.seed)
        print(
            f"note: {args.arch} gets random weights (seed {args.seed}): its predictions and maps mean "
            "nothing; pass --weights CHECKPOINT for a trained model",
            file=sys.stderr,
        )
    model = build_model(args.arch, weights=args.weights)
    layers = _layer_list(args.layer) or [entry.last_layer]
    height, width = entry.preprocessing.input_size
    path = export_cam_model(
        model,
        torch.zeros(1, 3, height, width),
        layers,
        args.out,
        preprocessing=entry.preprocessing,
        class_labels=entry.class_labels,
        arch=args.arch,
        reshape=entry.reshape,
        fused=parse_fused(args.fused or ""),
        input_gradients=_layer_list(args.input_gradients) or (),
    )
    print(f"wrote {path} (layers: {', '.join(layers)})")
    return 0


def run_augment(args: argparse.Namespace) -> int:
    from onnxcam.export.augment import TokenGrid, augment_classifier

    layers = _layer_list(args.layer)
    # tokens_to_grid, the only named reshape: prefix tokens dropped, square grid.
    reshape = TokenGrid(prefix_tokens=args.prefix_tokens) if args.reshape else None
    augment_classifier(args.model, layers, args.out, logits=args.logits, reshape=reshape)
    print(f"wrote {args.out} (layers: {', '.join(layers)})")
    return 0


def run_train_synthetic(args: argparse.Namespace) -> int:
    import shlex
    import sys

    import torch

    from onnxcam.export.synthetic_models import export_synthetic_model
    from onnxcam.apps.synthetic_training import TrainingConfig, save_training_result, train_synthetic_model

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainingConfig.for_arch(
        args.arch, epochs=args.epochs, images_per_epoch=args.images_per_epoch,
        batch_size=args.batch_size, learning_rate=args.lr, image_size=args.image_size,
        seed=args.seed, test_images=args.test_images,
    )
    result = train_synthetic_model(config, progress=not args.quiet)
    command = "onnxcam " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    path = save_training_result(result, args.out, command=command)
    print(
        f"wrote {path} and {path.with_suffix('.json')}: test accuracy {result.test_accuracy:.2f}% on "
        f"{config.test_images} held-out images, trained in {result.train_seconds:.0f} s"
    )
    if args.export:
        print(f"wrote {export_synthetic_model(path, args.export)}")
    return 0


def run_export_synthetic(args: argparse.Namespace) -> int:
    from onnxcam.export.synthetic_models import export_synthetic_model

    input_gradients = _layer_list(args.input_gradients) or ()
    print(f"wrote {export_synthetic_model(args.checkpoint, args.out, input_gradients)}")
    return 0


def run_quantize(args: argparse.Namespace) -> int:
    import os

    if args.fp16:
        from onnxcam.export.precision import convert_to_fp16

        path = convert_to_fp16(args.model, args.out)
        detail = "fp16, float32 inputs/outputs"
    else:
        from onnxcam.export.quantize import calibration_images, quantize_cam_model
        from onnxcam.runtime.image_io import read_rgb_image

        if not args.calibration:
            raise ValueError("--calibration IMAGES is needed for int8 (or pass --fp16)")
        files = calibration_images(args.calibration if len(args.calibration) > 1 else args.calibration[0])
        images = [read_rgb_image(file) for file in files]
        path = quantize_cam_model(
            args.model, images, args.out, include_backward=args.include_backward, per_channel=not args.per_tensor
        )
        detail = f"int8, calibrated on {len(images)} images"
    before, after = os.path.getsize(args.model), os.path.getsize(path)
    print(f"wrote {path} ({detail}): {after / 1e6:.1f} MB, {before / after:.1f}x smaller than {args.model}")
    return 0


def run_mobile(args: argparse.Namespace) -> int:
    from onnxcam.export.mobile import export_ort_format, provider_support_markdown

    written = export_ort_format(args.model, args.out_dir)
    print(f"wrote {written.ort_model} and {written.required_operators}")
    print(provider_support_markdown(args.model), end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export",
        help="export a zoo architecture as a CAM-ready ONNX model",
        description="Export a zoo architecture (random init unless it ships weights or --weights "
        "is given) with activations and gradients of the target layer(s) as extra outputs.",
    )
    export.add_argument(
        "--arch", required=True, choices=ZOO_ARCHITECTURES, metavar="ARCH",
        help=f"zoo architecture: {', '.join(ZOO_ARCHITECTURES)} (ImageNet-1k classifiers; only "
        "efficientnet_lite0 ships trained weights)",
    )
    export.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights when there are no trained ones (default 0)"
    )
    export.add_argument(
        "--layer",
        action="append",
        help="target module name(s), repeatable or comma-separated (default: the last conv block)",
    )
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--weights", help="a state-dict .pth file with torchvision-style keys")
    export.add_argument(
        "--fused",
        help="heatmaps to compute in the graph for the first layer, method:weighting pairs, "
        "e.g. gradcam:relu,gradcam:abs (outputs heatmap/<method>/<weighting>)",
    )
    export.add_argument(
        "--input-gradients",
        action="append",
        help=INPUT_GRADIENTS_HELP,
    )
    export.set_defaults(func=run_export)

    augment = subparsers.add_parser(
        "augment",
        help="make an existing ONNX classifier CAM-ready, without torch",
        description="Add class_index, activations and gradients to an ONNX classifier by "
        "differentiating its graph from the logits back to the named tensor(s).",
    )
    augment.add_argument("model", help="the ONNX classifier")
    augment.add_argument("--layer", action="append", required=True, help="tensor name(s)")
    augment.add_argument("--out", required=True, help="the CAM-ready .onnx file to write")
    augment.add_argument("--logits", help="the logits output (default: the first output)")
    augment.add_argument(
        "--reshape",
        choices=("tokens_to_grid",),
        help="turn token layers (N, T, C) into (N, C, h, w) grids, as export's reshape= "
        "(tokens_to_grid: drop the prefix tokens, square grid of the rest)",
    )
    augment.add_argument(
        "--prefix-tokens", type=int, default=1,
        help="with --reshape: leading tokens that are not patches (class, distillation, registers)",
    )
    augment.set_defaults(func=run_augment)

    train = subparsers.add_parser(
        "train-synthetic",
        help="train a small model on the synthetic localization set (CPU, minutes)",
        description="Train synthetic_resnet (GAP + linear head: CAM applies) or synthetic_vgg "
        "(flatten + FC head: gradient methods only) on freshly generated synthetic images; write the "
        "checkpoint (.pt) and its record (.json, with the held-out test accuracy).",
    )
    train.add_argument("--arch", required=True, choices=("synthetic_resnet", "synthetic_vgg"))
    train.add_argument("--out", required=True, help="the checkpoint .pt to write")
    # Defaults: the architecture's recipe (synthetic_models.SYNTHETIC_ARCHITECTURES).
    train.add_argument("--epochs", type=int, help="default: 5 (synthetic_resnet), 4 (synthetic_vgg)")
    train.add_argument(
        "--images-per-epoch", type=int, help="fresh images per epoch; default: 4000 (resnet), 3500 (vgg)"
    )
    train.add_argument("--batch-size", type=int, help="default: 32 (resnet), 64 (vgg)")
    train.add_argument("--lr", type=float, help="peak one-cycle learning rate; default: 4e-3 (resnet), 3e-3 (vgg)")
    train.add_argument("--image-size", type=int, default=96, help="a multiple of 16")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--test-images", type=int, default=2000, help="held-out images for the test accuracy")
    train.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    train.add_argument("--export", metavar="ONNX", help="also export the CAM-ready model here")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=run_train_synthetic)

    export_synthetic = subparsers.add_parser(
        "export-synthetic",
        help="export a train-synthetic checkpoint as a CAM-ready ONNX model",
        description="Export a checkpoint written by train-synthetic at its target layer.",
    )
    export_synthetic.add_argument("checkpoint", help="the .pt checkpoint")
    export_synthetic.add_argument("--out", required=True, help="the .onnx file to write")
    export_synthetic.add_argument(
        "--input-gradients",
        action="append",
        help=INPUT_GRADIENTS_HELP,
    )
    export_synthetic.set_defaults(func=run_export_synthetic)

    quantize = subparsers.add_parser(
        "quantize",
        help="int8 (static QDQ, calibrated on images) or fp16 copy of a CAM-ready model",
        description="Quantize the forward pass to int8 with activation ranges calibrated on sample "
        "images, keeping the gradient subgraph in float32 unless --include-backward; or, with "
        "--fp16, convert to float16 for CUDA. Inputs and outputs keep the contract's float32.",
    )
    quantize.add_argument("model", help="the CAM-ready .onnx file (fp32)")
    quantize.add_argument("--out", required=True, help="the .onnx file to write")
    quantize.add_argument(
        "--calibration", nargs="+", metavar="IMAGES",
        help="a folder of images or image files, a few dozen representative photos",
    )
    quantize.add_argument("--include-backward", action="store_true", help="quantize the gradient subgraph too")
    quantize.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    quantize.add_argument("--fp16", action="store_true", help="convert to float16 instead of int8")
    quantize.set_defaults(func=run_quantize)

    mobile = subparsers.add_parser(
        "mobile",
        help="ORT-format model, required_operators.config and an NNAPI/CoreML support report",
        description="Convert a CAM-ready model to ORT format for ONNX Runtime Mobile, write the "
        "operator list for a reduced-size build, and print which mobile execution providers "
        "could run how much of the graph.",
    )
    mobile.add_argument("model", help="the CAM-ready .onnx file")
    mobile.add_argument("--out-dir", required=True, help="folder for <stem>.ort and <stem>.required_operators.config")
    mobile.set_defaults(func=run_mobile)
