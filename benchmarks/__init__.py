"""``make bench``: onnxcam against the ONNX Runtime forward floor and the PyTorch CAM libraries.

Run from the repository root (``python -m pytest benchmarks``; ``python -m benchmarks.report``),
which puts this folder on ``sys.path`` as the ``benchmarks`` package. See docs/benchmarks.md.
"""
