"""Reading photos and writing heatmap pictures. Pillow is imported only when these run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from onnxcam.atomic_write import write_atomically


class ImageReadError(ValueError):
    """An image file cannot be read as a picture."""


def read_rgb_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageReadError(f"cannot read {str(path)!r} as an image: {exc}") from exc


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to the 'jet' colours. values: (H, W) -> uint8 (H, W, 3)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # where red, green, blue peak
    rgb = np.clip(1.5 - np.abs(4.0 * v - 4.0 * centres), 0.0, 1.0)
    return (rgb * 255).round().astype(np.uint8)


def signed_colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [-1, 1] to blue (negative), white (0) and red (positive).
    values: (H, W) -> uint8 (H, W, 3)."""
    v = np.clip(values, -1.0, 1.0)[..., None]
    white, red, blue = np.array([1.0, 1.0, 1.0]), np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.2, 0.8])
    rgb = np.where(v >= 0, white + v * (red - white), white - v * (blue - white))
    return (rgb * 255).round().astype(np.uint8)


def heatmap_overlay(
    image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.5, colormap=jet_colormap
) -> np.ndarray:
    """Blend a heatmap (H, W), in ``colormap``'s colours (jet for [0, 1] maps, or
    :func:`signed_colormap` for [-1, 1] ones), over an RGB uint8 image (H, W, 3)."""
    if image.shape[:2] != heatmap.shape:
        raise ValueError(f"image {image.shape[:2]} and heatmap {heatmap.shape} differ in size")
    blended = (1 - opacity) * image.astype(np.float32) + opacity * colormap(heatmap)
    return blended.round().astype(np.uint8)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB uint8 (H, W, 3) image as PNG, atomically (temporary name, then rename)."""
    from PIL import Image

    return write_atomically(path, lambda temporary: Image.fromarray(image).save(temporary, format="PNG"))


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an array as .npy, atomically."""

    def save(temporary: str) -> None:
        with open(temporary, "wb") as file:
            np.save(file, array)

    return write_atomically(path, save)
