"""Ground-truth readers, the synthetic localization set and its multi-object variant.

Every reader returns boxes as inclusive 0-based ``(x0, y0, x1, y1)`` int64 arrays and raises
:class:`AnnotationError` (a ``ValueError``) naming the file and line of a malformed annotation.
"""

from onnxcam.eval.datasets.coco import COCOBoxes, read_coco_json, write_coco_set, wsol_metadata_from_coco
from onnxcam.eval.datasets.cub import CUB200, read_cub200, write_cub_set, wsol_metadata_from_cub
from onnxcam.eval.datasets.errors import AnnotationError
from onnxcam.eval.datasets.eval_sets import (
    coco_eval_set,
    cub_eval_set,
    imagenet_eval_set,
    voc_eval_set,
    wsol_eval_set,
)
from onnxcam.eval.datasets.object_set import ObjectSet
from onnxcam.eval.datasets.multi_object import MultiObjectDataset, make_multi_object_dataset
from onnxcam.eval.datasets.synthetic import CLASS_NAMES, SyntheticDataset, make_synthetic_dataset
from onnxcam.eval.datasets.voc import (
    VOCAnnotation,
    read_voc_folder,
    read_voc_xml,
    write_imagenet_set,
    write_voc_set,
    wsol_metadata_from_voc,
)
from onnxcam.eval.datasets.wsol_metadata import (
    WSOLMetadata,
    read_wsol_mask,
    read_wsol_metadata,
    write_wsol_metadata,
    write_wsol_set,
)
from onnxcam.eval.datasets.writers import FORMATS, write_dataset

__all__ = [
    "CLASS_NAMES",
    "COCOBoxes",
    "CUB200",
    "AnnotationError",
    "FORMATS",
    "ObjectSet",
    "MultiObjectDataset",
    "SyntheticDataset",
    "VOCAnnotation",
    "WSOLMetadata",
    "make_multi_object_dataset",
    "coco_eval_set",
    "cub_eval_set",
    "imagenet_eval_set",
    "make_synthetic_dataset",
    "read_coco_json",
    "read_cub200",
    "read_voc_folder",
    "read_voc_xml",
    "read_wsol_mask",
    "read_wsol_metadata",
    "voc_eval_set",
    "wsol_metadata_from_coco",
    "wsol_metadata_from_cub",
    "wsol_metadata_from_voc",
    "write_coco_set",
    "write_cub_set",
    "write_dataset",
    "write_imagenet_set",
    "write_voc_set",
    "write_wsol_metadata",
    "write_wsol_set",
    "wsol_eval_set",
]
