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

:meth:`MultiObjectDataset.objects` hands the set to the format writers
(:func:`onnxcam.eval.datasets.writers.write_dataset`), e.g. as a COCO detection set that
:func:`onnxcam.eval.datasets.read_coco_json` and pycocotools read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnxcam.eval.datasets.object_set import ObjectSet
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

    def objects(self) -> ObjectSet:
        """The set as an :class:`~onnxcam.eval.datasets.object_set.ObjectSet` for the format writers
        (``write_dataset(data.objects(), folder, "coco")`` is ``make-dataset --format coco``'s set):
        the visible masks do not overlap, so one instance map per image (``k + 1`` on object ``k``)
        holds them exactly."""
        maps = [np.einsum("khw,k->hw", masks.astype(np.uint8), np.arange(1, len(masks) + 1, dtype=np.uint8)) for masks in self.masks]
        return ObjectSet(self.images, self.boxes, self.labels, self.class_names, maps)


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
