"""Turning what a user passes to ``explain`` into the model's inputs, with clear refusals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcam.contract import TOP1_CLASS, Preprocessing
from onnxcam.runtime.resize import resize_image


class InputError(ValueError):
    """An input to ``explain`` is not what the model takes; the message says what was expected."""


def check_batch(batch: np.ndarray, channels: int, size: tuple[int, int], layout: str = "NCHW") -> np.ndarray:
    """Validate a preprocessed batch. batch: float32 in the model's ``layout``, ``(N, C, H, W)``
    (``"NCHW"``) or ``(N, H, W, C)`` (``"NHWC"``), with C, H, W those of the model."""
    channels_last = layout == "NHWC"
    described = "(N, H, W, C)" if channels_last else "(N, C, H, W)"
    if batch.dtype != np.float32:
        raise InputError(
            f"a preprocessed batch must be float32 {described}; got dtype {batch.dtype} "
            "(pass decoded uint8 images as a list of (H, W, 3) arrays to have them preprocessed)"
        )
    expected = (*size, channels) if channels_last else (channels, *size)
    if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
        other = (channels, *size) if channels_last else (*size, channels)
        in_other = batch.ndim == 4 and tuple(batch.shape[1:]) == other
        transpose = "batch.transpose(0, 2, 3, 1)" if channels_last else "batch.transpose(0, 3, 1, 2)"
        which = "channels first" if channels_last else "channels last"
        hint = f" ({which}: transpose with {transpose})" if in_other else ""
        raise InputError(
            f"batch has shape {tuple(batch.shape)}; this model takes (N, {', '.join(map(str, expected))}){hint}"
        )
    if batch.shape[0] == 0:
        raise InputError("the batch is empty (N = 0)")
    if not np.isfinite(batch).all():
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(batch))[:, 0]})
        raise InputError(f"the batch holds NaN or Inf values (images {bad[:10]})")
    return np.ascontiguousarray(batch)


def channels_first(batch: np.ndarray, layout: str) -> np.ndarray:
    """A batch in the model's ``layout`` as ``(N, C, H, W)``, the layout methods compute in."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if layout == "NHWC" else batch


def model_layout(batch: np.ndarray, layout: str) -> np.ndarray:
    """A ``(N, C, H, W)`` batch in the model's ``layout``, what its ``input`` is fed."""
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1)) if layout == "NHWC" else batch


def preprocess_images(images: Sequence[np.ndarray], preprocessing: Preprocessing) -> np.ndarray:
    """Decoded RGB uint8 images (each (H_i, W_i, 3)) -> float32 model inputs in the model's
    layout: (N, 3, H, W), or (N, H, W, 3) where ``preprocessing.layout`` is ``"NHWC"``.

    Each whole image is resized (bilinear, no crop) to the model's input size, so a map at the
    model's resolution lines up with the whole photo.
    """
    if len(images) == 0:
        raise InputError("no images given")
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)
    batch = np.empty((len(images), 3, *preprocessing.input_size), dtype=np.float32)
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(
                f"image {i} is {image.dtype} {image.shape}; expected decoded RGB uint8 (H, W, 3)"
            )
        if min(image.shape[:2]) == 0:
            raise InputError(f"image {i} is empty: {image.shape}")
        if preprocessing.channel_order == "BGR":
            image = image[..., ::-1]
        resized = resize_image(image, preprocessing.input_size) / 255.0
        batch[i] = np.moveaxis((resized - mean) / std, -1, 0)
    return model_layout(batch, preprocessing.layout)


def class_index_array(class_index: int | Sequence[int] | np.ndarray | None, n: int, num_classes: int) -> np.ndarray:
    """The (N,) int64 ``class_index`` input; None asks for each image's top-1 class."""
    if class_index is None:
        return np.full(n, TOP1_CLASS, dtype=np.int64)
    array = np.asarray(class_index)
    if array.dtype.kind not in "iu":
        raise InputError(f"class_index must hold integers; got dtype {array.dtype}")
    if array.ndim == 0:
        array = np.full(n, int(array))
    if array.shape != (n,):
        raise InputError(f"class_index has shape {array.shape}; expected ({n},), one per image")
    bad = array[(array < 0) | (array >= num_classes)]
    if bad.size:
        raise InputError(
            f"class index {int(bad[0])} is out of range for a model with {num_classes} classes "
            f"(valid: 0..{num_classes - 1}, or None for the top-1 class)"
        )
    return array.astype(np.int64)
