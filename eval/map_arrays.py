"""Checks shared by the map metrics: batches of maps, masks and classes as the metrics expect them.

Maps are ``(N, H, W)`` arrays indexed ``[image, y, x]``; masks are boolean arrays of the same
shape; class indices are ``(N,)`` integers. Each check returns the array in the dtype the metrics
compute in, or raises ``ValueError`` saying which argument, image and shape is wrong.
"""

from __future__ import annotations

import numpy as np


def check_maps(maps: np.ndarray, name: str = "maps") -> np.ndarray:
    """``maps`` as float64 ``(N, H, W)``, after checking the shape and that every value is finite."""
    array = np.asarray(maps)
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(f"{name} must be a non-empty (N, H, W) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(array))[:, 0]})
        raise ValueError(f"{name} hold NaN or Inf values (images {bad[:10]})")
    return array


def check_masks(masks: np.ndarray, shape: tuple[int, ...], *, allow_full: bool = True) -> np.ndarray:
    """``masks`` as a boolean array of ``shape`` (the maps' ``(N, H, W)``), none empty (nor, unless
    ``allow_full``, covering the whole image)."""
    array = np.asarray(masks)
    if array.shape != tuple(shape):
        raise ValueError(f"masks have shape {array.shape}; the maps have {tuple(shape)}")
    array = array.astype(bool)
    sizes = array.reshape(len(array), -1).sum(axis=1)
    empty = np.flatnonzero(sizes == 0)
    if empty.size:
        raise ValueError(f"the ground-truth masks of images {empty[:10].tolist()} are empty")
    full = np.flatnonzero(sizes == array[0].size)
    if not allow_full and full.size:
        raise ValueError(
            f"the ground-truth masks of images {full[:10].tolist()} cover the whole image: "
            "there is no background to rank against"
        )
    return array


def check_class_index(class_index: np.ndarray, n: int) -> np.ndarray:
    """``class_index`` as int64 ``(n,)``, one non-negative class per image."""
    array = np.asarray(class_index)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"class_index must be ({n},) integers, one class per image; got {array.dtype} {array.shape}")
    if (array < 0).any():
        raise ValueError(f"class_index holds negative classes: {array[array < 0][:10].tolist()}")
    return array.astype(np.int64)
