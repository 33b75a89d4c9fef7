"""Bilinear resizing in plain numpy, so the runtime needs no image library.

Resizing is separable: ``out = R_h @ img @ R_w.T`` with ``R`` the (out, in) interpolation matrix.
The matrices follow the half-pixel convention of ``torch.nn.functional.interpolate(...,
mode="bilinear", align_corners=False)`` and OpenCV's ``INTER_LINEAR`` (no antialiasing).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=64)
def bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out_size, in_size) float32 matrix of bilinear weights, half-pixel centres, edges clamped."""
    centres = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    centres = np.clip(centres, 0.0, in_size - 1)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    frac = centres - low
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    matrix = matrix.astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a stack of maps. maps: (N, h, w) -> (N, H, W) float32, size = (H, W)."""
    height, width = size
    rows = bilinear_matrix(height, maps.shape[1])
    cols = bilinear_matrix(width, maps.shape[2])
    return rows @ maps.astype(np.float32, copy=False) @ cols.T


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one image. image: (h, w, C) -> (H, W, C) float32, size = (H, W)."""
    channels_first = np.moveaxis(image.astype(np.float32, copy=False), -1, 0)
    return np.moveaxis(resize_maps(channels_first, size), 0, -1)
