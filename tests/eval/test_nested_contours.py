"""The WSOL sweep finds each threshold's contours in the window around the previous threshold's
foreground and measures them all at once: rects and areas, in order, must be OpenCV's on the whole
map."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from onnxcam.eval.wsol import (
    VECTORIZED_FROM,
    contour_geometry,
    foreground_contours,
    margin_crop,
    nested_foreground_contours,
    scoremap_thresholds,
    wsol_boxes_from_scoremap,
    wsol_scoremap,
)


def smooth_map(rng: np.random.Generator, side: int) -> np.ndarray:
    """A layer-resolution random map, bicubic to 224 x 224 as the protocol does."""
    return wsol_scoremap(rng.random((side, side)))


def ring_map(rng: np.random.Generator) -> np.ndarray:
    """Rings and a second blob: holes give contours of their own under RETR_TREE."""
    y, x = np.mgrid[:224, :224]
    cy, cx = rng.integers(40, 184, 2)
    radius = np.hypot(y - cy, x - cx)
    ring = np.exp(-((radius - rng.uniform(20, 60)) ** 2) / rng.uniform(30, 300))
    blob = np.exp(-((y - rng.integers(224)) ** 2 + (x - rng.integers(224)) ** 2) / rng.uniform(100, 2000))
    return wsol_scoremap(ring + rng.uniform(0.2, 1.0) * blob + 0.05 * rng.random((224, 224)))


def border_map(rng: np.random.Generator) -> np.ndarray:
    """Peaks on the border and in the corners: foregrounds touch the map's edges."""
    y, x = np.mgrid[:224, :224]
    peaks = [(0, rng.integers(224)), (rng.integers(224), 223), (223, 223), (0, 0), (rng.integers(224), 0)]
    total = sum(np.exp(-((y - py) ** 2 + (x - px) ** 2) / rng.uniform(50, 3000)) for py, px in peaks)
    return wsol_scoremap(total + 0.3 * cv2.resize(rng.random((7, 7)), (224, 224), interpolation=cv2.INTER_CUBIC))


MAPS = {
    "smooth": lambda rng: smooth_map(rng, int(rng.choice([3, 6, 7, 12, 14]))),
    "rings": ring_map,
    "border": border_map,
    "speckled": lambda rng: smooth_map(rng, 56),
}


def sweep_cuts(scoremap: np.ndarray, step: float) -> tuple[np.ndarray, list[int]]:
    quantised = (scoremap * 255).astype(np.uint8)
    cuts = np.unique(np.trunc(scoremap_thresholds(step) * int(quantised.max())).astype(np.int64)).tolist()
    return quantised, cuts


@pytest.mark.parametrize("kind", list(MAPS))
@pytest.mark.parametrize("step", [0.01, 0.001])
def test_nested_search_finds_the_contours_of_the_whole_map(kind, step):
    rng = np.random.default_rng([list(MAPS).index(kind), int(step * 1000)])
    for _ in range(6 if step == 0.01 else 1):
        quantised, cuts = sweep_cuts(MAPS[kind](rng), step)
        for cut, (rects, areas) in zip(cuts, nested_foreground_contours(quantised, cuts)):
            whole = foreground_contours(quantised, cut)
            assert rects.tolist() == [list(cv2.boundingRect(contour)) for contour in whole]
            assert areas.tolist() == [cv2.contourArea(contour) for contour in whole]


def test_contour_geometry_is_opencvs_on_every_kind_of_contour():
    rng = np.random.default_rng(7)
    foreground = (cv2.resize(rng.random((40, 40)), (224, 224), interpolation=cv2.INTER_CUBIC) > 0.7).astype(np.uint8)
    foreground[0, 0] = foreground[5, 100:102] = 1  # a one-point and a two-point contour
    contours, _ = cv2.findContours(foreground, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    assert min(len(c) for c in contours) == 1 and len(contours) >= VECTORIZED_FROM
    for few_or_many in (contours[:3], contours):  # OpenCV per contour, then numpy at once
        rects, areas = contour_geometry(few_or_many)
        assert rects.tolist() == [list(cv2.boundingRect(contour)) for contour in few_or_many]
        assert areas.tolist() == [cv2.contourArea(contour) for contour in few_or_many]


def test_crops_really_shrink_and_touch_the_border_when_the_foreground_does():
    quantised = np.zeros((20, 30), np.uint8)
    quantised[5:9, 10:14] = 200
    quantised[0:3, 25:30] = 100
    (low, _), (high, _) = nested_foreground_contours(quantised, [50, 150])
    assert margin_crop(low, quantised.shape) == (9, 0, 30, 10)
    assert margin_crop(high, quantised.shape) == (9, 4, 15, 10)
    assert margin_crop(np.zeros((0, 4), np.int64), quantised.shape) is None


def test_an_empty_foreground_ends_the_search():
    quantised = np.full((10, 10), 7, np.uint8)
    found = nested_foreground_contours(quantised, [0, 6, 7, 8, 200])
    assert [len(rects) for rects, _ in found] == [1, 1, 0, 0, 0]


def test_boxes_pinned_on_a_map_with_a_hole():
    scoremap = np.zeros((224, 224))
    scoremap[50:150, 60:160] = 1.0
    scoremap[80:120, 90:130] = 0.3  # a hole at thresholds above 0.3
    scoremap[10:20, 200:224] = 0.6  # a blob on the right border
    low, mid, high = wsol_boxes_from_scoremap(scoremap, [0.1, 0.5, 0.9], multi_contour=True)
    assert sorted(map(tuple, low.tolist())) == [(60, 50, 160, 150), (200, 10, 223, 20)]
    assert sorted(map(tuple, mid.tolist())) == [(60, 50, 160, 150), (89, 79, 131, 121), (200, 10, 223, 20)]
    assert sorted(map(tuple, high.tolist())) == [(60, 50, 160, 150), (89, 79, 131, 121)]
