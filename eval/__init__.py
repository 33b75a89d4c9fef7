"""onnxcam.eval: heatmaps + ground truth -> boxes, IoU, localization metrics.

Plain functions over numpy arrays. Boxes are ``(x0, y0, x1, y1)`` integer pixel coordinates with
inclusive bounds; heatmaps are 2-D arrays indexed ``[y, x]``; accuracies are percentages.

- :mod:`onnxcam.eval.boxes`: boxes from a heatmap (largest blob or every blob), IoU, box scaling;
- :mod:`onnxcam.eval.localization`: top-1 and GT-known localization at a fixed threshold;
- :mod:`onnxcam.eval.wsol`: the WSOL protocol of Choe et al. (CVPR 2020): MaxBoxAcc,
  MaxBoxAccV2, PxAP, with curves and best thresholds;
- :mod:`onnxcam.eval.scoring`: maps + WSOL metadata -> metrics (``onnxcam score``);
- :mod:`onnxcam.eval.detections`: maps to scored detections, non-maximum suppression;
- :mod:`onnxcam.eval.detection_ap`: COCO AP (AP, AP50, AP75, per class) through pycocotools;
- :mod:`onnxcam.eval.datasets`: readers (WSOL metadata, VOC/ImageNet XML, CUB-200-2011, COCO)
  and the synthetic localization set.
"""

from onnxcam.eval.boxes import box_from_heatmap, box_iou, boxes_from_heatmap, scale_boxes, scored_boxes_from_heatmap
from onnxcam.eval.detections import Detections, detections_from_maps, nms
from onnxcam.eval.localization import gt_known_loc, top1_loc
from onnxcam.eval.wsol import (
    iou_curves,
    max_box_acc,
    max_box_acc_v2,
    normalize_scoremap,
    pxap,
    scoremap_thresholds,
    wsol_boxes_from_scoremap,
    wsol_scoremap,
)

__all__ = [
    "Detections",
    "box_from_heatmap",
    "box_iou",
    "boxes_from_heatmap",
    "detections_from_maps",
    "gt_known_loc",
    "iou_curves",
    "max_box_acc",
    "max_box_acc_v2",
    "nms",
    "normalize_scoremap",
    "pxap",
    "scale_boxes",
    "scored_boxes_from_heatmap",
    "scoremap_thresholds",
    "top1_loc",
    "wsol_boxes_from_scoremap",
    "wsol_scoremap",
]
