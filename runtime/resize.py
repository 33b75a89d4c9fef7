"""Bilinear resizing in plain numpy, so the runtime needs no image library.

Resizing is separable: interpolate along rows, then along columns. Each output sample blends its
two nearest input samples (``bilinear_taps``), with the half-pixel convention of
``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`` and OpenCV's
``INTER_LINEAR`` (no antialiasing).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=64)
def bilinear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``out_size`` samples: the two input indices it blends and the weight of the second.

    Returns ``(low, high, frac)``, each (out_size,): ``out = in[low] * (1 - frac) + in[high] * frac``;
    half-pixel centres, clamped at the edges.
    """
    centres = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    centres = np.clip(centres, 0.0, in_size - 1)
    low = np.floor(centres).astype(np.intp)
    high = np.minimum(low + 1, in_size - 1)
    frac = (centres - low).astype(np.float32)
    return low, high, frac


def _resize_axis(array: np.ndarray, size: int, axis: int) -> np.ndarray:
    low, high, frac = bilinear_taps(size, array.shape[axis])
    shape = [1] * array.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    return np.take(array, low, axis=axis) * (1.0 - frac) + np.take(array, high, axis=axis) * frac


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a stack of maps. maps: (N, h, w) -> (N, H, W) float32, size = (H, W)."""
    maps = maps.astype(np.float32, copy=False)
    return _resize_axis(_resize_axis(maps, size[0], axis=1), size[1], axis=2)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one image. image: (h, w, C) -> (H, W, C) float32, size = (H, W)."""
    image = image.astype(np.float32, copy=False)
    return _resize_axis(_resize_axis(image, size[0], axis=0), size[1], axis=1)
