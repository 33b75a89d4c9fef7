"""The WSOL sweep takes every threshold's contour boxes from connected components and its largest
contour from traced outer borders (onnxcam.eval.component_sweep): the boxes, the largest box and
the IoU curves must be those of a plain per-threshold loop over OpenCV's whole-map contours."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from onnxcam.eval.boxes import box_iou
from onnxcam.eval.component_sweep import EMPTY, component_sweep, outer_border_area
from onnxcam.eval.wsol import (
    contour_geometry,
    foreground_contours,
    iou_curves,
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
    "noise": lambda rng: smooth_map(rng, 96),
}


def sweep_cuts(scoremap: np.ndarray, step: float) -> tuple[np.ndarray, list[int]]:
    quantised = (scoremap * 255).astype(np.uint8)
    cuts = np.unique(np.trunc(scoremap_thresholds(step) * int(quantised.max())).astype(np.int64)).tolist()
    return quantised, cuts


def per_threshold_boxes(scoremap: np.ndarray, thresholds: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The reference: whole-map contours threshold by threshold, the WSOL code's loop."""
    quantised = (scoremap * 255).astype(np.uint8)
    found = []
    for tau in thresholds:
        contours = foreground_contours(quantised, int(tau * quantised.max()))
        if not contours:
            found.append((np.zeros((1, 4), np.int64), 0))
            continue
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append((x, y, min(x + w, 223), min(y + h, 223)))
        areas = [cv2.contourArea(contour) for contour in contours]
        found.append((np.array(boxes, np.int64), areas.index(max(areas))))
    return found


def opencv_rects(quantised: np.ndarray, cut: int) -> tuple[list[tuple[int, ...]], tuple[int, ...] | None]:
    """Sorted boundingRects of every contour and the first largest contour's rect, by OpenCV."""
    contours = foreground_contours(quantised, cut)
    if not contours:
        return [], None
    areas = [cv2.contourArea(contour) for contour in contours]
    return sorted(cv2.boundingRect(c) for c in contours), cv2.boundingRect(contours[areas.index(max(areas))])


@pytest.mark.parametrize("kind", list(MAPS))
@pytest.mark.parametrize("step", [0.01, 0.001])
def test_components_give_the_contours_of_the_whole_map(kind, step):
    rng = np.random.default_rng([list(MAPS).index(kind), int(step * 1000)])
    for _ in range(4 if step == 0.01 else 1):
        quantised, cuts = sweep_cuts(MAPS[kind](rng), step)
        found = component_sweep(quantised, np.array(cuts))
        for u, cut in enumerate(cuts):
            rects, largest = opencv_rects(quantised, cut)
            outer = [(x0, y0, x1 - x0 + 1, y1 - y0 + 1) for _, x0, y0, x1, y1 in found.outer[found.outer[:, 0] == u].tolist()]
            holes = [(x0 - 1, y0 - 1, x1 - x0 + 3, y1 - y0 + 3) for _, x0, y0, x1, y1 in found.holes[found.holes[:, 0] == u].tolist()]
            assert sorted(outer + holes) == rects
            if largest is None:
                assert found.largest[u] == EMPTY
            elif not found.ask_opencv[u]:
                _, x0, y0, x1, y1 = found.outer[found.largest[u]].tolist()
                assert (x0, y0, x1 - x0 + 1, y1 - y0 + 1) == largest


def opencv_boxes_largest(quantised: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = opencv_rects(quantised, 0)[1]
    return x, y, x + w - 1, y + h - 1


def test_traced_outer_borders_have_opencvs_areas():
    rng = np.random.default_rng(11)
    for _ in range(40):
        foreground = (cv2.resize(rng.random((9, 9)), (60, 60), interpolation=cv2.INTER_CUBIC) > rng.uniform(0.3, 0.8))
        quantised = foreground.astype(np.uint8) * 200
        contours, _ = cv2.findContours(quantised, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            y = int(contour[:, 0, 1].min())
            x = int(contour[contour[:, 0, 1] == y, 0, 0].min())  # the first pixel in raster order
            assert outer_border_area(quantised, 100, y, x) == cv2.contourArea(contour)


def test_ties_go_to_opencvs_first_and_large_holes_are_left_to_it():
    quantised = np.zeros((30, 40), np.uint8)
    quantised[2:8, 20:26] = quantised[9:15, 2:8] = quantised[9:15, 30:36] = 200  # equal squares
    found = component_sweep(quantised, np.array([0]))
    assert not found.ask_opencv[0]
    assert found.outer[found.largest[0], 1:].tolist() == list(opencv_boxes_largest(quantised))
    ring = np.zeros((30, 30), np.uint8)
    ring[5:25, 5:25] = 200
    ring[6:24, 6:24] = 0  # a one-pixel ring: its hole's border is as large as its outer border
    assert component_sweep(ring, np.array([0])).ask_opencv[0]
    boxes = wsol_boxes_from_scoremap(ring / 255.0, [0.0], multi_contour=True)[0]
    assert sorted(map(tuple, boxes.tolist())) == [(5, 5, 25, 25), (5, 5, 25, 25)]


@pytest.mark.parametrize("kind", list(MAPS))
def test_sweep_boxes_and_curves_are_the_per_threshold_loops(kind):
    rng = np.random.default_rng(list(MAPS).index(kind) + 100)
    thresholds = scoremap_thresholds(0.01)
    for _ in range(4):
        scoremap = MAPS[kind](rng)
        gt = np.array([[30, 40, 120, 150], [0, 0, 5, 5]], np.int64)[: rng.integers(1, 3)]
        reference = per_threshold_boxes(scoremap, thresholds)
        every = wsol_boxes_from_scoremap(scoremap, thresholds, multi_contour=True)
        largest = wsol_boxes_from_scoremap(scoremap, thresholds)
        curves = iou_curves(scoremap, gt, thresholds)
        for t, (boxes, index) in enumerate(reference):
            assert sorted(every[t].tolist()) == sorted(boxes.tolist())
            assert largest[t].tolist() == boxes[index : index + 1].tolist()
            assert curves.every[t] == box_iou(boxes, gt).max()
            assert curves.largest[t] == box_iou(boxes[index : index + 1], gt).max()


def test_contour_geometry_is_opencvs_on_every_kind_of_contour():
    rng = np.random.default_rng(7)
    foreground = (cv2.resize(rng.random((40, 40)), (224, 224), interpolation=cv2.INTER_CUBIC) > 0.7).astype(np.uint8)
    foreground[0, 0] = foreground[5, 100:102] = 1  # a one-point and a two-point contour
    contours, _ = cv2.findContours(foreground, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    assert min(len(c) for c in contours) == 1
    for some in (contours[:1], contours[:3], contours):
        rects, areas = contour_geometry(some)
        assert rects.tolist() == [list(cv2.boundingRect(contour)) for contour in some]
        assert areas.tolist() == [cv2.contourArea(contour) for contour in some]
    rects, areas = contour_geometry(())
    assert rects.shape == (0, 4) and areas.shape == (0,)


def test_an_empty_foreground_has_no_contours():
    quantised = np.full((10, 10), 7, np.uint8)
    found = component_sweep(quantised, np.array([0, 6, 7, 8, 200]))
    assert found.largest[2:].tolist() == [EMPTY] * 3 and found.largest[0] >= 0
    assert wsol_boxes_from_scoremap(np.zeros((10, 10)), [0.0, 0.5])[1].tolist() == [[0, 0, 0, 0]]


def test_boxes_pinned_on_a_map_with_a_hole():
    scoremap = np.zeros((224, 224))
    scoremap[50:150, 60:160] = 1.0
    scoremap[80:120, 90:130] = 0.3  # a hole at thresholds above 0.3
    scoremap[10:20, 200:224] = 0.6  # a blob on the right border
    low, mid, high = wsol_boxes_from_scoremap(scoremap, [0.1, 0.5, 0.9], multi_contour=True)
    assert sorted(map(tuple, low.tolist())) == [(60, 50, 160, 150), (200, 10, 223, 20)]
    assert sorted(map(tuple, mid.tolist())) == [(60, 50, 160, 150), (89, 79, 131, 121), (200, 10, 223, 20)]
    assert sorted(map(tuple, high.tolist())) == [(60, 50, 160, 150), (89, 79, 131, 121)]
