"""The images an evaluation explains, with their ground truth (:class:`EvalSet`), and its builders:
the synthetic held-out split and the demo photos.

A set holds its pixels in memory (:class:`InMemory`: the generated synthetic set, 2,000 images of
96 px are 55 MB) or as files read on demand (:class:`ImageFiles`, :class:`MaskFiles`: an on-disk
set holds ids, paths and annotations, never pixels, and its sizes come from the annotations or the
image headers). Either way ``images[i]`` gives one decoded image and :meth:`Pixels.subset` the
small, picklable part of the source that an evaluation task carries to its worker, which decodes
only its chunk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from onnxcam.eval.datasets.synthetic import SYNTHETIC_TEST_SEED


@runtime_checkable
class Pixels(Protocol):
    """One array per image, decoded on demand: ``pixels[i]``, ``len(pixels)``, and ``subset``."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> np.ndarray: ...

    def subset(self, indices: Sequence[int]) -> Pixels:
        """The arrays ``indices``, in that order, as a source of their own (what a task carries)."""


@dataclass(frozen=True)
class InMemory:
    """Arrays already decoded: ``arrays[i]`` (a list, or one stacked ``(N, ...)`` array)."""

    arrays: Sequence[np.ndarray]

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.arrays[i])

    def subset(self, indices: Sequence[int]) -> InMemory:
        return InMemory([self.arrays[i] for i in indices])


class UnreadableImageError(ValueError):
    """An image (or mask) file of an on-disk set is missing or cannot be decoded."""


@dataclass(frozen=True)
class ImageFiles:
    """RGB images read from ``paths[i]`` when asked for; ``ids[i]`` names image ``i`` in errors."""

    ids: tuple[str, ...]
    paths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        from onnxcam.runtime.image_io import read_rgb_image

        try:
            return read_rgb_image(self.paths[i])
        except (OSError, ValueError) as exc:
            raise UnreadableImageError(f"image {self.ids[i]!r} ({self.paths[i]}): {exc}") from exc

    def subset(self, indices: Sequence[int]) -> ImageFiles:
        return ImageFiles(tuple(self.ids[i] for i in indices), tuple(self.paths[i] for i in indices))

    def absolute(self) -> ImageFiles:
        """The same files by absolute paths (for workers that run in another folder)."""
        return ImageFiles(self.ids, tuple(os.path.abspath(path) for path in self.paths))

    def unreadable(self) -> dict[int, str]:
        """``{image: reason}`` for every file that is missing or whose header does not read (no
        pixel is decoded: a file whose header reads but whose data is cut short fails later, in
        :meth:`__getitem__`)."""
        found = {}
        for i, path in enumerate(self.paths):
            try:
                header_size(path)
            except UnreadableImageError as exc:
                found[i] = f"image {self.ids[i]!r}: {exc}"
        return found


@dataclass(frozen=True)
class MaskFiles:
    """Boolean ``(H, W)`` foreground masks: the union of the files ``paths[i]`` (pixels > 0)."""

    ids: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        import cv2

        union = None
        for path in self.paths[i]:
            pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if pixels is None:
                raise UnreadableImageError(f"mask of image {self.ids[i]!r} ({path}) is missing or unreadable")
            union = pixels > 0 if union is None else union | (pixels > 0)
        if union is None:
            raise UnreadableImageError(f"image {self.ids[i]!r} has no mask file")
        return union

    def subset(self, indices: Sequence[int]) -> MaskFiles:
        return MaskFiles(tuple(self.ids[i] for i in indices), tuple(self.paths[i] for i in indices))

    def absolute(self) -> MaskFiles:
        """The same files by absolute paths (for workers that run in another folder)."""
        return MaskFiles(self.ids, tuple(tuple(os.path.abspath(path) for path in paths) for paths in self.paths))


def header_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, without decoding its pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # lazy: reads the header only
            return image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnreadableImageError(f"{path}: {exc}") from exc


def _pixels(source: Pixels | Sequence[np.ndarray] | None) -> Pixels | None:
    """A source as it is, decoded arrays (a list, a stacked array) in :class:`InMemory`."""
    return source if source is None or isinstance(source, Pixels) else InMemory(source)


@dataclass
class EvalSet:
    """Images with ground truth, in one pixel frame per image.

    ``images[i]``: RGB uint8 ``(H_i, W_i, 3)`` (arrays are wrapped in :class:`InMemory`; an on-disk
    set gives :class:`ImageFiles`); ``boxes[i]``: ``(M_i, 4)`` inclusive boxes;
    ``box_classes[i][m]``: the class indices that name box ``m`` (one for the synthetic set, several
    ImageNet synonyms for photos); ``masks[i]``: boolean ``(H_i, W_i)`` foreground, or ``None`` for
    the whole set when there are none; ``sizes[i]``: ``(W_i, H_i)``, required for files (from the
    annotations or :func:`header_size`), read off the arrays otherwise; ``spec``: how to rebuild
    the set (stored in ``run.json``).
    """

    name: str
    ids: list[str]
    images: Pixels
    boxes: list[np.ndarray]
    box_classes: list[list[tuple[int, ...]]]
    masks: Pixels | None = None
    spec: dict[str, object] = field(default_factory=dict)
    sizes: list[tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        self.images = _pixels(self.images)
        self.masks = _pixels(self.masks)
        if self.sizes is None:
            if not isinstance(self.images, InMemory):
                raise ValueError(f"data set {self.name!r}: give the image sizes of an on-disk set (sizes=)")
            self.sizes = [(int(np.shape(a)[1]), int(np.shape(a)[0])) for a in self.images.arrays]
        counts = {len(self.ids), len(self.images), len(self.boxes), len(self.box_classes), len(self.sizes)}
        if self.masks is not None:
            counts.add(len(self.masks))
        if len(counts) != 1:
            raise ValueError(f"data set {self.name!r}: ids, images, boxes, box_classes, sizes (and masks) differ in length")

    def __len__(self) -> int:
        return len(self.ids)

    def size(self, i: int) -> tuple[int, int]:
        """``(width, height)`` of image ``i``."""
        return self.sizes[i]

    def accepted(self, i: int) -> tuple[int, ...]:
        """Every class that names an object of image ``i``."""
        return tuple(sorted({c for classes in self.box_classes[i] for c in classes}))

    def class_boxes(self, i: int, class_index: int) -> np.ndarray:
        """The ``(M, 4)`` boxes of image ``i`` named by ``class_index`` (all boxes if none is)."""
        keep = [class_index in classes for classes in self.box_classes[i]]
        return self.boxes[i][keep] if any(keep) else self.boxes[i]

    def unreadable(self) -> dict[int, str]:
        """``{image: reason}`` of the images whose files are missing or unreadable (none in memory)."""
        return self.images.unreadable() if isinstance(self.images, ImageFiles) else {}

    def without(self, drop: Sequence[int]) -> EvalSet:
        """The set less the images ``drop`` (``--skip-missing``), the rest in their order."""
        dropped = set(drop)
        keep = [i for i in range(len(self)) if i not in dropped]
        return replace(
            self,
            ids=[self.ids[i] for i in keep],
            images=self.images.subset(keep),
            boxes=[self.boxes[i] for i in keep],
            box_classes=[self.box_classes[i] for i in keep],
            masks=None if self.masks is None else self.masks.subset(keep),
            sizes=[self.sizes[i] for i in keep],
        )


def synthetic_eval_set(n: int, image_size: int, num_classes: int, seed: int = SYNTHETIC_TEST_SEED) -> EvalSet:
    """The synthetic held-out split (:func:`~onnxcam.eval.datasets.make_synthetic_dataset`)."""
    from onnxcam.eval.datasets.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(n, seed, image_size, num_classes)
    return EvalSet(
        name="synthetic",
        ids=data.image_ids,
        images=data.images,
        boxes=list(data.boxes),
        box_classes=[[(int(label),)] * len(boxes) for label, boxes in zip(data.labels, data.boxes)],
        masks=data.masks > 0,
        spec={"dataset": "synthetic", "n": n, "seed": seed, "image_size": image_size, "num_classes": num_classes},
    )


def demo_photos_eval_set() -> EvalSet:
    """The five scikit-image photos with hand-labelled boxes (``onnxcam demo``'s set, ImageNet classes)."""
    from onnxcam.eval.datasets.demo_photos import demo_photos, skimage_data_dir
    from onnxcam.runtime.image_io import read_rgb_image

    records = demo_photos()["images"]
    folder = skimage_data_dir()
    return EvalSet(
        name="demo-photos",
        ids=[record["file"] for record in records],
        images=[read_rgb_image(folder / record["file"]) for record in records],
        boxes=[np.array([obj["box"] for obj in record["objects"]], dtype=np.int64) for record in records],
        box_classes=[[tuple(obj["imagenet_classes"]) for obj in record["objects"]] for record in records],
        spec={"dataset": "demo-photos", "n": len(records)},
    )
