"""A multi-object synthetic set: several objects per image, of one or several classes, overlapping.

The single-object set (:mod:`onnxcam.eval.datasets.synthetic`) keeps its objects apart and one
instance map per image; here objects may overlap, so each object has a mask of its own. The
objects are the same twelve shape-and-texture classes, drawn by the same code on the same
backgrounds with the same clutter and noise. Each image holds ``objects = (low, high)`` objects
(1 to 4 by default); with probability ``same_class`` they all share one class, otherwise each
draws its class independently (so two objects may still share one). Objects are painted one
after the other over the earlier ones; an object's mask is its *visible* pixels and its box the
tight inclusive box of that mask (COCO's convention for occluded objects). A placement that
would leave an earlier object with less than ``min_visible`` of its pixels is drawn again (20
tries, then the object is dropped; the first object always has room).

:meth:`MultiObjectDataset.write_coco` writes the set as a COCO detection data set (PNG images,
``instances.json`` with boxes and run-length-encoded masks), which
:func:`onnxcam.eval.datasets.read_coco_json` and pycocotools read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from onnxcam.atomic_write import write_text_atomically
from onnxcam.eval.datasets.synthetic import (
    _SHAPES,
    CLASS_NAMES,
    _background,
    _draw_distractors,
    _paint_object,
    _random_frame,
    _shape_mask,
    _tight_box,
)

MULTI_OBJECT_TEST_SEED = 20_260_100
"""Seed of the multi-object held-out split: multi-label training tests on it, never trains on it."""


@dataclass(frozen=True)
class MultiObjectDataset:
    """Images ``(N, H, W, 3)`` uint8 RGB and, per image ``i``: ``boxes[i]`` ``(K_i, 4)`` inclusive
    ``(x0, y0, x1, y1)``, ``labels[i]`` ``(K_i,)`` int64 class indices, ``masks[i]`` ``(K_i, H, W)``
    bool, the visible pixels of each object (object ``k``'s box is the tight box of ``masks[i][k]``)."""

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    masks: list[np.ndarray]
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    def multi_hot(self) -> np.ndarray:
        """``(N, num_classes)`` float32: 1 where the image holds an object of the class."""
        targets = np.zeros((len(self), len(self.class_names)), dtype=np.float32)
        for i, labels in enumerate(self.labels):
            targets[i, labels] = 1.0
        return targets

    def coco_document(self, file_names: list[str] | None = None) -> dict:
        """The set as a COCO ``instances`` document: category ids are the class indices, image ids
        the image indices, ``bbox`` ``[x0, y0, x1 - x0 + 1, y1 - y0 + 1]``, ``segmentation`` an
        uncompressed RLE of the visible mask (column-major runs, COCO's layout), ``area`` its pixels."""
        height, width = self.images.shape[1:3]
        file_names = file_names or [f"images/{i:06d}.png" for i in range(len(self))]
        images = [{"id": i, "file_name": name, "width": width, "height": height} for i, name in enumerate(file_names)]
        annotations = []
        for i, (boxes, labels, masks) in enumerate(zip(self.boxes, self.labels, self.masks)):
            for box, label, mask in zip(boxes, labels, masks):
                x0, y0, x1, y1 = (int(v) for v in box)
                annotations.append({
                    "id": len(annotations) + 1, "image_id": i, "category_id": int(label),
                    "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1], "area": int(mask.sum()), "iscrowd": 0,
                    "segmentation": {"size": [height, width], "counts": mask_run_lengths(mask)},
                })
        categories = [{"id": k, "name": name} for k, name in enumerate(self.class_names)]
        return {"images": images, "annotations": annotations, "categories": categories}

    def write_coco(self, folder: str | Path, images: bool = True) -> Path:
        """Write ``folder/images/NNNNNN.png`` (unless ``images=False``) and
        ``folder/instances.json`` (:meth:`coco_document`); return the JSON file's path."""
        folder = Path(folder)
        document = self.coco_document()
        if images:
            (folder / "images").mkdir(parents=True, exist_ok=True)
            for image, entry in zip(self.images, document["images"]):
                cv2.imwrite(str(folder / entry["file_name"]), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        folder.mkdir(parents=True, exist_ok=True)
        return write_text_atomically(folder / "instances.json", json.dumps(document) + "\n")


def mask_run_lengths(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts of a 2-D mask: alternating runs of 0s and 1s over the pixels
    in column-major order, starting with a (possibly empty) run of 0s."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return [0] + runs if flat.size and flat[0] else runs


def make_multi_object_dataset(
    n: int,
    seed: int,
    image_size: int = 96,
    num_classes: int = len(CLASS_NAMES),
    objects: tuple[int, int] = (1, 4),
    scale: tuple[float, float] = (0.04, 0.25),
    same_class: float = 0.25,
    min_visible: float = 0.5,
    max_distractors: int = 6,
    noise: float = 6.0,
) -> MultiObjectDataset:
    """Return ``n`` seeded images with 1 to 4 (``objects``) possibly overlapping objects each.

    ``scale`` bounds each object's frame area as a fraction of the image (smaller than the
    single-object set's ``(0.05, 0.6)`` so that several fit); ``same_class``: the probability that
    an image's objects all share one class; ``min_visible``: the smallest visible fraction of an
    object's pixels. Backgrounds, clutter, textures and noise as
    :func:`~onnxcam.eval.datasets.make_synthetic_dataset`; same arguments, same images.
    """
    low, high = objects
    if not 1 <= low <= high:
        raise ValueError(f"objects must be (low, high) with 1 <= low <= high, got {objects}")
    if not 2 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be in [2, {len(CLASS_NAMES)}], got {num_classes}")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
    if not 0 <= min_visible <= 1 or not 0 <= same_class <= 1:
        raise ValueError("min_visible and same_class must be in [0, 1]")
    if n < 0 or max_distractors < 0 or image_size < 16:
        raise ValueError("need n >= 0, max_distractors >= 0, image_size >= 16")
    rng = np.random.default_rng(seed)
    size = image_size
    coordinates = np.arange(size, dtype=np.float32)
    noise_bank = rng.standard_normal((2 * size, 2 * size, 3), dtype=np.float32) * np.float32(noise)
    canvas = np.empty((size, size, 3), dtype=np.float32)
    shapes = list(_SHAPES)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    all_boxes, all_labels, all_masks = [], [], []
    for index in range(n):
        image = _background(rng, size, coordinates)
        _draw_distractors(image, rng, int(rng.integers(max_distractors + 1)), size)
        count = int(rng.integers(low, high + 1))
        if rng.random() < same_class:
            classes = np.full(count, rng.integers(num_classes), dtype=np.int64)
        else:
            classes = rng.integers(num_classes, size=count).astype(np.int64)
        visible: list[np.ndarray] = []  # bool masks of the objects placed so far
        full_areas: list[int] = []
        labels: list[int] = []
        for label in classes:
            for _attempt in range(20):
                mask = _shape_mask(shapes[label], _random_frame(rng, scale, size), size).astype(bool)
                area = int(mask.sum())
                covered = [int((earlier & mask).sum()) for earlier in visible]
                if area and all(
                    (earlier.sum() - lost) >= min_visible * full for earlier, lost, full in zip(visible, covered, full_areas)
                ):
                    break
            else:
                continue
            _paint_object(image, mask.view(np.uint8), int(label), rng, coordinates)
            visible = [earlier & ~mask for earlier in visible] + [mask]
            full_areas.append(area)
            labels.append(int(label))
        if noise > 0:
            oy, ox = rng.integers(0, size, size=2)
            image += noise_bank[oy : oy + size, ox : ox + size]
        np.clip(image, 0, 255, out=canvas)
        images[index] = canvas
        masks = np.stack(visible)
        all_masks.append(masks)
        all_boxes.append(np.stack([_tight_box(mask) for mask in masks]))
        all_labels.append(np.asarray(labels, dtype=np.int64))
    return MultiObjectDataset(images, all_boxes, all_labels, all_masks, CLASS_NAMES[:num_classes])
