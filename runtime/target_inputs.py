"""The inputs a model's target adds (``onnxcam.contract.TargetInfo``), from what a user passes to
``explain``, with clear refusals: a segmentation mask, a detection box."""

from __future__ import annotations

import numpy as np

from onnxcam.contract import TARGET_BOX, TARGET_MASK, TargetInfo
from onnxcam.runtime.inputs import InputError


def _kind_hint(target: TargetInfo) -> str:
    return f"this model was exported with the {target.kind!r} target"


def target_mask_array(mask: np.ndarray | None, n: int, shape: tuple[int, int]) -> np.ndarray:
    """The (N, H_out, W_out) float32 ``target_mask``: None is the whole output (all ones); one
    (H_out, W_out) mask applies to every image."""
    if mask is None:
        return np.ones((n, *shape), dtype=np.float32)
    array = np.asarray(mask)
    if array.dtype.kind not in "biuf":
        raise InputError(f"target_mask must be numeric or boolean; got dtype {array.dtype}")
    if array.shape == tuple(shape):
        array = np.broadcast_to(array, (n, *shape))
    if array.shape != (n, *shape):
        raise InputError(
            f"target_mask has shape {array.shape}; this model takes ({n}, {shape[0]}, {shape[1]}) "
            f"(one mask per image at the output's resolution) or ({shape[0]}, {shape[1]}) for all"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InputError("target_mask holds NaN or Inf values")
    return array


def target_box_array(box: np.ndarray | None, n: int, input_size: tuple[int, int]) -> np.ndarray:
    """The (N, 4) float32 ``target_box``, inclusive input-tensor pixels ``x0, y0, x1, y1``; one
    (4,) box applies to every image. A box must lie inside the (H, W) input."""
    if box is None:
        raise InputError(
            "this model explains a detection: pass target_box=(x0, y0, x1, y1) in input pixels "
            "(inclusive), one box or one per image"
        )
    array = np.asarray(box, dtype=np.float64)
    if array.shape == (4,):
        array = np.broadcast_to(array, (n, 4))
    if array.shape != (n, 4):
        raise InputError(f"target_box has shape {array.shape}; expected (4,) or ({n}, 4): x0, y0, x1, y1 per image")
    height, width = input_size
    x0, y0, x1, y1 = array.T
    bad = ~np.isfinite(array).all(axis=1) | (x0 > x1) | (y0 > y1) | (x0 < 0) | (y0 < 0) | (x1 > width - 1) | (y1 > height - 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"target_box {array[i].tolist()} (image {i}) is not a box inside the {width}x{height} "
            f"input: need 0 <= x0 <= x1 <= {width - 1} and 0 <= y0 <= y1 <= {height - 1} "
            "(inclusive input-tensor pixels)"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def target_input_arrays(
    target: TargetInfo,
    n: int,
    input_size: tuple[int, int],
    target_mask: np.ndarray | None = None,
    target_box: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """``{input name: (N, ...) float32}`` for the inputs ``target`` adds; refuses an input that
    the target does not take."""
    shapes = {item.name: item.shape for item in target.inputs}
    if target_mask is not None and TARGET_MASK not in shapes:
        raise InputError(
            f"target_mask is for a model exported with the segmentation target; {_kind_hint(target)}"
        )
    if target_box is not None and TARGET_BOX not in shapes:
        raise InputError(f"target_box is for a model exported with the detection target; {_kind_hint(target)}")
    feeds = {}
    if TARGET_MASK in shapes:
        feeds[TARGET_MASK] = target_mask_array(target_mask, n, tuple(shapes[TARGET_MASK]))
    if TARGET_BOX in shapes:
        feeds[TARGET_BOX] = target_box_array(target_box, n, input_size)
    return feeds
