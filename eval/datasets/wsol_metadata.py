"""The metadata format of the WSOL evaluation code (clovaai/wsolevaluation, ``metadata/``).

A split folder holds plain-text files, one record per line, fields separated by commas:

- ``image_ids.txt``: ``<image_id>`` (a path relative to the image root);
- ``class_labels.txt``: ``<image_id>,<class index>``;
- ``image_sizes.txt``: ``<image_id>,<width>,<height>`` (ImageNet and CUB layouts; absent for
  OpenImages);
- ``localization.txt``, either boxes, ``<image_id>,<x0>,<y0>,<x1>,<y1>`` with inclusive pixel
  bounds and one line per box (ImageNet, CUB), or masks, ``<image_id>,<mask path>,<ignore path>``
  with one line per instance mask, paths relative to a mask root and the ignore path given on the
  image's first line only, possibly empty (OpenImages).

``class_labels.txt``, ``image_sizes.txt`` and ``localization.txt`` are optional (training splits
lack some). Blank lines are skipped. Any malformed line raises :class:`AnnotationError` naming the
file and the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from onnxcam.atomic_write import write_text_atomically
from onnxcam.eval.datasets.errors import AnnotationError, read_annotation_text
from onnxcam.eval.datasets.object_set import ObjectSet, write_image

IMAGE_IDS = "image_ids.txt"
CLASS_LABELS = "class_labels.txt"
IMAGE_SIZES = "image_sizes.txt"
LOCALIZATION = "localization.txt"


@dataclass
class WSOLMetadata:
    """One split of a WSOL-eval data set.

    ``boxes[id]`` is an ``(M, 4)`` int64 array of inclusive ``(x0, y0, x1, y1)`` boxes in the
    original image's pixels; ``image_sizes[id]`` is ``(width, height)``; ``mask_paths[id]`` lists
    the instance masks and ``ignore_paths[id]`` the ignore mask (``""`` for none), relative to the
    mask root. Dictionaries are empty when their file is absent.
    """

    image_ids: list[str]
    class_labels: dict[str, int] = field(default_factory=dict)
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    mask_paths: dict[str, list[str]] = field(default_factory=dict)
    ignore_paths: dict[str, str] = field(default_factory=dict)


def _records(path: Path, field_counts: tuple[int, ...]) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` for the non-blank lines of a comma-separated file."""
    for number, line in enumerate(read_annotation_text(path).split("\n"), start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) not in field_counts:
            expected = " or ".join(str(count) for count in field_counts)
            raise AnnotationError(path, number, f"expected {expected} comma-separated fields, got {len(fields)}")
        if not fields[0]:
            raise AnnotationError(path, number, "empty image id")
        yield number, fields


def _integers(path: Path, number: int, fields: list[str], what: str) -> list[int]:
    try:
        return [int(value) for value in fields]
    except ValueError:
        raise AnnotationError(path, number, f"{what} must be integers, got {','.join(fields)!r}") from None


def _check_known(path: Path, number: int, image_id: str, known: set[str]) -> None:
    if image_id not in known:
        raise AnnotationError(path, number, f"image id {image_id!r} is not in {IMAGE_IDS}")


def read_wsol_metadata(folder: str | Path) -> WSOLMetadata:
    """Read one split folder of WSOL-eval metadata (ImageNet, CUB or OpenImages layout).

    Checks, with the file and line of the first offence: field counts, integer fields, ids that are
    listed in ``image_ids.txt`` exactly once, positive image sizes, boxes that follow the
    ``x0 <= x1``, ``y0 <= y1`` convention and lie inside the image when its size is known, one
    localization layout per file, and an ignore mask given only on an image's first mask line.
    """
    folder = Path(folder)
    ids_path = folder / IMAGE_IDS
    if not ids_path.is_file():
        raise FileNotFoundError(f"{ids_path} not found (is {folder} a WSOL metadata folder?)")
    image_ids: list[str] = []
    known: set[str] = set()
    for number, (image_id,) in _records(ids_path, (1,)):
        if image_id in known:
            raise AnnotationError(ids_path, number, f"duplicate image id {image_id!r}")
        image_ids.append(image_id)
        known.add(image_id)
    metadata = WSOLMetadata(image_ids)

    labels_path = folder / CLASS_LABELS
    if labels_path.is_file():
        for number, (image_id, label) in _records(labels_path, (2,)):
            _check_known(labels_path, number, image_id, known)
            (metadata.class_labels[image_id],) = _integers(labels_path, number, [label], "class label")

    sizes_path = folder / IMAGE_SIZES
    if sizes_path.is_file():
        for number, (image_id, *size) in _records(sizes_path, (3,)):
            _check_known(sizes_path, number, image_id, known)
            width, height = _integers(sizes_path, number, size, "image width and height")
            if width <= 0 or height <= 0:
                raise AnnotationError(sizes_path, number, f"image size must be positive, got {width}x{height}")
            metadata.image_sizes[image_id] = (width, height)

    localization_path = folder / LOCALIZATION
    if localization_path.is_file():
        _read_localization(localization_path, known, metadata)
    return metadata


def _read_localization(path: Path, known: set[str], metadata: WSOLMetadata) -> None:
    layout = None
    boxes: dict[str, list[list[int]]] = {}
    for number, (image_id, *rest) in _records(path, (3, 5)):
        _check_known(path, number, image_id, known)
        this_layout = "boxes" if len(rest) == 4 else "masks"
        if layout is not None and this_layout != layout:
            raise AnnotationError(path, number, f"a {this_layout} line in a file of {layout} lines")
        layout = this_layout
        if layout == "masks":
            mask_path, ignore_path = rest
            if not mask_path:
                raise AnnotationError(path, number, "empty mask path")
            if image_id in metadata.mask_paths:
                if ignore_path:
                    message = "the ignore mask must be given on the image's first line only"
                    raise AnnotationError(path, number, message)
                metadata.mask_paths[image_id].append(mask_path)
            else:
                metadata.mask_paths[image_id] = [mask_path]
                metadata.ignore_paths[image_id] = ignore_path
            continue
        x0, y0, x1, y1 = _integers(path, number, rest, "box coordinates")
        if min(x0, y0) < 0 or x1 < x0 or y1 < y0:
            raise AnnotationError(path, number, f"box ({x0}, {y0}, {x1}, {y1}) breaks 0 <= x0 <= x1, 0 <= y0 <= y1")
        if image_id in metadata.image_sizes:
            width, height = metadata.image_sizes[image_id]
            if x1 >= width or y1 >= height:
                raise AnnotationError(
                    path, number, f"box ({x0}, {y0}, {x1}, {y1}) leaves the {width}x{height} image"
                )
        boxes.setdefault(image_id, []).append([x0, y0, x1, y1])
    metadata.boxes = {image_id: np.array(rows, dtype=np.int64) for image_id, rows in boxes.items()}


def write_wsol_metadata(metadata: WSOLMetadata, folder: str | Path) -> Path:
    """Write ``metadata`` as a WSOL-eval split folder (created if needed) and return its path.

    Files whose dictionary is empty are not written; ``localization.txt`` holds the boxes if there
    are any, otherwise the mask paths. Ids must not contain commas or line breaks.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for image_id in metadata.image_ids:
        if "," in image_id or "\n" in image_id or "\r" in image_id:
            raise ValueError(f"image id {image_id!r} cannot be written: it holds a comma or line break")
    ids = metadata.image_ids
    write_text_atomically(folder / IMAGE_IDS, "".join(f"{i}\n" for i in ids))
    if metadata.class_labels:
        lines = (f"{i},{metadata.class_labels[i]}\n" for i in ids if i in metadata.class_labels)
        write_text_atomically(folder / CLASS_LABELS, "".join(lines))
    if metadata.image_sizes:
        lines = (f"{i},{w},{h}\n" for i in ids if i in metadata.image_sizes for w, h in [metadata.image_sizes[i]])
        write_text_atomically(folder / IMAGE_SIZES, "".join(lines))
    if metadata.boxes:
        lines = (
            f"{i},{x0},{y0},{x1},{y1}\n"
            for i in ids
            if i in metadata.boxes
            for x0, y0, x1, y1 in np.asarray(metadata.boxes[i]).reshape(-1, 4).tolist()
        )
        write_text_atomically(folder / LOCALIZATION, "".join(lines))
    elif metadata.mask_paths:
        lines = (
            f"{i},{mask},{metadata.ignore_paths.get(i, '') if k == 0 else ''}\n"
            for i in ids
            if i in metadata.mask_paths
            for k, mask in enumerate(metadata.mask_paths[i])
        )
        write_text_atomically(folder / LOCALIZATION, "".join(lines))
    return folder


def write_wsol_set(objects: ObjectSet, folder: str | Path, suffix: str = ".png", images: bool = True) -> Path:
    """Write ``objects`` in the WSOL-eval layout under ``folder`` and return ``folder``.

    Writes ``images/NNNNNN<suffix>`` (unless ``images=False``; ``.png`` keeps the pixels exact),
    ``metadata/boxes/`` (ImageNet/CUB layout: image ids, class labels, image sizes, boxes) and, when
    the set has masks, ``masks/NNNNNN_K.png`` (one binary mask per object, 255 on it) and
    ``metadata/masks/`` (OpenImages layout). Ids and mask paths are relative to ``folder``, which
    is then both the image root and the mask root. Each image must hold objects of one class.
    """
    folder = Path(folder)
    ids = [f"images/{i:06d}{suffix}" for i in range(len(objects))]
    boxes = WSOLMetadata(
        image_ids=ids,
        class_labels={image_id: objects.single_label(i, "WSOL metadata") for i, image_id in enumerate(ids)},
        image_sizes={image_id: objects.size(i) for i, image_id in enumerate(ids)},
        boxes={image_id: np.asarray(objects.boxes[i], dtype=np.int64) for i, image_id in enumerate(ids)},
    )
    for i, image_id in enumerate(ids):
        if images:
            write_image(folder / image_id, objects.images[i])
    write_wsol_metadata(boxes, folder / "metadata" / "boxes")
    if objects.masks is None:
        return folder
    masks = WSOLMetadata(image_ids=ids, class_labels=boxes.class_labels)
    for i, image_id in enumerate(ids):
        paths = [f"masks/{i:06d}_{k}.png" for k in range(len(objects.boxes[i]))]
        for k, path in enumerate(paths):
            write_image(folder / path, np.where(np.asarray(objects.masks[i]) == k + 1, 255, 0).astype(np.uint8))
        masks.mask_paths[image_id] = paths
        masks.ignore_paths[image_id] = ""
    write_wsol_metadata(masks, folder / "metadata" / "masks")
    return folder


def read_wsol_mask(
    metadata: WSOLMetadata, image_id: str, mask_root: str | Path, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return the foreground and ignore masks (boolean ``(H, W)``) of one image of a mask layout.

    The foreground is the union of the instance masks (pixels ``> 0.5`` after reading them as
    grayscale); the ignore mask is the ignore file's pixels outside the foreground (all false when
    the image has no ignore file). ``size = (width, height)`` resizes each file with
    nearest-neighbour interpolation first, as the WSOL code does with ``(224, 224)``.
    """
    if image_id not in metadata.mask_paths:
        raise ValueError(f"no mask listed for image {image_id!r}")
    root = Path(mask_root)

    def load(relative: str) -> np.ndarray:
        path = root / relative
        pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if pixels is None:
            raise FileNotFoundError(f"mask {path} not found or unreadable")
        pixels = pixels.astype(np.float32)
        if size is not None:
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_NEAREST)
        return pixels > 0.5

    instances = [load(relative) for relative in metadata.mask_paths[image_id]]
    if len({m.shape for m in instances}) != 1:
        raise ValueError(f"the instance masks of {image_id!r} differ in size")
    foreground = np.logical_or.reduce(instances)
    ignore_path = metadata.ignore_paths.get(image_id, "")
    if not ignore_path:
        return foreground, np.zeros_like(foreground)
    ignore = load(ignore_path)
    if ignore.shape != foreground.shape:
        raise ValueError(f"the ignore mask of {image_id!r} differs in size from its instance masks")
    return foreground, ignore & ~foreground
