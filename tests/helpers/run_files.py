"""The result arrays of an evaluation run's chunk files, for comparing runs (engines, resumes,
data-set formats): every array but the measured times."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxcam.eval.chunk_metrics import is_timing_key


def chunk_results(root: Path, pattern: str) -> dict[Path, dict[str, np.ndarray]]:
    """``{chunk file relative to root: {key: array}}`` for the ``.npz`` files ``root.glob(pattern)``."""
    results = {}
    for path in sorted(root.glob(pattern)):
        with np.load(path) as chunk:
            results[path.relative_to(root)] = {key: chunk[key] for key in chunk.files if not is_timing_key(key)}
    return results
