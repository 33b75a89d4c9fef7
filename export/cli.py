"""``onnxcam export`` and ``onnxcam augment``. torch is imported only when a command runs."""

from __future__ import annotations

import argparse


def _layer_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name for value in values for name in value.split(",") if name]


def run_export(args: argparse.Namespace) -> int:
    import torch

    from onnxcam.export import export_cam_model
    from onnxcam.export.zoo import build_model, zoo_entry

    entry = zoo_entry(args.arch)
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
    )
    print(f"wrote {path} (layers: {', '.join(layers)})")
    return 0


def run_augment(args: argparse.Namespace) -> int:
    from onnxcam.export.augment import augment_classifier

    layers = _layer_list(args.layer)
    augment_classifier(args.model, layers, args.out, logits=args.logits)
    print(f"wrote {args.out} (layers: {', '.join(layers)})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export",
        help="export a zoo architecture as a CAM-ready ONNX model",
        description="Export a zoo architecture (random init unless it ships weights or --weights "
        "is given) with activations and gradients of the target layer(s) as extra outputs.",
    )
    export.add_argument("--arch", required=True, help="zoo architecture, e.g. resnet50")
    export.add_argument(
        "--layer",
        action="append",
        help="target module name(s), repeatable or comma-separated (default: the last conv block)",
    )
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--weights", help="a state-dict .pth file with torchvision-style keys")
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
    augment.set_defaults(func=run_augment)
