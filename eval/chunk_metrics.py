"""The map metrics of one evaluation chunk, beyond boxes: each distinct map's threshold-free
localization (:mod:`onnxcam.eval.map_localization`) and faithfulness (:mod:`onnxcam.eval.faithfulness`).

A chunk file keeps them per image and weighting as ``<weighting>__<key>`` next to the box curves
(:mod:`onnxcam.eval.chunks`), as fractions, as the functions return them (Average Drop and
Increase in Confidence already in percent); the report turns them into percent.

- localization (no extra passes): the map at the image's size against the object's mask (the
  set's mask, else its boxes rasterized by :func:`~onnxcam.eval.map_localization.boxes_to_masks`);
- faithfulness (extra forward passes on the graph cut to ``logits``): the map at the model's input
  resolution on the preprocessed image; Average Drop / Increase in Confidence, deletion / insertion
  as torchcam (20 steps, baseline 0);
- road: ROAD combined as pytorch-grad-cam (percentiles 10..90, noise 0.01, seeded), a group of its
  own because its noisy linear imputation (a sparse solve per image and percentile) costs five
  times the rest of the faithfulness metrics (0.33 against 0.06 s per map on synthetic_resnet).

The pass-hungry groups (:data:`PASS_GROUPS`) each get a prefix of a method's images that its own
budget pays for; the chunk file records the worker seconds per image each took (``seconds__<group>``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRIC_GROUPS = ("localization", "faithfulness", "road", "sanity")
"""``onnxcam eval --metrics`` choices; box metrics (MaxBoxAcc, PxAP, fixed thresholds) always run."""
CHUNK_GROUPS = ("localization", "faithfulness", "road")
"""The groups computed in the (method, chunk) workers; ``sanity`` is a step per model."""
PASS_GROUPS = ("faithfulness", "road")
"""The groups that cost extra forward passes: each sized by its own budget."""
LOCALIZATION_KEYS = ("pointing_game", "energy_pointing_game", "relevance_rank_accuracy", "pixel_auc", "sparseness")
FAITHFULNESS_KEYS = ("average_drop", "increase_in_confidence", "deletion", "insertion")
GROUP_KEYS = {"localization": LOCALIZATION_KEYS, "faithfulness": FAITHFULNESS_KEYS, "road": ("road_combined",)}


SECONDS_PREFIX = "seconds__"


def seconds_key(group: str) -> str:
    """Chunk-file key of the worker seconds per image that ``group`` took (sizes its budget)."""
    return f"{SECONDS_PREFIX}{group}"


def is_timing_key(key: str) -> bool:
    """Whether a chunk-file key holds a measured time, not a result: two runs that agree on every
    result differ there (engines, resumes and machines are compared without these keys)."""
    return key.startswith(SECONDS_PREFIX)


def check_groups(groups: Sequence[str]) -> tuple[str, ...]:
    """``groups`` in :data:`METRIC_GROUPS` order, each known, none repeated."""
    unknown = sorted(set(groups) - set(METRIC_GROUPS))
    if unknown:
        raise ValueError(f"unknown metrics {', '.join(unknown)}; choose from {', '.join(METRIC_GROUPS)}")
    return tuple(group for group in METRIC_GROUPS if group in groups)


def object_masks(gt_boxes: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None, shapes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Each image's boolean ``(H, W)`` object mask at the image's size ``shapes[i]``: the set's own
    (nearest-neighbour resized where it was stored at another size, as WSOL's OpenImages masks
    are), else the union of its class boxes."""
    import cv2

    from onnxcam.eval.map_localization import boxes_to_masks

    if masks is not None:
        return [
            np.asarray(mask, dtype=bool)
            if np.shape(mask) == tuple(shape)
            else cv2.resize(np.asarray(mask, dtype=np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
            for mask, shape in zip(masks, shapes)
        ]
    return [boxes_to_masks([boxes], shape)[0] for boxes, shape in zip(gt_boxes, shapes)]


def localization_scores(maps: Sequence[np.ndarray], object_masks: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Threshold-free localization of each map ``(H_i, W_i)`` against its mask: ``{key: (n,)}``.

    Images differ in size, so each is scored alone; a mask that covers the whole image has no
    background to rank against and gets the chance AUC of 0.5.
    """
    from onnxcam.eval import map_localization as ml

    rows = {key: np.empty(len(maps)) for key in LOCALIZATION_KEYS}
    for i, (heatmap, mask) in enumerate(zip(maps, object_masks)):
        one, truth = np.asarray(heatmap)[None], np.asarray(mask)[None]
        rows["pointing_game"][i] = ml.pointing_game(one, truth)[0]
        rows["energy_pointing_game"][i] = ml.energy_pointing_game(one, truth)[0]
        rows["relevance_rank_accuracy"][i] = ml.relevance_rank_accuracy(one, truth)[0]
        rows["pixel_auc"][i] = 0.5 if truth.all() else ml.pixel_auc(one, truth)[0]
        rows["sparseness"][i] = ml.sparseness(one)[0]
    return rows


def maps_at_input(maps: Sequence[np.ndarray], input_size: tuple[int, int]) -> np.ndarray:
    """Maps at the images' own sizes -> ``(n, H, W)`` float32 at the model's input size (bilinear,
    min-max normalised again); maps already at that size are kept as they are."""
    from onnxcam.runtime.normalization import minmax_normalize
    from onnxcam.runtime.resize import resize_maps

    out = np.empty((len(maps), *input_size), dtype=np.float32)
    for i, heatmap in enumerate(maps):
        heatmap = np.asarray(heatmap, dtype=np.float32)
        out[i] = heatmap if heatmap.shape == tuple(input_size) else minmax_normalize(resize_maps(heatmap[None], input_size))[0]
    return out


def pass_scores(group: str, session, batch: np.ndarray, maps: np.ndarray, class_index: np.ndarray) -> dict[str, np.ndarray]:
    """The ``faithfulness`` or ``road`` metrics of each map ``(n, H, W)`` for its preprocessed image
    ``batch[i]`` and class: ``{key: (n,)}`` (the extra passes batched by the metric functions)."""
    from onnxcam.eval.faithfulness import average_drop_increase, deletion_insertion, road_combined

    if group == "road":
        return {"road_combined": road_combined(session, batch, maps, class_index)}
    drop, increase = average_drop_increase(session, batch, maps, class_index)
    deletion, insertion = deletion_insertion(session, batch, maps, class_index)
    return {"average_drop": drop, "increase_in_confidence": increase, "deletion": deletion, "insertion": insertion}
