"""What the channels of a layer respond to: activation maps as a grid, and the input patches that
excite a channel most, cropped to the unit's receptive field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onnxcam.eval.behaviour.receptive_field import ReceptiveField
from onnxcam.runtime.normalization import minmax_normalize


def check_channels(channels: Sequence[int] | np.ndarray, count: int, layer: str = "the layer") -> np.ndarray:
    """``channels`` as an int64 array, or a ``ValueError`` naming the one out of ``0..count - 1``."""
    channels = np.asarray(channels, dtype=np.int64).ravel()
    bad = channels[(channels < 0) | (channels >= count)]
    if bad.size:
        raise ValueError(f"channel {int(bad[0])} is out of range: {layer} has {count} channels (0..{count - 1})")
    return channels


def activation_grid(maps: np.ndarray, columns: int | None = None, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Channel maps side by side, each min-max normalised on its own (a flat map is all zeros).

    maps: ``(C, h, w)`` -> ``(rows * (h + pad) - pad, columns * (w + pad) - pad)`` float32 in
    [0, 1], row-major, ``pad_value`` between maps; ``columns`` defaults to ``ceil(sqrt(C))``.

    >>> activation_grid(np.arange(8.0).reshape(2, 2, 2), columns=2, pad=1, pad_value=0.5).tolist()
    [[0.0, 0.3333333432674408, 0.5, 0.0, 0.3333333432674408], [0.6666666865348816, 1.0, 0.5, 0.6666666865348816, 1.0]]
    """
    if maps.ndim != 3 or maps.shape[0] == 0:
        raise ValueError(f"maps must be (C, h, w) with C >= 1; got shape {maps.shape}")
    count, height, width = maps.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.full((rows * (height + pad) - pad, columns * (width + pad) - pad), pad_value, dtype=np.float32)
    for i, tile in enumerate(minmax_normalize(maps)):
        top, left = (i // columns) * (height + pad), (i % columns) * (width + pad)
        grid[top : top + height, left : left + width] = tile
    return grid


@dataclass(frozen=True)
class PatchHit:
    """One top activation of a channel: image ``image`` at unit ``(y, x)`` of the layer reached
    ``activation``; ``box`` is that unit's receptive field in the input, inclusive ``(x0, y0, x1, y1)``
    clipped to the image."""

    channel: int
    image: int
    y: int
    x: int
    activation: float
    box: tuple[int, int, int, int]


def channel_peaks(activations: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image's strongest unit per channel: ``(N, C, h, w)`` -> ``(peak, y, x)``, each ``(N, C)``
    (the first such unit in row-major order on ties). Batches can be reduced one at a time and
    concatenated, so a large set never holds all its activations."""
    if activations.ndim != 4:
        raise ValueError(f"activations must be (N, C, h, w); got shape {activations.shape}")
    n, count, height, width = activations.shape
    flat = activations.reshape(n, count, height * width)
    position = flat.argmax(axis=2)
    peak = np.take_along_axis(flat, position[..., None], axis=2)[..., 0]
    return peak, position // width, position % width


def top_patches(
    peaks: tuple[np.ndarray, np.ndarray, np.ndarray], channels: Sequence[int], k: int, field: ReceptiveField
) -> dict[int, list[PatchHit]]:
    """:func:`max_activating_patches` from :func:`channel_peaks`' ``(peak, y, x)``."""
    peak, ys, xs = peaks
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    channels = check_channels(channels, peak.shape[1], field.layer)
    hits = {}
    for channel in channels.tolist():
        order = np.argsort(-peak[:, channel], kind="stable")[:k]
        hits[channel] = [
            PatchHit(channel, int(i), int(ys[i, channel]), int(xs[i, channel]), float(peak[i, channel]),
                     field.box(int(ys[i, channel]), int(xs[i, channel])))
            for i in order
        ]
    return hits


def max_activating_patches(
    activations: np.ndarray, channels: Sequence[int], k: int, field: ReceptiveField
) -> dict[int, list[PatchHit]]:
    """For each channel, the ``k`` images whose strongest unit of that channel is strongest, each at
    that unit, with its receptive-field box (Zeiler & Fergus 2014, Girshick et al. 2014).

    Args:
        activations: ``(N, C, h, w)`` the layer's activations for N images.
        channels: channel indices (each in ``0..C - 1``).
        k: images per channel (fewer if N < k); one patch per image.
        field: :func:`~onnxcam.eval.behaviour.receptive_field` of the layer.

    Returns: ``{channel: [PatchHit, ...]}``, strongest first (ties: lower image index first).
    """
    return top_patches(channel_peaks(activations), channels, k, field)


def field_crop(image: np.ndarray, field: ReceptiveField, y: int, x: int, fill: int = 127) -> np.ndarray:
    """The input pixels that unit ``(y, x)`` sees: ``image`` ``(H, W, 3)`` at the model's input size
    cropped to the full ``field.size``, with ``fill`` where the field reaches outside the image (so
    a patch at the border keeps its place in the field); the whole image if the unit sees it all."""
    height, width = image.shape[:2]
    if (height, width) != tuple(field.input_size):
        raise ValueError(f"image is {height}x{width}; the field is in the {field.input_size} input frame")
    if field.size is None or field.whole_image:
        return image.copy()
    top, left = field.start[0] + y * field.jump[0], field.start[1] + x * field.jump[1]
    crop = np.full((*field.size, *image.shape[2:]), fill, dtype=image.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + field.size[0], height), min(left + field.size[1], width)
    if y1 > y0 and x1 > x0:
        crop[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return crop
