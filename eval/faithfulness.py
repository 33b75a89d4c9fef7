"""Faithfulness: does perturbing the input where the map points change the model's score?

Each metric reruns the model on perturbed copies of a preprocessed batch, batched, on the forward
graph alone (``input`` -> ``logits``, cut from the CAM-ready file: no backward is computed), and
reads the softmax probability of the explained class. ``batch`` is float32 ``(N, C, H, W)`` as the
model takes it, ``maps`` ``(N, H, W)`` at input resolution in [0, 1], ``class_index`` ``(N,)``.

- :func:`average_drop_increase`: Chattopadhyay et al., "Grad-CAM++" (WACV 2018), Average Drop and
  Increase in Confidence, as torchcam 0.5's ``ClassificationMetric`` and pytorch-grad-cam 1.5's
  ``CamMultImageConfidenceChange`` compute them;
- :func:`deletion_insertion`: Petsiuk et al., "RISE" (BMVC 2018), deletion and insertion AUCs, as
  torchcam 0.5's ``DeletionInsertionMetric`` defines them, or with ``protocol="rise"`` as the RISE
  code does;
- :func:`road`, :func:`road_combined`: Rong et al., "ROAD" (ICML 2022), as pytorch-grad-cam 1.5's
  ``ROADMostRelevantFirst`` / ``ROADLeastRelevantFirst`` / ``ROADCombined``.

See docs/faithfulness.md for the definitions and where the references depart from their papers.

>>> from onnxcam.runtime import CamSession  # doctest: +SKIP
>>> session = CamSession("resnet50.cam.onnx")  # doctest: +SKIP
>>> result = session.explain(batch, "gradcam", "abs")  # doctest: +SKIP
>>> deletion, insertion = deletion_insertion(session, batch, result.maps, result.class_index)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage

from onnxcam.eval.map_arrays import check_class_index, check_maps
from onnxcam.eval.road_imputation import linear_imputation
from onnxcam.runtime.class_scores import softmax
from onnxcam.runtime.methods.passes import chunk_rows

ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
RISE_PIXELS_PER_STEP = 224
RISE_BLUR_SIZE, RISE_BLUR_SIGMA = 11, 5.0
"""The RISE code's insertion canvas: each channel convolved (zero padding) with ``gkern(11, 5)``."""


def _checked(session, batch: np.ndarray, maps: np.ndarray, class_index: np.ndarray):
    """``(batch, maps (float32), class_index)`` after checking them against each other and the model."""
    batch, sizes = session.prepare(batch)
    if sizes is not None:
        raise ValueError("faithfulness metrics need the preprocessed float32 (N, C, H, W) batch the maps explain")
    maps = check_maps(maps).astype(np.float32)
    if maps.shape != (batch.shape[0], *batch.shape[2:]):
        raise ValueError(f"maps have shape {maps.shape}; the batch {batch.shape} needs (N, H, W) = "
                         f"{(batch.shape[0], *batch.shape[2:])}")
    class_index = check_class_index(class_index, batch.shape[0])
    classes = session.metadata.num_classes
    if classes is not None and (class_index >= classes).any():
        raise ValueError(f"class_index {class_index.max()} is out of range: {session.path.name} has {classes} classes")
    return batch, maps, class_index


def class_probabilities(session, inputs: np.ndarray, class_index: np.ndarray) -> np.ndarray:
    """Softmax probability of ``class_index[i]`` for ``inputs[i]``: ``(M, C, H, W)`` -> ``(M,)`` float64,
    from the forward graph alone."""
    probabilities = softmax(session.forward_logits(inputs))
    return probabilities[np.arange(len(probabilities)), class_index]


def average_drop_increase(
    session, batch: np.ndarray, maps: np.ndarray, class_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Average Drop and Increase in Confidence per image, in percent: ``(drop, increase)``, each
    ``(N,)`` float64.

    With ``Y`` the class's softmax probability for the input and ``O`` for ``input * map`` (the
    product taken on the preprocessed tensor, as torchcam and pytorch-grad-cam do; the paper
    does not say), ``drop = 100 max(0, Y - O) / Y`` and ``increase = 100 [O > Y]``.
    """
    batch, maps, class_index = _checked(session, batch, maps, class_index)
    before = class_probabilities(session, batch, class_index)
    after = class_probabilities(session, batch * maps[:, None], class_index)
    drop = 100.0 * np.maximum(0.0, before - after) / np.maximum(before, np.finfo(np.float64).tiny)
    return drop, 100.0 * (after > before)


def pixel_ranks(maps: np.ndarray) -> np.ndarray:
    """Each pixel's rank by decreasing map value, ties in row-major order: ``(N, H, W)`` -> ``(N, H*W)``
    int64, 0 for the most relevant pixel (torchcam's stable descending sort)."""
    flat = maps.reshape(len(maps), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None, :], axis=1)
    return ranks


def perturbation_curves(
    session,
    start: np.ndarray,
    finish: np.ndarray,
    ranks: np.ndarray,
    counts: Sequence[int],
    class_index: np.ndarray,
) -> np.ndarray:
    """The class probability of each image with its ``counts[j]`` top-ranked pixels taken from
    ``finish`` and the others from ``start`` (in every channel): ``(N, len(counts))`` float64.

    start, finish: ``(N, C, H, W)``; ranks: ``(N, H*W)`` from :func:`pixel_ranks`. The perturbed
    inputs of all images and counts are made and scored in chunks of bounded memory.
    """
    n, channels, height, width = start.shape
    images, points = np.divmod(np.arange(n * len(counts)), len(counts))
    limits = np.asarray(counts, dtype=np.int64)[points]
    curves = np.empty((n, len(counts)))
    step = chunk_rows(channels * height * width)
    for s in range(0, len(images), step):
        rows, cut = images[s : s + step], limits[s : s + step]
        take = (ranks[rows] < cut[:, None]).reshape(len(rows), 1, height, width)
        inputs = np.where(take, finish[rows], start[rows])
        curves[rows, points[s : s + step]] = class_probabilities(session, inputs, class_index[rows])
    return curves


def rise_blur(batch: np.ndarray) -> np.ndarray:
    """The RISE code's insertion canvas: every channel convolved, with zero padding, with the
    11x11 kernel it makes by Gaussian-filtering (sigma 5, reflected borders) a centred impulse."""
    impulse = np.zeros((RISE_BLUR_SIZE, RISE_BLUR_SIZE))
    impulse[RISE_BLUR_SIZE // 2, RISE_BLUR_SIZE // 2] = 1.0
    kernel = ndimage.gaussian_filter(impulse, RISE_BLUR_SIGMA).astype(np.float32)
    blurred = np.empty_like(batch)
    for index in np.ndindex(*batch.shape[:2]):
        blurred[index] = cv2.filter2D(batch[index], -1, kernel, borderType=cv2.BORDER_CONSTANT)
    return blurred


def deletion_insertion(
    session,
    batch: np.ndarray,
    maps: np.ndarray,
    class_index: np.ndarray,
    steps: int = 20,
    baseline: float | np.ndarray = 0.0,
    *,
    protocol: str = "torchcam",
) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion AUCs per image: ``(deletion, insertion)``, each ``(N,)`` float64 in
    [0, 1]; a faithful map has a low deletion and a high insertion score.

    Pixels are ranked by decreasing map value (ties in row-major order), one mask for all channels.

    ``protocol="torchcam"`` (torchcam 0.5's ``DeletionInsertionMetric``): ``steps`` intervals of
    ``ceil(H*W / steps)`` pixels; deletion replaces the top-ranked pixels by ``baseline`` (a number,
    or an array broadcastable to ``batch``), insertion starts from ``baseline`` and restores them;
    the curves hold the class's softmax probability at each perturbed fraction (0 and 1 included)
    and the AUC is the trapezoid rule over the actual fractions.

    ``protocol="rise"`` (the RISE authors' ``CausalMetric``): 224 pixels per step; deletion
    replaces them by 0, insertion starts from the blurred input (:func:`rise_blur`); the AUC gives
    the ``ceil(H*W / 224) + 1`` points equal spacing. ``steps`` and ``baseline`` must be left at
    their defaults.
    """
    batch, maps, class_index = _checked(session, batch, maps, class_index)
    n, _, height, width = batch.shape
    pixels = height * width
    ranks = pixel_ranks(maps)
    before = class_probabilities(session, batch, class_index)
    if protocol == "rise":
        if steps != 20 or not (np.isscalar(baseline) and baseline == 0.0):
            raise ValueError("protocol='rise' fixes its steps (224 pixels) and baselines (zeros, a blur)")
        counts = [min(pixels, RISE_PIXELS_PER_STEP * i) for i in range(-(-pixels // RISE_PIXELS_PER_STEP) + 1)]
        deleted, inserted = np.zeros_like(batch), rise_blur(batch)
    elif protocol == "torchcam":
        if not isinstance(steps, (int, np.integer)) or steps <= 0:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        counts = [*range(0, pixels, -(-pixels // steps)), pixels]
        deleted = inserted = _baseline_like(baseline, batch)
    else:
        raise ValueError(f"protocol {protocol!r}: 'torchcam' or 'rise'")
    # Deletion at 0 and insertion at all pixels are the unperturbed input; with one baseline,
    # deletion's last point (all baseline) is insertion's first.
    deletion = np.column_stack([before, perturbation_curves(session, batch, deleted, ranks, counts[1:], class_index)])
    shared = inserted is deleted
    inner = counts[1:-1] if shared else counts[:-1]
    insertion = perturbation_curves(session, inserted, batch, ranks, inner, class_index)
    insertion = np.column_stack([deletion[:, -1], insertion] if shared else [insertion])
    insertion = np.column_stack([insertion, before])
    if protocol == "rise":
        return _equal_spacing_auc(deletion), _equal_spacing_auc(insertion)
    fractions = np.asarray(counts, dtype=np.float64) / pixels
    return np.trapezoid(deletion, fractions, axis=1), np.trapezoid(insertion, fractions, axis=1)


def _baseline_like(baseline: float | np.ndarray, batch: np.ndarray) -> np.ndarray:
    try:
        array = np.broadcast_to(np.asarray(baseline, dtype=np.float32), batch.shape)
    except ValueError:
        raise ValueError(f"baseline of shape {np.shape(baseline)} does not broadcast to the batch {batch.shape}") from None
    if not np.isfinite(array).all():
        raise ValueError("baseline holds NaN or Inf values")
    return array


def _equal_spacing_auc(curves: np.ndarray) -> np.ndarray:
    """The RISE code's ``auc``: trapezoids of width ``1 / (points - 1)``."""
    return (curves.sum(axis=1) - curves[:, 0] / 2 - curves[:, -1] / 2) / (curves.shape[1] - 1)


def road_keep_mask(saliency: np.ndarray, percentile: float, order: str) -> np.ndarray:
    """The pixels ROAD keeps for one ``(H, W)`` float32 map, as pytorch-grad-cam 1.5 chooses them:
    ``morf`` keeps the pixels below the map's ``percentile``-th percentile (so ``percentile`` is
    the share kept, and the most relevant ``100 - percentile`` percent are removed), ``lerf`` does
    the same on ``1 - map`` (keeps the most relevant ``percentile`` percent)."""
    if order == "lerf":
        saliency = np.float32(1) - saliency
    elif order != "morf":
        raise ValueError(f"order {order!r}: 'morf' (most relevant first) or 'lerf' (least relevant first)")
    return saliency < np.percentile(saliency, percentile)


def road(
    session,
    batch: np.ndarray,
    maps: np.ndarray,
    class_index: np.ndarray,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    order: str = "morf",
    *,
    noise: float = 0.01,
    seed: int | None = 0,
) -> np.ndarray:
    """ROAD per image and percentile: ``(N, len(percentiles))`` float64, the class's softmax
    probability after the removal minus before it (more negative for MoRF = more faithful).

    Removed pixels (:func:`road_keep_mask`) are filled by noisy linear imputation
    (:func:`onnxcam.eval.road_imputation.linear_imputation`, then Gaussian noise of standard
    deviation ``noise`` on the preprocessed values, drawn from ``seed``; the authors' and
    pytorch-grad-cam's default is 0.01, 0 switches it off).
    """
    batch, maps, class_index = _checked(session, batch, maps, class_index)
    rng = np.random.default_rng(seed)
    before = class_probabilities(session, batch, class_index)
    scores = np.empty((len(batch), len(percentiles)))
    for p, percentile in enumerate(percentiles):
        imputed = np.empty_like(batch)
        for i, (image, saliency) in enumerate(zip(batch, maps)):
            keep = road_keep_mask(saliency, percentile, order)
            imputed[i] = linear_imputation(image, keep)
            if noise:
                imputed[i][:, ~keep] += np.float32(noise) * rng.standard_normal((len(image), int((~keep).sum())), dtype=np.float32)
        scores[:, p] = class_probabilities(session, imputed, class_index) - before
    return scores


def road_combined(
    session,
    batch: np.ndarray,
    maps: np.ndarray,
    class_index: np.ndarray,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    *,
    noise: float = 0.01,
    seed: int | None = 0,
) -> np.ndarray:
    """pytorch-grad-cam's ``ROADCombined``: ``(LeRF - MoRF) / 2`` of the ROAD scores averaged over
    ``percentiles``, ``(N,)`` float64 (higher = more faithful)."""
    lerf = road(session, batch, maps, class_index, percentiles, "lerf", noise=noise, seed=seed)
    morf = road(session, batch, maps, class_index, percentiles, "morf", noise=noise, seed=None if seed is None else seed + 1)
    return (lerf.mean(axis=1) - morf.mean(axis=1)) / 2
