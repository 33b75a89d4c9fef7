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
  and the synthetic localization set;
- :mod:`onnxcam.eval.map_localization`: threshold-free localization (pointing game, energy, rank
  accuracy, pixel AUC, sparseness) and boxes to masks;
- :mod:`onnxcam.eval.faithfulness`: perturbation metrics (Average Drop / Increase, deletion and
  insertion, ROAD), batched forward passes on a ``CamSession``;
- :mod:`onnxcam.eval.sanity`: model randomization (Adebayo et al.) and map similarity.
"""

from onnxcam.eval.boxes import box_from_heatmap, box_iou, boxes_from_heatmap, scale_boxes, scored_boxes_from_heatmap
from onnxcam.eval.detections import Detections, detections_from_maps, nms
from onnxcam.eval.faithfulness import average_drop_increase, deletion_insertion, road, road_combined
from onnxcam.eval.localization import gt_known_loc, top1_loc
from onnxcam.eval.sanity import map_similarity, randomize_layers
from onnxcam.eval.map_localization import (
    boxes_to_masks,
    energy_pointing_game,
    pixel_auc,
    pointing_game,
    relevance_rank_accuracy,
    sparseness,
)
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
    "average_drop_increase",
    "box_from_heatmap",
    "box_iou",
    "boxes_from_heatmap",
    "boxes_to_masks",
    "deletion_insertion",
    "energy_pointing_game",
    "detections_from_maps",
    "gt_known_loc",
    "iou_curves",
    "map_similarity",
    "max_box_acc",
    "max_box_acc_v2",
    "nms",
    "normalize_scoremap",
    "pixel_auc",
    "pointing_game",
    "pxap",
    "randomize_layers",
    "relevance_rank_accuracy",
    "road",
    "road_combined",
    "scale_boxes",
    "scored_boxes_from_heatmap",
    "scoremap_thresholds",
    "sparseness",
    "top1_loc",
    "wsol_boxes_from_scoremap",
    "wsol_scoremap",
]
