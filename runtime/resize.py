"""Bilinear resizing in plain numpy, so the runtime needs no image library.

Resizing is separable: interpolate along rows, then along columns. Each output sample blends its
two nearest input samples (``bilinear_taps``), with the half-pixel convention of
``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`` and OpenCV's
``INTER_LINEAR`` (no antialiasing). Each axis is one product with a cached (out, in) matrix of
those weights (``bilinear_matrix``): one pass writing the output, where gathering both taps and
blending them made five full-size temporaries (measured on a 7x7 -> 224x224 map: the maps' resize
and normalisation were most of Grad-CAM's extra millisecond over the forward on small models).
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


@lru_cache(maxsize=64)
def bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out_size, in_size) float32, read-only: row i weighs the two taps of output sample i
    (``bilinear_taps``), so ``matrix @ samples`` resizes along that axis."""
    low, high, frac = bilinear_taps(out_size, in_size)
    matrix = np.zeros((out_size, in_size), dtype=np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    matrix.flags.writeable = False
    return matrix


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a stack of maps. maps: (N, h, w) -> (N, H, W) float32, size = (H, W)."""
    maps = maps.astype(np.float32, copy=False)
    return bilinear_matrix(size[0], maps.shape[1]) @ maps @ bilinear_matrix(size[1], maps.shape[2]).T


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one image. image: (h, w, C) -> (H, W, C) float32, size = (H, W)."""
    image = image.astype(np.float32, copy=False)
    height, width = image.shape[:2]
    rows = (bilinear_matrix(size[0], height) @ image.reshape(height, -1)).reshape(size[0], width, -1)
    # (W, w) @ (H, w, C) -> (H, W, C): the column matrix applied to each output row.
    return bilinear_matrix(size[1], width) @ rows
