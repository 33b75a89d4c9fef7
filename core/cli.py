"""The ``onnxcam`` command line: each layer registers its own subcommands.

A layer's ``cli`` module exposes ``register(subparsers)``, which adds its commands and sets
``func`` on each; registering must stay cheap (no torch import) so that ``onnxcam --help`` and the
runtime commands work on a torch-free install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from onnxcam import __version__

LAYER_CLIS = ("onnxcam.export.cli", "onnxcam.runtime.cli", "onnxcam.eval.cli", "onnxcam.demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnxcam", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"onnxcam {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in LAYER_CLIS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"onnxcam {args.command}: error: {exc}", file=sys.stderr)
        return 2
