"""Evaluation sets read from annotated folders: WSOL-eval metadata, ImageNet (ILSVRC) XML,
CUB-200-2011, PASCAL VOC and COCO (``onnxcam eval --dataset wsol|imagenet|cub|voc|coco``).

Each builder returns an on-disk :class:`~onnxcam.eval.evalset.EvalSet`: image paths and
annotations, no pixels; sizes from the annotations (WSOL ``image_sizes.txt``, the XML ``<size>``,
COCO ``images``) or, where the format has none (CUB, OpenImages), from the image file's header.
Labels become model classes through the format's own class order (``--synsets``, ``--classes``,
CUB's and COCO's ids sorted, WSOL's indices as they are) or a ``--class-map``
(:mod:`onnxcam.eval.datasets.class_map`); every label is checked before the set is returned.

An image whose objects name several model classes (VOC, COCO, ImageNet) is evaluated once per
class, as the entry ``<image id>#<label>``: that class explained against that class's boxes.
Objects marked *difficult* (VOC, ImageNet) or *crowd* (COCO) are kept as boxes a map may match,
but a class whose objects in an image are all difficult or crowd is not evaluated on that image
(VOC's classification rule; COCO's evaluation ignores crowd regions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onnxcam.eval.datasets.class_map import (
    ClassMapping,
    check_mapped,
    ordered_mapping,
    read_class_map,
    read_class_names,
    read_synsets,
)
from onnxcam.eval.datasets.coco import read_coco_json
from onnxcam.eval.datasets.cub import box_in_image, read_cub200
from onnxcam.eval.datasets.voc import VOCAnnotation, read_voc_folder
from onnxcam.eval.datasets.wsol_metadata import read_wsol_metadata

if TYPE_CHECKING:
    from onnxcam.eval.evalset import EvalSet

CUB_SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class AnnotatedImage:
    """One image of an on-disk set: ``id``, file ``path``, ``size`` ``(width, height)`` (``None``:
    read the header), per object its ``labels[k]``, ``boxes[k]`` (``(K, 4)`` inclusive) and
    ``hard[k]`` (difficult or crowd), and ``masks``: instance mask files (WSOL mask splits)."""

    id: str
    path: Path
    size: tuple[int, int] | None
    labels: tuple[str, ...]
    boxes: np.ndarray
    hard: tuple[bool, ...]
    masks: tuple[str, ...] = ()


def _mapping(class_map: str | Path | None, default: ClassMapping | None, default_source: str) -> tuple[ClassMapping | None, str]:
    """The class map if one is given, else the format's own order; with the source to name in errors."""
    if class_map is not None:
        return read_class_map(class_map), f"the class map {class_map}"
    return default, default_source


def _resolved(path: str | Path | None) -> str | None:
    """An absolute path for the spec in ``run.json``: a resumed run finds the same files from anywhere."""
    return None if path is None else str(Path(path).resolve())


def _header_size(image: AnnotatedImage) -> tuple[int, int]:
    """The image's size from its file header; ``(0, 0)`` for a missing or unreadable file, which the
    run reports (by id and path) or skips (``--skip-missing``) before any work."""
    from onnxcam.eval.evalset import UnreadableImageError, header_size

    try:
        return header_size(image.path)
    except UnreadableImageError:
        return (0, 0)


def _mask_boxes(paths: Sequence[Path], size: tuple[int, int], image_id: str) -> np.ndarray:
    """``(K, 4)`` tight boxes of instance masks, scaled to the image's ``(width, height)`` when a mask
    file has another size: a WSOL mask split has no boxes, and a run scores boxes too."""
    import cv2

    from onnxcam.eval.evalset import UnreadableImageError

    rows = []
    for path in paths:
        pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if pixels is None:
            raise UnreadableImageError(f"mask of image {image_id!r} ({path}) is missing or unreadable")
        ys, xs = np.nonzero(pixels > 0)
        if not len(xs):
            continue
        sx, sy = size[0] / pixels.shape[1], size[1] / pixels.shape[0]
        rows.append([int(xs.min() * sx), int(ys.min() * sy), int((xs.max() + 1) * sx) - 1, int((ys.max() + 1) * sy) - 1])
    if not rows:
        raise ValueError(f"the masks of image {image_id!r} are empty")
    return np.array(rows, dtype=np.int64)


def annotated_eval_set(
    name: str,
    images: Sequence[AnnotatedImage],
    mapping: ClassMapping | None,
    source: str,
    spec: dict[str, object],
) -> EvalSet:
    """The :class:`~onnxcam.eval.evalset.EvalSet` of ``images``: one entry per image and model-class
    group (see the module docstring). ``mapping=None``: labels are model indices already (WSOL)."""
    from onnxcam.eval.evalset import EvalSet, ImageFiles, MaskFiles

    labels = {label for image in images for label in image.labels}
    if mapping is None:
        bad = sorted(label for label in labels if not label.isdigit())
        if bad:
            raise ValueError(f"class labels must be model class indices >= 0 (or give a --class-map): {bad[:5]}")
        mapping = {label: (int(label),) for label in labels}
    check_mapped(labels, mapping, source)
    ids, paths, sizes, boxes, box_classes, masks = [], [], [], [], [], []
    for image in images:
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, label in enumerate(image.labels):
            groups.setdefault(mapping[label], []).append(k)
        size = image.size or _header_size(image)
        for classes, members in groups.items():
            if all(image.hard[k] for k in members):
                continue
            group_labels = "+".join(dict.fromkeys(image.labels[k] for k in members))
            ids.append(image.id if len(groups) == 1 else f"{image.id}#{group_labels}")
            paths.append(str(image.path))
            sizes.append(size)
            boxes.append(np.asarray(image.boxes, dtype=np.int64)[members])
            box_classes.append([classes] * len(members))
            masks.append(image.masks)
    if not ids:
        raise ValueError(f"data set {name!r} ({source}) has no image with an object to evaluate")
    return EvalSet(
        name=name,
        ids=ids,
        images=ImageFiles(tuple(ids), tuple(paths)),
        boxes=boxes,
        box_classes=box_classes,
        masks=MaskFiles(tuple(ids), tuple(masks)) if any(masks) else None,
        spec={"dataset": name, **spec, "n": len(ids)},
        sizes=sizes,
    )


def wsol_eval_set(
    metadata: str | Path, image_root: str | Path, mask_root: str | Path | None = None, class_map: str | Path | None = None
) -> EvalSet:
    """A WSOL-eval metadata split (:func:`~onnxcam.eval.datasets.read_wsol_metadata`): images at
    ``image_root / image_id``; class labels are model indices unless ``class_map`` maps them.

    A box split gives its boxes; a mask split (OpenImages layout) gives its masks, read from
    ``mask_root`` (default: ``image_root``, as the WSOL code's layout has it) for PxAP, and the
    tight boxes of its instance masks for the box metrics. Ignore masks are not used.
    """
    meta = read_wsol_metadata(metadata)
    if not meta.boxes and not meta.mask_paths:
        raise ValueError(f"{metadata} has no localization.txt with boxes or masks")
    unlabelled = [i for i in meta.image_ids if i not in meta.class_labels]
    if unlabelled:
        raise ValueError(f"{len(unlabelled)} image(s) of {metadata} have no class label in class_labels.txt: {unlabelled[:5]}")
    image_root, mask_root = Path(image_root), Path(mask_root if mask_root is not None else image_root)
    images = []
    for image_id in meta.image_ids:
        masks = tuple(str(mask_root / p) for p in meta.mask_paths.get(image_id, ()))
        image = AnnotatedImage(image_id, image_root / image_id, meta.image_sizes.get(image_id), (), np.zeros((0, 4)), (), masks)
        size = image.size or _header_size(image)
        if meta.boxes:
            boxes = meta.boxes.get(image_id, np.zeros((0, 4), dtype=np.int64))
        elif masks:
            boxes = _mask_boxes([Path(p) for p in masks], size, image_id)
        else:
            continue
        label = str(meta.class_labels[image_id])
        images.append(AnnotatedImage(image_id, image.path, size, (label,) * len(boxes), boxes, (False,) * len(boxes), masks))
    mapping, source = _mapping(class_map, None, f"{metadata}/class_labels.txt")
    spec = {"metadata": _resolved(metadata), "image_root": _resolved(image_root), "mask_root": _resolved(mask_root),
            "class_map": _resolved(class_map)}
    return annotated_eval_set("wsol", images, mapping, source, spec)


def _xml_images(annotations: Sequence[VOCAnnotation], image_root: Path, default_suffix: str) -> list[AnnotatedImage]:
    """One :class:`AnnotatedImage` per XML file; ILSVRC's ``<filename>`` has no extension
    (``default_suffix`` is added) and a few of its files hold ``%s``: the XML file's stem is used."""
    images = []
    for annotation in annotations:
        name = annotation.filename if annotation.filename not in ("", "%s") else annotation.path.stem
        if not Path(name).suffix:
            name += default_suffix
        objects = annotation.objects
        images.append(AnnotatedImage(
            id=name, path=image_root / name, size=annotation.size, labels=tuple(o.name for o in objects),
            boxes=annotation.boxes(), hard=tuple(o.difficult for o in objects),
        ))
    return images


def imagenet_eval_set(
    annotations: str | Path, image_root: str | Path, synsets: str | Path | None = None, class_map: str | Path | None = None
) -> EvalSet:
    """ILSVRC XML boxes (0-based, one file per image in ``annotations``), images in ``image_root``
    (``<filename>.JPEG``); the model class of a box is its synset's position in ``synsets`` (the
    model's 1,000 synsets in output order, ``n01440764 tench, Tinca tinca`` per line), or its
    ``class_map`` entry."""
    if synsets is None and class_map is None:
        raise ValueError("the imagenet data set needs --synsets FILE (the model's synsets in output order) or --class-map FILE")
    default = read_synsets(synsets) if synsets is not None else None
    mapping, source = _mapping(class_map, default, f"the synsets {synsets}")
    images = _xml_images(read_voc_folder(annotations, one_based=False), Path(image_root), ".JPEG")
    spec = {"annotations": _resolved(annotations), "image_root": _resolved(image_root), "synsets": _resolved(synsets),
            "class_map": _resolved(class_map)}
    return annotated_eval_set("imagenet", images, mapping, source, spec)


def voc_eval_set(root: str | Path, classes: str | Path | None = None, class_map: str | Path | None = None) -> EvalSet:
    """A PASCAL VOC tree: every ``root/Annotations/*.xml`` (1-based boxes), images in
    ``root/JPEGImages``; the model class of an object is its name's line in ``classes`` (one name a
    line, in model output order), or its ``class_map`` entry."""
    if classes is None and class_map is None:
        raise ValueError("the voc data set needs --classes FILE (class names in model output order) or --class-map FILE")
    default = read_class_names(classes) if classes is not None else None
    mapping, source = _mapping(class_map, default, f"the classes {classes}")
    root = Path(root)
    images = _xml_images(read_voc_folder(root / "Annotations", one_based=True), root / "JPEGImages", ".jpg")
    spec = {"root": _resolved(root), "classes": _resolved(classes), "class_map": _resolved(class_map)}
    return annotated_eval_set("voc", images, mapping, source, spec)


def cub_eval_set(root: str | Path, split: str = "test", class_map: str | Path | None = None) -> EvalSet:
    """CUB-200-2011's own files under ``root`` (:func:`~onnxcam.eval.datasets.read_cub200`), the
    ``split`` ``"test"`` (default), ``"train"`` or ``"all"``; labels are CUB's class ids
    (``classes.txt``), model class = the id's rank (``001`` -> 0) unless ``class_map`` maps them.
    Sizes come from the image headers; boxes go through :func:`~onnxcam.eval.datasets.cub.box_in_image`."""
    if split not in CUB_SPLITS:
        raise ValueError(f"CUB split must be one of {', '.join(CUB_SPLITS)}, got {split!r}")
    cub = read_cub200(root)
    images = []
    for path, label, in_train, box in zip(cub.image_paths, cub.labels, cub.is_train, cub.boxes):
        if split != "all" and bool(in_train) != (split == "train"):
            continue
        image = AnnotatedImage(path, Path(root) / "images" / path, None, (str(cub.class_ids[label]),), box[None], (False,))
        size = _header_size(image)
        boxes = box_in_image(box, size, path)[None] if size != (0, 0) else box[None]
        images.append(AnnotatedImage(image.id, image.path, size, image.labels, boxes, image.hard))
    default = ordered_mapping(str(class_id) for class_id in cub.class_ids)
    mapping, source = _mapping(class_map, default, f"{root}/classes.txt")
    spec = {"root": _resolved(root), "split": split, "class_map": _resolved(class_map)}
    return annotated_eval_set("cub", images, mapping, source, spec)


def coco_eval_set(annotations: str | Path, image_root: str | Path, class_map: str | Path | None = None) -> EvalSet:
    """A COCO-style JSON file (:func:`~onnxcam.eval.datasets.read_coco_json`), images at
    ``image_root / file_name``; labels are category ids, model class = the id's rank among the
    file's categories (sorted by id) unless ``class_map`` maps them. Images without boxes are left out."""
    coco = read_coco_json(annotations)
    order = np.argsort(coco.image_ids, kind="stable")  # each image's annotations, in file order
    starts = np.searchsorted(coco.image_ids[order], [image.id for image in coco.images])
    ends = np.searchsorted(coco.image_ids[order], [image.id for image in coco.images], side="right")
    images = []
    for image, start, end in zip(coco.images, starts, ends):
        if start == end:
            continue
        keep = order[start:end]
        images.append(AnnotatedImage(
            id=image.file_name, path=Path(image_root) / image.file_name, size=(image.width, image.height),
            labels=tuple(str(c) for c in coco.category_ids[keep]), boxes=coco.boxes[keep],
            hard=tuple(bool(c) for c in coco.iscrowd[keep]),
        ))
    default = ordered_mapping(str(category_id) for category_id in sorted(coco.categories))
    mapping, source = _mapping(class_map, default, f"the categories of {annotations}")
    spec = {"annotations": _resolved(annotations), "image_root": _resolved(image_root), "class_map": _resolved(class_map)}
    return annotated_eval_set("coco", images, mapping, source, spec)


BUILDERS = {
    "wsol": wsol_eval_set,
    "imagenet": imagenet_eval_set,
    "cub": cub_eval_set,
    "voc": voc_eval_set,
    "coco": coco_eval_set,
}


def on_disk_eval_set_from_spec(spec: dict[str, object]) -> EvalSet:
    """Rebuild an on-disk set from the ``dataset`` spec its run stored in ``run.json``."""
    name = str(spec["dataset"])
    if name not in BUILDERS:
        raise ValueError(f"{name!r} is not an on-disk data set; valid: {', '.join(BUILDERS)}")
    return BUILDERS[name](**{key: value for key, value in spec.items() if key not in ("dataset", "n")})


def check_class_indices(data: EvalSet, num_classes: int, model: str) -> None:
    """Raise ``ValueError`` if a box of ``data`` names a class the model (``num_classes`` outputs)
    does not have, listing a few: before any work, not as an error deep in a run."""
    found = sorted({c for classes in data.box_classes for box in classes for c in box if not 0 <= c < num_classes})
    if found:
        raise ValueError(
            f"data set {data.name!r} names class indices {found[:5]}{' ...' if len(found) > 5 else ''} but {model} "
            f"has {num_classes} classes; map the data set's labels with --class-map FILE"
        )
