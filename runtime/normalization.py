"""Per-map min-max normalisation that never divides by zero."""

from __future__ import annotations

import warnings

import numpy as np

FLAT_TOLERANCE = 1e-7
"""A map whose value range is at most this fraction of its largest magnitude counts as flat."""


def minmax_normalize(maps: np.ndarray) -> np.ndarray:
    """Scale each map to [0, 1]; a flat (constant) map becomes all zeros, never NaN.

    maps: (N, H, W) float -> (N, H, W) float32. Non-finite values are refused upstream. Three passes
    over the maps (min, max, one scaled copy clipped in place): this runs on every map of every call.
    The copy is divided by the span, not multiplied by its reciprocal, which overflows for a span of
    denormal size; a flat map is divided by infinity, which makes it zeros.
    """
    maps = maps.astype(np.float32, copy=False)
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    span = high - low
    flat = span <= FLAT_TOLERANCE * np.maximum(np.abs(low), np.abs(high))
    scaled = np.subtract(maps, low)
    scaled /= np.where(flat, np.float32(np.inf), span)
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def zero_nonfinite_maps(maps: np.ndarray) -> np.ndarray:
    """Replace every map holding NaN or Inf (an overflowing fp16 model, say) by zeros, with a
    warning naming the images, so that no NaN reaches a user's heatmap. maps: (N, h, w)."""
    finite = np.isfinite(maps).all(axis=(1, 2))
    if finite.all():
        return maps
    warnings.warn(
        f"the model produced NaN or Inf for images {np.flatnonzero(~finite).tolist()}; their maps are zeros",
        RuntimeWarning,
        stacklevel=3,
    )
    return np.where(finite[:, None, None], maps, 0.0).astype(maps.dtype)
