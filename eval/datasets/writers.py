"""Writing an :class:`~onnxcam.eval.datasets.object_set.ObjectSet` in any supported format
(``onnxcam make-dataset``), and the ``onnxcam eval`` options that read it back."""

from __future__ import annotations

from pathlib import Path

from onnxcam.eval.datasets.coco import write_coco_set
from onnxcam.eval.datasets.cub import write_cub_set
from onnxcam.eval.datasets.object_set import ObjectSet
from onnxcam.eval.datasets.voc import write_imagenet_set, write_voc_set
from onnxcam.eval.datasets.wsol_metadata import write_wsol_set

WRITERS = {
    "wsol": write_wsol_set,
    "imagenet": write_imagenet_set,
    "cub": write_cub_set,
    "voc": write_voc_set,
    "coco": write_coco_set,
}
FORMATS = tuple(WRITERS)
JPEG_SUFFIXES = {"wsol": ".jpg", "imagenet": ".JPEG", "cub": ".jpg", "voc": ".jpg", "coco": ".jpg"}
"""Each format's own JPEG file suffix (ILSVRC's files end in ``.JPEG``)."""
DEFAULT_IMAGE_FORMATS = {"wsol": "png", "imagenet": "jpeg", "cub": "jpeg", "voc": "jpeg", "coco": "jpeg"}
"""PNG for WSOL (the known-answer check needs exact pixels), JPEG where the data sets ship JPEG."""


def write_dataset(objects: ObjectSet, folder: str | Path, format: str, image_format: str | None = None) -> Path:
    """Write ``objects`` under ``folder`` in ``format`` (one of :data:`FORMATS`), images as ``"png"``
    (lossless) or ``"jpeg"`` (default: :data:`DEFAULT_IMAGE_FORMATS`); returns ``folder``."""
    if format not in WRITERS:
        raise ValueError(f"unknown data-set format {format!r}; valid: {', '.join(FORMATS)}")
    image_format = image_format or DEFAULT_IMAGE_FORMATS[format]
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image format must be png or jpeg, got {image_format!r}")
    suffix = ".png" if image_format == "png" else JPEG_SUFFIXES[format]
    return WRITERS[format](objects, folder, suffix=suffix)


def eval_arguments(format: str, folder: str | Path, masks: bool = False) -> list[str]:
    """The ``onnxcam eval`` options that read a set :func:`write_dataset` wrote to ``folder``
    (``masks=True``: WSOL's mask split, for PxAP)."""
    folder = Path(folder)
    arguments = {
        "wsol": ["--metadata", folder / "metadata" / ("masks" if masks else "boxes"), "--image-root", folder],
        "imagenet": [
            "--annotations", folder / "Annotations" / "CLS-LOC" / "val",
            "--image-root", folder / "Data" / "CLS-LOC" / "val",
            "--synsets", folder / "LOC_synset_mapping.txt",
        ],
        "cub": ["--root", folder],
        "voc": ["--root", folder, "--classes", folder / "classes.txt"],
        "coco": ["--annotations", folder / "annotations" / "instances.json", "--image-root", folder / "images"],
    }[format]
    return ["--dataset", format, *(str(value) for value in arguments)]
