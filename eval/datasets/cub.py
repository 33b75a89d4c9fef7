"""CUB-200-2011's own annotation files.

The data set's root (``CUB_200_2011/``) holds space-separated files keyed by a 1-based image id:
``images.txt`` (``<id> <relative path>``), ``classes.txt`` (``<class id> <class name>``),
``image_class_labels.txt`` (``<id> <class id>``), ``train_test_split.txt`` (``<id> <1 if
training>``) and ``bounding_boxes.txt`` (``<id> <x> <y> <width> <height>``, floats); images lie
under ``images/``.

Boxes become inclusive ``(x0, y0, x1, y1) = (int(x), int(y), int(x + width), int(y + height))``,
the rule of the WSOL code's CUB metadata (checked on its first test images: CUB's
``60 27 325 304`` is its ``60,27,385,331``, and ``14 112 388 186`` its ``14,112,402,298``).
Malformed lines raise :class:`AnnotationError` naming the file and the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxcam.atomic_write import write_text_atomically
from onnxcam.eval.datasets.errors import AnnotationError, read_annotation_text
from onnxcam.eval.datasets.object_set import ObjectSet, write_image
from onnxcam.eval.datasets.wsol_metadata import WSOLMetadata


@dataclass(frozen=True)
class CUB200:
    """CUB-200-2011 in file order: ``image_paths[i]`` (relative to ``images/``), ``labels[i]``
    (0-based class index into ``class_names``), ``is_train[i]``, ``boxes[i]`` (``(N, 4)`` int64);
    ``class_ids[k]``: the id ``classes.txt`` gives class ``k`` (ids sorted, usually ``k + 1``)."""

    root: Path
    class_names: tuple[str, ...]
    image_paths: tuple[str, ...]
    labels: np.ndarray
    is_train: np.ndarray
    boxes: np.ndarray
    class_ids: tuple[int, ...] = ()


def _lines(path: Path, field_count: int) -> Iterator[tuple[int, list[str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (is {path.parent} the CUB_200_2011 folder?)")
    for number, line in enumerate(read_annotation_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=field_count - 1)
        if len(fields) != field_count:
            message = f"expected {field_count} space-separated fields, got {len(fields)}"
            raise AnnotationError(path, number, message)
        yield number, [f.strip() for f in fields]


def _keyed(path: Path, field_count: int, parse) -> dict[int, tuple[int, object]]:
    """Read ``<id> <fields...>`` lines into ``{id: (line number, parse(fields))}``.

    ``parse`` raises ``ValueError`` for a bad value; that and a duplicate id become AnnotationError.
    """
    table: dict[int, tuple[int, object]] = {}
    for number, (key, *rest) in _lines(path, field_count):
        try:
            identifier = int(key)
            value = parse(rest)
        except ValueError as error:
            raise AnnotationError(path, number, f"cannot read {' '.join([key, *rest])!r}: {error}") from None
        if identifier in table:
            raise AnnotationError(path, number, f"duplicate id {identifier}")
        table[identifier] = (number, value)
    return table


def _flag(fields: list[str]) -> bool:
    if fields[0] not in ("0", "1"):
        raise ValueError("expected 0 or 1")
    return fields[0] == "1"


def _box(fields: list[str]) -> list[int]:
    x, y, width, height = (float(v) for v in fields)
    if min(x, y, width, height) < 0:
        raise ValueError("box values must be non-negative")
    return [int(x), int(y), int(x + width), int(y + height)]


def read_cub200(root: str | Path) -> CUB200:
    """Read the annotation files under ``root`` (the ``CUB_200_2011`` folder) into :class:`CUB200`.

    Raises :class:`AnnotationError` for malformed lines, duplicate or unknown ids, negative box
    values, and images missing from a file (naming the file).
    """
    root = Path(root)
    classes = _keyed(root / "classes.txt", 2, lambda f: f[0])
    images = _keyed(root / "images.txt", 2, lambda f: f[0])
    tables = {
        "image_class_labels.txt": _keyed(root / "image_class_labels.txt", 2, lambda f: int(f[0])),
        "train_test_split.txt": _keyed(root / "train_test_split.txt", 2, _flag),
        "bounding_boxes.txt": _keyed(root / "bounding_boxes.txt", 5, _box),
    }
    ids = sorted(images)
    for name, table in tables.items():
        missing = [i for i in ids if i not in table]
        unknown = [(line, i) for i, (line, _) in table.items() if i not in images]
        if unknown:
            raise AnnotationError(root / name, unknown[0][0], f"image id {unknown[0][1]} is not in images.txt")
        if missing:
            raise AnnotationError(root / name, None, f"no line for image ids {missing[:5]}")
    class_ids = sorted(classes)
    class_index = {class_id: i for i, class_id in enumerate(class_ids)}
    labels = tables["image_class_labels.txt"]
    for line, class_id in labels.values():
        if class_id not in class_index:
            raise AnnotationError(root / "image_class_labels.txt", line, f"unknown class id {class_id}")
    return CUB200(
        root=root,
        class_names=tuple(classes[c][1] for c in class_ids),
        image_paths=tuple(images[i][1] for i in ids),
        labels=np.array([class_index[labels[i][1]] for i in ids], dtype=np.int64),
        is_train=np.array([tables["train_test_split.txt"][i][1] for i in ids], dtype=bool),
        boxes=np.array([tables["bounding_boxes.txt"][i][1] for i in ids], dtype=np.int64).reshape(-1, 4),
        class_ids=tuple(class_ids),
    )


def box_in_image(box: np.ndarray, size: tuple[int, int], name: str) -> np.ndarray:
    """A CUB box inside its ``(width, height)`` image: a box whose ``x + width`` (``y + height``)
    reaches the image's far edge ends on its last pixel (the ``int(x + width)`` rule counts one past
    it); one that starts outside or ends further out raises ``ValueError`` naming the image."""
    width, height = size
    x0, y0, x1, y1 = (int(v) for v in box)
    if x0 >= width or y0 >= height or x1 > width or y1 > height:
        raise ValueError(f"box {[x0, y0, x1, y1]} of {name} leaves its {width}x{height} image")
    return np.array([x0, y0, min(x1, width - 1), min(y1, height - 1)], dtype=np.int64)


def wsol_metadata_from_cub(cub: CUB200, train: bool, image_sizes: dict[str, tuple[int, int]]) -> WSOLMetadata:
    """Return the training (``train=True``) or test split of ``cub`` as WSOL metadata.

    ``image_sizes`` maps each image path to ``(width, height)`` (read them from the image files,
    e.g. with ``PIL.Image.open(path).size``); boxes go through :func:`box_in_image`.
    """
    metadata = WSOLMetadata([])
    for path, label, in_train, box in zip(cub.image_paths, cub.labels, cub.is_train, cub.boxes):
        if bool(in_train) != train:
            continue
        if path not in image_sizes:
            raise ValueError(f"no image size given for {path}")
        metadata.image_ids.append(path)
        metadata.class_labels[path] = int(label)
        metadata.image_sizes[path] = image_sizes[path]
        metadata.boxes[path] = box_in_image(box, image_sizes[path], path)[None, :]
    return metadata


def write_cub_set(objects: ObjectSet, folder: str | Path, suffix: str = ".jpg") -> Path:
    """Write ``objects`` as a ``CUB_200_2011`` folder under ``folder`` and return ``folder``.

    ``images/NNN.<class>/<class>_NNNNNN<suffix>`` and CUB's own files, 1-based ids, boxes as floats
    ``<x> <y> <width> <height>`` (which :func:`read_cub200` turns back into the same inclusive
    boxes); every image is in the test split. CUB holds one box (one object) per image.
    """
    folder = Path(folder)
    folders = [f"{k + 1:03d}.{name}" for k, name in enumerate(objects.class_names)]
    images, labels, splits, boxes = [], [], [], []
    for i in range(len(objects)):
        if len(objects.boxes[i]) != 1:
            raise ValueError(f"image {i} has {len(objects.boxes[i])} objects; CUB holds one box per image")
        label = objects.single_label(i, "CUB")
        relative = f"{folders[label]}/{objects.class_names[label]}_{i + 1:06d}{suffix}"
        write_image(folder / "images" / relative, objects.images[i])
        x0, y0, x1, y1 = (float(v) for v in objects.boxes[i][0])
        images.append(f"{i + 1} {relative}\n")
        labels.append(f"{i + 1} {label + 1}\n")
        splits.append(f"{i + 1} 0\n")
        boxes.append(f"{i + 1} {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f}\n")
    files = {
        "classes.txt": [f"{k + 1} {name}\n" for k, name in enumerate(folders)],
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": splits,
        "bounding_boxes.txt": boxes,
    }
    for name, lines in files.items():
        write_text_atomically(folder / name, "".join(lines))
    return folder
