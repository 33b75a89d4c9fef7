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

# The built-in targets (onnxcam.export.targets.TARGETS); a user target needs Python.
TARGET_CHOICES = ("logit", "probability", "segmentation", "detection")
TARGET_HELP = (
    "what the gradients differentiate: logit (default), probability (softmax), segmentation (a "
    "class summed over the input target_mask, for (N, K, H, W) outputs), detection (the score + IoU "
    "of the detection matching the input target_box, for (boxes, scores) outputs)"
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
    from onnxcam.export.targets import target_by_name
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
        target=target_by_name(args.target),
    )
    print(f"wrote {path} (layers: {', '.join(layers)})")
    return 0


def _floats(text: str | None, flag: str) -> tuple[float, float, float] | None:
    """``--mean 0.5,0.5,0.5`` -> (0.5, 0.5, 0.5); ``1/255`` style fractions allowed."""
    if text is None:
        return None
    try:
        values = tuple(
            float(a) / float(b) if "/" in part else float(part)
            for part in text.split(",")
            for a, _, b in [part.partition("/")]
        )
    except ValueError:
        raise ValueError(f"{flag} takes three numbers R,G,B (e.g. 0.485,0.456,0.406); got {text!r}") from None
    if len(values) != 3:
        raise ValueError(f"{flag} takes three numbers R,G,B; got {text!r}")
    return values


def _augment_preprocessing(args: argparse.Namespace, input_shape: tuple[int, ...] | None):
    """The preprocessing --mean/--std/--channel-order ask for, at the model's input size, or None
    for augment's default (ImageNet mean/std, RGB)."""
    from onnxcam.contract import Preprocessing
    from onnxcam.export.augment import model_input_size

    mean, std = _floats(args.mean, "--mean"), _floats(args.std, "--std")
    if mean is None and std is None and args.channel_order is None:
        return None
    default = Preprocessing()
    return Preprocessing(
        input_size=model_input_size(args.model, input_shape=input_shape, input_layout=args.input_layout),
        mean=mean or default.mean,
        std=std or default.std,
        channel_order=args.channel_order or "RGB",
    )


def _input_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--input-shape takes four integers, e.g. 1,224,224,3; got {text!r}") from None


def run_augment(args: argparse.Namespace) -> int:
    from onnxcam.export.augment import (
        TokenGrid,
        augment_classifier,
        candidate_layers,
        softmax_input,
    )

    input_shape = _input_shape(args.input_shape)
    if args.list_layers:
        candidates = candidate_layers(
            args.model, logits=args.logits, input_shape=input_shape, input_layout=args.input_layout
        )
        for found in candidates:
            shape = ", ".join(map(str, found.shape))
            print(f"{found.name}\t{found.op_type}\t({shape})\t{found.layout}")
        print(f"{len(candidates)} candidate layers (the usual Grad-CAM layer: the last with h, w > 1)", file=sys.stderr)
        return 0
    layers = _layer_list(args.layer)
    if not layers or not args.out:
        raise ValueError("augment needs --layer and --out (or --list-layers to see the candidates)")
    logits = args.logits
    if logits is None:
        logits = softmax_input(args.model)
        if logits is not None:
            print(
                f"note: the first output is a softmax: differentiating its input {logits!r} "
                "(pass --logits to choose another tensor)",
                file=sys.stderr,
            )
    # tokens_to_grid, the only named reshape: prefix tokens dropped, square grid.
    reshape = TokenGrid(prefix_tokens=args.prefix_tokens) if args.reshape else None
    preprocessing = _augment_preprocessing(args, input_shape)
    cam_ready = augment_classifier(
        args.model, layers, args.out, logits=logits, reshape=reshape, input_shape=input_shape,
        input_layout=args.input_layout, layout=args.layout, preprocessing=preprocessing,
        log=lambda line: print(f"note: {line}", file=sys.stderr), target=args.target,
    )
    recorded = _recorded_preprocessing(cam_ready)
    print(f"wrote {args.out} (layers: {', '.join(layers)})")
    print(
        f"preprocessing recorded: {recorded.layout} {recorded.input_size[0]}x{recorded.input_size[1]}, "
        f"{recorded.channel_order}, x = (pixel / 255 - mean) / std with mean {recorded.mean}, std {recorded.std}"
        + ("" if preprocessing else " (ImageNet defaults: pass --mean/--std/--channel-order if the model was trained otherwise)")
    )
    return 0


def _recorded_preprocessing(model):
    from onnxcam.contract import METADATA_KEY, ModelMetadata

    return ModelMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY]).preprocessing


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
        seed=args.seed, test_images=args.test_images, acol_delta=args.acol_delta, init_from=args.init_from,
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
    print(f"wrote {export_synthetic_model(args.checkpoint, args.out, input_gradients, target=args.target)}")
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
    export.add_argument("--target", choices=TARGET_CHOICES, default="logit", help=TARGET_HELP)
    export.set_defaults(func=run_export)

    augment = subparsers.add_parser(
        "augment",
        help="make an existing ONNX classifier CAM-ready, without torch",
        description="Add class_index, activations and gradients to an ONNX classifier by "
        "differentiating its graph from the logits back to the named tensor(s).",
    )
    augment.add_argument("model", help="the ONNX classifier")
    augment.add_argument(
        "--layer", action="append",
        help="tensor name(s), repeatable or comma-separated (--list-layers shows the candidates)",
    )
    augment.add_argument("--out", help="the CAM-ready .onnx file to write")
    augment.add_argument(
        "--logits",
        help="the tensor to differentiate (default: the first output, or its input when it is a Softmax)",
    )
    augment.add_argument(
        "--list-layers", action="store_true",
        help="print the candidate layer tensors (name, op, shape, layout) and exit",
    )
    augment.add_argument(
        "--input-shape", metavar="N,..",
        help="the input's shape in its own layout where the file leaves it dynamic, e.g. 1,224,224,3 "
        "(the batch entry is ignored: the batch stays dynamic)",
    )
    augment.add_argument(
        "--input-layout", choices=("auto", "nchw", "nhwc"), default="auto",
        help="the image input's layout (auto: decided from the graph, and said)",
    )
    augment.add_argument(
        "--layout", choices=("auto", "nchw", "nhwc"), default="auto",
        help="the layers' layout (auto: decided from the graph, and said); channels-last layers are "
        "written out as (N, C, h, w)",
    )
    augment.add_argument(
        "--mean", metavar="R,G,B",
        help="per-channel mean on the pixel/255 scale (default ImageNet's; 0,0,0 for 0-255 models)",
    )
    augment.add_argument(
        "--std", metavar="R,G,B",
        help="per-channel std on the pixel/255 scale (default ImageNet's; 1/255,1/255,1/255 for 0-255 models)",
    )
    augment.add_argument(
        "--channel-order", choices=("RGB", "BGR"), help="the channel order the model takes (default RGB)"
    )
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
    augment.add_argument(
        "--target", choices=TARGET_CHOICES, default="logit",
        help=TARGET_HELP + " (augment writes logit, probability and segmentation; detectors export from torch)",
    )
    augment.set_defaults(func=run_augment)

    train = subparsers.add_parser(
        "train-synthetic",
        help="train a small model on the synthetic localization set (CPU, minutes)",
        description="Train synthetic_resnet (GAP + linear head: CAM applies) or synthetic_vgg "
        "(flatten + FC head: gradient methods only) on freshly generated synthetic images; write the "
        "checkpoint (.pt) and its record (.json, with the held-out test accuracy).",
    )
    train.add_argument(
        "--arch", required=True,
        choices=(
            "synthetic_resnet", "synthetic_vgg", "synthetic_acol", "synthetic_multilabel",
            "synthetic_segmenter", "synthetic_detector",
        ),
        help="synthetic_acol: ACoL's two erasing branches (docs/detection.md); synthetic_multilabel: "
        "sigmoid + BCE on the multi-object set",
    )
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
    train.add_argument(
        "--acol-delta", type=float,
        help="synthetic_acol: erase branch B's features where branch A's normalised map is >= this (default 0.6)",
    )
    train.add_argument(
        "--init-from", metavar="CHECKPOINT",
        help="start from this checkpoint's weights of the same names and shapes (e.g. synthetic_resnet's backbone)",
    )
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
    export_synthetic.add_argument(
        "--target", choices=TARGET_CHOICES,
        help=TARGET_HELP + "; default: the architecture's own (segmentation for synthetic_segmenter, "
        "detection for synthetic_detector, else logit)",
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
