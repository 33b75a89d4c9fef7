"""From a data set's labels to the model's class indices: ``--class-map``, ``--synsets`` and
``--classes`` files.

A *label* is what the annotation file writes on an object: an ImageNet synset id (``n01440764``), a
VOC class name, a CUB class id or a COCO category id (as text), a WSOL class index. A
:data:`ClassMapping` takes each label to the model classes that name it: one, or several synonyms
(a label on several lines of a class map). An object whose label has no entry is an error that
lists a few of the unmapped labels, raised while the set is built, before any model runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from onnxcam.eval.datasets.errors import AnnotationError, read_annotation_text

ClassMapping = dict[str, tuple[int, ...]]


def _lines(path: str | Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines of a UTF-8 file, line ends stripped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return [(n, line.rstrip("\r")) for n, line in enumerate(read_annotation_text(path).split("\n"), 1) if line.strip()]


def _ordered(path: str | Path, labels: list[tuple[int, str]]) -> ClassMapping:
    """``{label: (its position,)}``; a repeated label raises AnnotationError at its line."""
    mapping: ClassMapping = {}
    for number, label in labels:
        if label in mapping:
            raise AnnotationError(path, number, f"{label!r} is listed twice")
        mapping[label] = (len(mapping),)
    return mapping


def read_class_map(path: str | Path) -> ClassMapping:
    """Read ``dataset_label,model_class_index`` lines (``n02085620,151``; ``dog,208``).

    The index follows the last comma, so labels may hold commas; a label on several lines is named
    by several model classes. Blank lines are skipped; anything else malformed raises
    :class:`AnnotationError` with the line.
    """
    mapping: dict[str, list[int]] = {}
    for number, line in _lines(path):
        label, comma, index = line.rpartition(",")
        label = label.strip()
        if not comma or not label:
            raise AnnotationError(path, number, f"expected dataset_label,model_class_index, got {line!r}")
        try:
            value = int(index)
        except ValueError:
            value = -1
        if value < 0:
            raise AnnotationError(path, number, f"the model class index must be an integer >= 0, got {index.strip()!r}")
        if value in mapping.get(label, []):
            raise AnnotationError(path, number, f"{label!r} -> {value} is listed twice")
        mapping.setdefault(label, []).append(value)
    if not mapping:
        raise AnnotationError(path, None, "the class map is empty")
    return {label: tuple(indices) for label, indices in mapping.items()}


def read_synsets(path: str | Path) -> ClassMapping:
    """Read ImageNet synsets in model output order, ``<wnid> <names>`` per line
    (``n01440764 tench, Tinca tinca``, as ``LOC_synset_mapping.txt`` and ``synset_words.txt``):
    each wnid -> its line's position among the synsets."""
    return _ordered(path, [(number, line.split(maxsplit=1)[0]) for number, line in _lines(path)])


def read_class_names(path: str | Path) -> ClassMapping:
    """Read class names in model output order, one a line (VOC ``--classes``): name -> position."""
    return _ordered(path, [(number, line.strip()) for number, line in _lines(path)])


def ordered_mapping(labels: Iterable[str]) -> ClassMapping:
    """``{label: (k,)}`` for labels in the order given (a data set's own class order)."""
    return {label: (k,) for k, label in enumerate(labels)}


def check_mapped(labels: Iterable[str], mapping: ClassMapping, source: str, shown: int = 5) -> None:
    """Raise ``ValueError`` if some of ``labels`` have no entry in ``mapping`` (which came from
    ``source``), listing the first ``shown`` of them and how many there are."""
    missing = sorted({label for label in labels if label not in mapping})
    if missing:
        listed = ", ".join(repr(label) for label in missing[:shown]) + (", ..." if len(missing) > shown else "")
        raise ValueError(
            f"{len(missing)} label(s) of the data set have no model class in {source}: {listed}; "
            "give them one (a --class-map FILE of dataset_label,model_class_index lines)"
        )
