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
from xml.sax.saxutils import escape

import numpy as np

from onnxcam.atomic_write import write_text_atomically
from onnxcam.eval.datasets.errors import AnnotationError
from onnxcam.eval.datasets.object_set import ObjectSet, write_file_text, write_image
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


def voc_xml(filename: str, size: tuple[int, int], objects: Sequence[tuple[str, np.ndarray]], one_based: bool, database: str) -> str:
    """The XML text of one image: ``objects`` are ``(name, (4,) inclusive 0-based box)`` pairs,
    written 1-based (PASCAL VOC) or 0-based (ImageNet); the layout of the data sets' own files."""
    offset = 1 if one_based else 0
    parts = [
        "<annotation>\n",
        f"\t<folder>{escape(database)}</folder>\n\t<filename>{escape(filename)}</filename>\n",
        f"\t<source>\n\t\t<database>{escape(database)}</database>\n\t</source>\n",
        f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n\t\t<depth>3</depth>\n\t</size>\n",
        "\t<segmented>0</segmented>\n",
    ]
    for name, box in objects:
        x0, y0, x1, y1 = (int(v) + offset for v in box)
        parts.append(
            f"\t<object>\n\t\t<name>{escape(name)}</name>\n\t\t<pose>Unspecified</pose>\n"
            "\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n"
            f"\t\t\t<xmin>{x0}</xmin>\n\t\t\t<ymin>{y0}</ymin>\n\t\t\t<xmax>{x1}</xmax>\n\t\t\t<ymax>{y1}</ymax>\n"
            "\t\t</bndbox>\n\t</object>\n"
        )
    parts.append("</annotation>\n")
    return "".join(parts)


def _named_objects(objects: ObjectSet, i: int, names: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    return [(names[int(label)], box) for label, box in zip(objects.labels[i], objects.boxes[i])]


def write_voc_set(objects: ObjectSet, folder: str | Path, suffix: str = ".jpg") -> Path:
    """Write ``objects`` as a PASCAL VOC tree under ``folder`` and return ``folder``.

    ``JPEGImages/NNNNNN<suffix>``, ``Annotations/NNNNNN.xml`` (1-based boxes, class names as
    ``<name>``), ``ImageSets/Main/test.txt`` (the image stems) and ``classes.txt`` (the class
    names, one a line, in class-index order: ``--classes`` of ``onnxcam eval --dataset voc``).
    """
    folder = Path(folder)
    stems = [f"{i + 1:06d}" for i in range(len(objects))]
    for i, stem in enumerate(stems):
        write_image(folder / "JPEGImages" / f"{stem}{suffix}", objects.images[i])
        text = voc_xml(f"{stem}{suffix}", objects.size(i), _named_objects(objects, i, objects.class_names), True, "VOC")
        write_file_text(folder / "Annotations" / f"{stem}.xml", text)
    write_text_atomically(folder / "ImageSets" / "Main" / "test.txt", "".join(f"{stem}\n" for stem in stems))
    write_text_atomically(folder / "classes.txt", "".join(f"{name}\n" for name in objects.class_names))
    return folder


def made_up_wnids(count: int) -> list[str]:
    """WordNet-style ids for classes that have none (``n99000000``, ``n99000001``, ...: noun offsets
    no WordNet synset uses)."""
    return [f"n{99_000_000 + k:08d}" for k in range(count)]


def write_imagenet_set(objects: ObjectSet, folder: str | Path, suffix: str = ".JPEG") -> Path:
    """Write ``objects`` in the ILSVRC CLS-LOC layout under ``folder`` and return ``folder``.

    ``Data/CLS-LOC/val/ILSVRC2012_val_NNNNNNNN<suffix>`` (numbered from 1), one XML file per image in
    ``Annotations/CLS-LOC/val/`` (0-based boxes, the synset id as ``<name>``; ``<filename>`` without
    its extension when it is ``.JPEG``, as in ILSVRC's own files) and ``LOC_synset_mapping.txt``
    (``<wnid> <class name>`` per line, in class-index order: ``--synsets``). The synthetic classes
    get :func:`made_up_wnids`.
    """
    folder = Path(folder)
    wnids = made_up_wnids(len(objects.class_names))
    for i in range(len(objects)):
        stem = f"ILSVRC2012_val_{i + 1:08d}"
        write_image(folder / "Data" / "CLS-LOC" / "val" / f"{stem}{suffix}", objects.images[i])
        filename = stem if suffix == ".JPEG" else f"{stem}{suffix}"
        text = voc_xml(filename, objects.size(i), _named_objects(objects, i, wnids), False, "ILSVRC_2012")
        write_file_text(folder / "Annotations" / "CLS-LOC" / "val" / f"{stem}.xml", text)
    lines = (f"{wnid} {name}\n" for wnid, name in zip(wnids, objects.class_names))
    write_text_atomically(folder / "LOC_synset_mapping.txt", "".join(lines))
    return folder
