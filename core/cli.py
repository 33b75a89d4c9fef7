"""``onnxcam.cli``: the public path of the command line, kept for ``onnxcam.cli:main``; it lives
in :mod:`onnxcam.apps.cli`."""

from onnxcam.apps.cli import build_parser, main

__all__ = ["build_parser", "main"]
