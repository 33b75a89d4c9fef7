"""PASCAL VOC and ImageNet (ILSVRC) XML box annotations.

One XML file per image::

    <annotation>
      <filename>2007_000027.jpg</filename>
      <size><width>486</width><height>500</height><depth>3</depth></size>
      <object>
        <name>person</name> <truncated>0</truncated> <difficult>0</difficult>
        <bndbox><xmin>174</xmin><ymin>101</ymin><xmax>349</xmax><ymax>351</ymax></bndbox>
      </object>
    </annotation>

PASCAL VOC numbers pixels from 1 (its devkit says so); ImageNet's files are read as 0-based, as the
WSOL metadata for ILSVRC copies them unchanged. :func:`read_voc_xml` returns 0-based inclusive
``(x0, y0, x1, y1)`` boxes either way. ``<truncated>`` and ``<difficult>`` are optional (0 if
absent). A malformed file raises :class:`AnnotationError` naming the file and the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxcam.eval.datasets.errors import AnnotationError
from onnxcam.eval.datasets.wsol_metadata import WSOLMetadata
from onnxcam.eval.datasets.xml_lines import Element, child, integer, parse_xml


@dataclass(frozen=True)
class VOCObject:
    """One annotated object: class name, ``(4,)`` inclusive 0-based box, VOC flags."""

    name: str
    box: np.ndarray
    difficult: bool = False
    truncated: bool = False


@dataclass(frozen=True)
class VOCAnnotation:
    """One XML file: the image's file name and size ``(width, height)``, and its objects."""

    path: Path
    filename: str
    size: tuple[int, int]
    objects: tuple[VOCObject, ...]

    def boxes(self, name: str | None = None, include_difficult: bool = True) -> np.ndarray:
        """Return the ``(K, 4)`` boxes of the objects of class ``name`` (all classes if ``None``)."""
        rows = [
            o.box
            for o in self.objects
            if (name is None or o.name == name) and (include_difficult or not o.difficult)
        ]
        return np.array(rows, dtype=np.int64).reshape(-1, 4)


def _flag(path: Path, element: Element, tag: str) -> bool:
    found = element.find(tag)
    return found is not None and integer(path, found) != 0


def read_voc_xml(path: str | Path, one_based: bool = True) -> VOCAnnotation:
    """Read one VOC/ImageNet XML file; ``one_based=True`` for PASCAL VOC, ``False`` for ImageNet.

    Checks that the size is positive and every box has ``xmin <= xmax``, ``ymin <= ymax`` and lies
    inside the image, raising :class:`AnnotationError` at the offending element's line.
    """
    path = Path(path)
    root = parse_xml(path)
    if root.tag != "annotation":
        raise AnnotationError(path, root.line, f"root element is <{root.tag}>, expected <annotation>")
    size = child(path, root, "size")
    width, height = integer(path, child(path, size, "width")), integer(path, child(path, size, "height"))
    if width <= 0 or height <= 0:
        raise AnnotationError(path, size.line, f"image size must be positive, got {width}x{height}")
    filename = child(path, root, "filename").text
    offset = 1 if one_based else 0
    objects = []
    for element in root.find_all("object"):
        name = child(path, element, "name").text
        if not name:
            raise AnnotationError(path, element.line, "<object> has an empty <name>")
        bndbox = child(path, element, "bndbox")
        corners = ("xmin", "ymin", "xmax", "ymax")
        x0, y0, x1, y1 = (integer(path, child(path, bndbox, tag)) - offset for tag in corners)
        if not (0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height):
            first = "1" if one_based else "0"
            raise AnnotationError(
                path,
                bndbox.line,
                f"box ({x0 + offset}, {y0 + offset}, {x1 + offset}, {y1 + offset}) is not a box inside the "
                f"{width}x{height} image (pixels numbered from {first})",
            )
        box = np.array([x0, y0, x1, y1], dtype=np.int64)
        objects.append(VOCObject(name, box, _flag(path, element, "difficult"), _flag(path, element, "truncated")))
    return VOCAnnotation(path, filename, (width, height), tuple(objects))


def read_voc_folder(folder: str | Path, one_based: bool = True) -> list[VOCAnnotation]:
    """Read every ``*.xml`` file of a folder (e.g. VOC's ``Annotations/``), sorted by file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"annotation folder {folder} not found")
    return [read_voc_xml(path, one_based) for path in sorted(folder.glob("*.xml"))]


def wsol_metadata_from_voc(annotations: Sequence[VOCAnnotation], class_names: Sequence[str]) -> WSOLMetadata:
    """Return WSOL metadata for the images whose objects are all of one class.

    Ids are the file names, labels index ``class_names``. Images with no object or objects of
    several classes are left out (a WSOL image has one class; ImageNet's files always do). A class
    missing from ``class_names`` or a repeated file name raises :class:`AnnotationError`.
    """
    index = {name: i for i, name in enumerate(class_names)}
    metadata = WSOLMetadata([])
    for annotation in annotations:
        names = {o.name for o in annotation.objects}
        if len(names) != 1:
            continue
        (name,) = names
        if name not in index:
            raise AnnotationError(annotation.path, None, f"class {name!r} is not among the given class names")
        if annotation.filename in metadata.class_labels:
            raise AnnotationError(annotation.path, None, f"file name {annotation.filename!r} appears twice")
        metadata.image_ids.append(annotation.filename)
        metadata.class_labels[annotation.filename] = index[name]
        metadata.image_sizes[annotation.filename] = annotation.size
        metadata.boxes[annotation.filename] = annotation.boxes()
    return metadata
