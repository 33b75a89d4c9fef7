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
    "onnxcam.apps.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnxcam", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"onnxcam {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"onnxcam {args.command}: error: {exc}", file=sys.stderr)
        return 2
