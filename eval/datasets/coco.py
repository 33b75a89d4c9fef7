"""COCO-style JSON box annotations (``instances_*.json``).

The file holds ``images`` (``id``, ``file_name``, ``width``, ``height``), ``categories`` (``id``,
``name``) and ``annotations`` (``image_id``, ``category_id``, ``bbox`` = ``[x, y, width, height]``
in continuous pixel coordinates, optional ``iscrowd``). A box becomes the inclusive pixel box of the
pixels it touches, ``(floor(x), floor(y), ceil(x + w) - 1, ceil(y + h) - 1)``, at least one pixel
wide and tall and clipped to the image. Malformed files raise :class:`AnnotationError` with the line
of the JSON syntax error or of the offending object.
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import json.scanner
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxcam.atomic_write import write_text_atomically
from onnxcam.eval.datasets.errors import AnnotationError, read_annotation_text
from onnxcam.eval.datasets.object_set import ObjectSet, write_image
from onnxcam.eval.datasets.wsol_metadata import WSOLMetadata


@dataclass(frozen=True)
class COCOImage:
    """One entry of ``images``."""

    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class COCOBoxes:
    """A COCO file's boxes: ``images`` and ``categories`` (id -> name) in file order, and one row per
    annotation in ``image_ids`` (A,), ``category_ids`` (A,), ``boxes`` (A, 4) inclusive int64,
    ``iscrowd`` (A,) bool."""

    path: Path
    images: tuple[COCOImage, ...]
    categories: dict[int, str]
    image_ids: np.ndarray
    category_ids: np.ndarray
    boxes: np.ndarray
    iscrowd: np.ndarray

    def boxes_of(self, image_id: int, category_id: int | None = None, include_crowd: bool = True) -> np.ndarray:
        """Return the ``(K, 4)`` boxes of one image, of one category if given."""
        keep = self.image_ids == image_id
        if category_id is not None:
            keep &= self.category_ids == category_id
        if not include_crowd:
            keep &= ~self.iscrowd
        return self.boxes[keep]


class _LineDict(dict):
    """A JSON object that knows the line it starts on."""

    line: int


class _LineDecoder(json.JSONDecoder):
    """A (slow, pure-Python) decoder whose objects are :class:`_LineDict` with their line."""

    def __init__(self, text: str):
        super().__init__()
        newlines = [i for i, char in enumerate(text) if char == "\n"]

        def parse_object(s_and_end, *args):
            start = s_and_end[1] - 1
            value, end = json.decoder.JSONObject(s_and_end, *args)
            tagged = _LineDict(value)
            tagged.line = bisect.bisect_left(newlines, start) + 1
            return tagged, end

        self.parse_object = parse_object
        self.scan_once = json.scanner.py_make_scanner(self)


def _line_of(text: str, where: Sequence[str | int]) -> int | None:
    """Line of the object at JSON path ``where`` (the innermost object on the way)."""
    node = _LineDecoder(text).decode(text)
    line = getattr(node, "line", None)
    for key in where:
        node = node[key]
        line = getattr(node, "line", line)
    return line


def _fail(path: Path, text: str, where: Sequence[str | int], message: str) -> AnnotationError:
    location = "".join(f"[{k!r}]" if isinstance(k, str) else f"[{k}]" for k in where)
    return AnnotationError(path, _line_of(text, where), f"{location}: {message}")


def _field(path: Path, text: str, entry: object, where: list, key: str, kind: type):
    if not isinstance(entry, dict):
        raise _fail(path, text, where, "expected an object")
    if key not in entry:
        raise _fail(path, text, where, f"missing {key!r}")
    value = entry[key]
    numeric = kind in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (isinstance(value, kind) or (numeric and (kind is float or float(value).is_integer()))):
        raise _fail(path, text, where, f"{key!r} must be {kind.__name__}, got {value!r}")
    return kind(value)


def read_coco_json(path: str | Path) -> COCOBoxes:
    """Read a COCO-style JSON file into :class:`COCOBoxes`.

    Checks: JSON syntax; ``images``, ``categories`` and ``annotations`` lists; required fields and
    their types; positive image sizes; unique image and category ids; annotations that refer to
    known images and categories; boxes with non-negative width and height that start inside their
    image. Each failure raises :class:`AnnotationError` naming the file and line.
    """
    path = Path(path)
    text = read_annotation_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise AnnotationError(path, error.lineno, f"malformed JSON: {error.msg}") from None
    if not isinstance(document, dict):
        raise AnnotationError(path, 1, "expected a JSON object at the top level")
    for key in ("images", "categories", "annotations"):
        if not isinstance(document.get(key), list):
            raise _fail(path, text, [], f"missing list {key!r}")

    images: dict[int, COCOImage] = {}
    for k, entry in enumerate(document["images"]):
        where = ["images", k]
        image = COCOImage(*(_field(path, text, entry, where, key, kind) for key, kind in
                            (("id", int), ("file_name", str), ("width", int), ("height", int))))
        if image.width <= 0 or image.height <= 0:
            raise _fail(path, text, where, f"image size must be positive, got {image.width}x{image.height}")
        if image.id in images:
            raise _fail(path, text, where, f"duplicate image id {image.id}")
        images[image.id] = image

    categories: dict[int, str] = {}
    for k, entry in enumerate(document["categories"]):
        where = ["categories", k]
        category_id = _field(path, text, entry, where, "id", int)
        if category_id in categories:
            raise _fail(path, text, where, f"duplicate category id {category_id}")
        categories[category_id] = _field(path, text, entry, where, "name", str)

    rows = []
    for k, entry in enumerate(document["annotations"]):
        where = ["annotations", k]
        image_id = _field(path, text, entry, where, "image_id", int)
        category_id = _field(path, text, entry, where, "category_id", int)
        if image_id not in images:
            raise _fail(path, text, where, f"unknown image id {image_id}")
        if category_id not in categories:
            raise _fail(path, text, where, f"unknown category id {category_id}")
        bbox = entry.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise _fail(path, text, where, f"'bbox' must be [x, y, width, height], got {bbox!r}")
        x, y, width, height = (float(v) for v in bbox)
        image = images[image_id]
        if min(width, height) < 0 or not (0 <= x < image.width and 0 <= y < image.height):
            raise _fail(path, text, where, f"bbox {bbox} is not a box inside the {image.width}x{image.height} image")
        x0, y0 = math.floor(x), math.floor(y)
        x1 = min(max(math.ceil(x + width) - 1, x0), image.width - 1)
        y1 = min(max(math.ceil(y + height) - 1, y0), image.height - 1)
        rows.append((image_id, category_id, x0, y0, x1, y1, bool(entry.get("iscrowd", 0))))

    table = np.array([row[:6] for row in rows], dtype=np.int64).reshape(-1, 6)
    return COCOBoxes(
        path=path,
        images=tuple(images.values()),
        categories=categories,
        image_ids=table[:, 0],
        category_ids=table[:, 1],
        boxes=table[:, 2:6],
        iscrowd=np.array([row[6] for row in rows], dtype=bool),
    )


def wsol_metadata_from_coco(coco: COCOBoxes, include_crowd: bool = False) -> WSOLMetadata:
    """Return WSOL metadata for the images whose boxes are all of one category.

    Ids are the file names; labels index the categories sorted by id. Images with no box or boxes of
    several categories are left out: a WSOL image has one class. A repeated file name raises
    :class:`AnnotationError`.
    """
    label_of = {category_id: i for i, category_id in enumerate(sorted(coco.categories))}
    metadata = WSOLMetadata([])
    for image in coco.images:
        keep = coco.image_ids == image.id
        if not include_crowd:
            keep &= ~coco.iscrowd
        present = np.unique(coco.category_ids[keep])
        if len(present) != 1:
            continue
        if image.file_name in metadata.class_labels:
            raise AnnotationError(coco.path, None, f"file name {image.file_name!r} appears twice")
        metadata.image_ids.append(image.file_name)
        metadata.class_labels[image.file_name] = label_of[int(present[0])]
        metadata.image_sizes[image.file_name] = (image.width, image.height)
        metadata.boxes[image.file_name] = coco.boxes[keep]
    return metadata


def coco_bbox(box: np.ndarray) -> list[int]:
    """An inclusive pixel box ``(x0, y0, x1, y1)`` as COCO's ``[x, y, width, height]``: the pixels'
    continuous extent, which :func:`read_coco_json` turns back into the same box."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def write_coco_set(objects: ObjectSet, folder: str | Path, suffix: str = ".jpg") -> Path:
    """Write ``objects`` in the COCO layout under ``folder`` and return ``folder``.

    ``images/NNNNNNNNNNNN<suffix>`` and ``annotations/instances.json``: categories numbered from 1 in
    class-index order (so the default label order, categories sorted by id, is the class index),
    one annotation per object with its box, area and ``iscrowd`` 0.
    """
    folder = Path(folder)
    images, annotations = [], []
    for i in range(len(objects)):
        file_name = f"{i + 1:012d}{suffix}"
        write_image(folder / "images" / file_name, objects.images[i])
        width, height = objects.size(i)
        images.append({"id": i + 1, "file_name": file_name, "width": width, "height": height})
        for label, box in zip(objects.labels[i], objects.boxes[i]):
            bbox = coco_bbox(box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1, "bbox": bbox,
                "area": bbox[2] * bbox[3], "iscrowd": 0, "segmentation": [],
            })
    categories = [{"id": k + 1, "name": name, "supercategory": "synthetic"} for k, name in enumerate(objects.class_names)]
    document = {"images": images, "categories": categories, "annotations": annotations}
    write_text_atomically(folder / "annotations" / "instances.json", json.dumps(document) + "\n")
    return folder
