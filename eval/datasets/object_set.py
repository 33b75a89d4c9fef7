"""Images with labelled boxes: what the data-set writers (``onnxcam make-dataset``) take.

Each format's writer lives next to its reader (:func:`~onnxcam.eval.datasets.write_wsol_set`,
``write_imagenet_set``, ``write_cub_set``, ``write_voc_set``, ``write_coco_set``) and writes an
:class:`ObjectSet` as image files plus that format's annotations; :func:`write_image` is the one
place that encodes a picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ObjectSet:
    """``images[i]``: RGB uint8 ``(H_i, W_i, 3)``; ``boxes[i]``: ``(K_i, 4)`` int64 inclusive 0-based
    ``(x0, y0, x1, y1)``; ``labels[i]``: ``(K_i,)`` int64, each object's index into ``class_names``
    (an image may hold objects of several classes); ``masks[i]``: uint8 ``(H_i, W_i)`` with ``k + 1``
    on the pixels of object ``k`` and 0 elsewhere, or ``masks`` is ``None``."""

    images: Sequence[np.ndarray]
    boxes: Sequence[np.ndarray]
    labels: Sequence[np.ndarray]
    class_names: tuple[str, ...]
    masks: Sequence[np.ndarray] | None = None

    def __post_init__(self) -> None:
        counts = {len(self.images), len(self.boxes), len(self.labels)}
        if self.masks is not None:
            counts.add(len(self.masks))
        if len(counts) != 1:
            raise ValueError("images, boxes, labels (and masks) must have one entry per image")
        for i, (boxes, labels) in enumerate(zip(self.boxes, self.labels)):
            if np.shape(boxes) != (len(labels), 4):
                raise ValueError(f"image {i}: boxes {np.shape(boxes)} do not match its {len(labels)} labels")
            if len(labels) and not 0 <= int(np.min(labels)) <= int(np.max(labels)) < len(self.class_names):
                raise ValueError(f"image {i}: labels {list(labels)} are not indices into {len(self.class_names)} classes")

    def __len__(self) -> int:
        return len(self.images)

    def size(self, i: int) -> tuple[int, int]:
        """``(width, height)`` of image ``i``."""
        height, width = np.shape(self.images[i])[:2]
        return int(width), int(height)

    def single_label(self, i: int, format_name: str) -> int:
        """The one class of image ``i``'s objects; a format with one class per image (WSOL, CUB)
        cannot write an image with none or several."""
        present = np.unique(self.labels[i])
        if len(present) != 1:
            raise ValueError(
                f"image {i} has objects of {len(present)} classes; {format_name} holds one class per image"
            )
        return int(present[0])


def write_image(path: str | Path, image: np.ndarray, jpeg_quality: int = 95) -> Path:
    """Write an RGB ``(H, W, 3)`` or grayscale ``(H, W)`` uint8 image, PNG (lossless) or JPEG by the
    path's suffix (folders created). A plain write, not an atomic one: a data set is written once,
    and flushing each file to disk (``atomic_write``) costs 9 ms of a 0.2 ms write."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"cannot write {path}: the suffix must be one of {', '.join(IMAGE_SUFFIXES)}")
    options = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix != ".png" else []
    image = np.asarray(image)
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, encoded = cv2.imencode(suffix, pixels, options)
    if not ok:
        raise ValueError(f"OpenCV could not encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded.tobytes())
    return path


def write_file_text(path: str | Path, text: str) -> Path:
    """Write a data set's per-image text file (folders created), a plain write as :func:`write_image`'s."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
