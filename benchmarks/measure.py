"""The batch every row gets, a row's peak memory, how many timed calls it gets, and how close its
maps are to another row's."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import re
from pathlib import Path

import numpy as np

from onnxcam.contract import Preprocessing

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None
if _LIBC is not None and not hasattr(_LIBC, "malloc_trim"):  # not glibc
    _LIBC = None


def input_batch(batch: int, preprocessing: Preprocessing) -> np.ndarray:
    """The same preprocessed batch for every row of a (model, batch): float32 ``(N, 3, S, S)``.

    Real photos, not noise: ``onnxcam demo``'s five scikit-image photos, cycled to ``batch``
    images and preprocessed for the model. Noise would flatter nothing in the timings but makes
    map comparisons (int8 vs fp32) meaningless, and the int8 model is calibrated on other photos.
    """
    from onnxcam.demo import demo_photo_images
    from onnxcam.runtime.inputs import preprocess_images

    _, photos = demo_photo_images()
    return preprocess_images([photos[i % len(photos)] for i in range(batch)], preprocessing)


def _status_mb(field: str) -> float | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


class PeakMemory:
    """Resident memory a row adds at its peak, in MiB, on Linux (None elsewhere).

    ``start()`` records the resident set and resets the kernel's high-water mark (``VmHWM``) by
    writing 5 to ``/proc/self/clear_refs``; ``added_mb()`` is the high-water mark since then minus
    that resident set. Freed memory is handed back first (``gc.collect``, glibc ``malloc_trim``),
    so that a row cannot reuse an earlier row's pages unseen; what the allocator still keeps
    makes the figure a lower bound.
    """

    def __init__(self) -> None:
        self._baseline: float | None = None

    def start(self) -> None:
        # Return the memory that earlier rows freed to the system first: otherwise the allocator
        # hands it to this row without any growth of the resident set (torch peers then read 0).
        gc.collect()
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        self._baseline = _status_mb("VmRSS")
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            self._baseline = None

    def added_mb(self) -> float | None:
        peak = _status_mb("VmHWM")
        if self._baseline is None or peak is None:
            return None
        return max(peak - self._baseline, 0.0)


def timed_rounds(warm_call_s: float, round_seconds: float, min_rounds: int, max_rounds: int) -> int:
    """Timed calls for a row whose warm-up call took ``warm_call_s``: enough to fill
    ``round_seconds``, within ``[min_rounds, max_rounds]``, and a single one for calls longer than
    ``round_seconds`` (perturbation methods of the peers run for minutes).

    >>> timed_rounds(0.05, 3.0, 3, 30), timed_rounds(1.2, 3.0, 3, 30), timed_rounds(90.0, 3.0, 3, 30)
    (30, 3, 1)
    """
    if warm_call_s > round_seconds:
        return 1
    return min(max(math.ceil(round_seconds / max(warm_call_s, 1e-9)), min_rounds), max_rounds)


def map_agreement(maps: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How close two ``(N, H, W)`` batches of maps of the same images are: the lowest per-image
    cosine and the largest absolute difference (maps in [0, 1])."""
    from helpers.torch_reference import cosine  # tests/ is on the pytest pythonpath

    maps, reference = np.asarray(maps, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return {
        "cosine": min(cosine(one, other) for one, other in zip(maps, reference)),
        "max_abs_diff": float(np.abs(maps - reference).max()),
    }
