"""Turning what a user passes to ``explain`` into the model's inputs, with clear refusals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcam.contract import TOP1_CLASS, Preprocessing
from onnxcam.runtime.resize import resize_image


class InputError(ValueError):
    """An input to ``explain`` is not what the model takes; the message says what was expected."""


def check_batch(batch: np.ndarray, channels: int, size: tuple[int, int]) -> np.ndarray:
    """Validate a preprocessed batch. batch: float32 (N, C, H, W) with C, H, W those of the model."""
    if batch.dtype != np.float32:
        raise InputError(
            f"a preprocessed batch must be float32 (N, C, H, W); got dtype {batch.dtype} "
            "(pass decoded uint8 images as a list of (H, W, 3) arrays to have them preprocessed)"
        )
    expected = (channels, *size)
    if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
        channels_last = batch.ndim == 4 and tuple(batch.shape[1:]) == (*size, channels)
        hint = " (channels last: transpose with batch.transpose(0, 3, 1, 2))" if channels_last else ""
        raise InputError(
            f"batch has shape {tuple(batch.shape)}; this model takes (N, {', '.join(map(str, expected))}){hint}"
        )
    if batch.shape[0] == 0:
        raise InputError("the batch is empty (N = 0)")
    if not np.isfinite(batch).all():
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(batch))[:, 0]})
        raise InputError(f"the batch holds NaN or Inf values (images {bad[:10]})")
    return np.ascontiguousarray(batch)


def preprocess_images(images: Sequence[np.ndarray], preprocessing: Preprocessing) -> np.ndarray:
    """Decoded RGB uint8 images (each (H_i, W_i, 3)) -> float32 (N, 3, H, W) model inputs.

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
    return batch


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
