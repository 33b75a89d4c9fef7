"""Every WSOL contour box of a map at every threshold, from two union-find sweeps (numba).

OpenCV's ``findContours(RETR_TREE)`` costs a few microseconds per contour, and a noisy map
(saliency, deconvnet) has hundreds of contours at each of a hundred thresholds. Their boxes follow
from connected components instead, all thresholds in one pass each:

- an outer contour's ``boundingRect`` is the bounding box of its 8-connected foreground component;
- a hole contour's is the bounding box of its hole (a 4-connected background component that does
  not reach the map's border) grown by one pixel on each side, since the hole's border runs through
  the foreground pixels around it.

The foreground ``u8 > cut`` only shrinks as the cut rises, so components are merged by a
union-find that adds pixels from the highest cut down (foreground) and from the lowest cut up
(background), recording the live components at each cut. The largest contour (by
``cv2.contourArea``) is found by tracing outer borders as Suzuki & Abe (1985) do, the candidates in
turn while their bounding boxes could still hold a larger polygon (of equal areas, OpenCV's first is
the border it found last); when a hole might be as large, the cut is flagged and
:mod:`onnxcam.eval.wsol` asks OpenCV.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

# Neighbour directions in Freeman chain-code order, counterclockwise on screen (y down):
# E, NE, N, NW, W, SW, S, SE.
_DY = np.array([0, -1, -1, -1, 0, 1, 1, 1], dtype=np.int64)
_DX = np.array([1, 1, 0, -1, -1, -1, 0, 1], dtype=np.int64)
_DIRECTION = np.array([[3, 2, 1], [4, -1, 0], [5, 6, 7]], dtype=np.int64)  # [dy + 1, dx + 1] -> direction

EMPTY = -1
"""``largest`` of a cut whose foreground is empty."""


@njit(cache=True, inline="always")
def _find(parent: np.ndarray, p: int) -> int:
    while parent[p] != p:  # path halving: every other node on the way points to its grandparent
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


@njit(cache=True)
def _forest(height: int, width: int):
    """Union-find state for a ``(height, width)`` map padded by one pixel all round: parent, size,
    box corners x0, y0, x1, y1, head and present per padded pixel, and room for the roots of the
    pixels (raster) and for the rows a sweep records."""
    n = (height + 2) * (width + 2)
    return (np.arange(n).astype(np.int32), np.ones(n, np.int32), np.empty(n, np.int32), np.empty(n, np.int32),
            np.empty(n, np.int32), np.empty(n, np.int32), np.empty(n, np.int32), np.zeros(n, np.bool_),
            np.empty(height * width, np.int64), np.empty((1024, 5), np.int64))


@njit(cache=True)
def _neighbour_ring(width: int, eight: bool) -> np.ndarray:
    """Offsets of a pixel's neighbours in a map padded by one pixel all round: the 8 in ring order
    (each next to the one before, the last next to the first), or the 4 edge neighbours."""
    stride = width + 2
    if eight:
        return np.array([-stride, -stride + 1, 1, stride + 1, stride, stride - 1, -1, -stride - 1], dtype=np.int64)
    return np.array([-stride, 1, stride, -1], dtype=np.int64)


@njit(cache=True, inline="always")
def _add_pixel(p, width, ring, eight, present, parent, size, x0, y0, x1, y1, head) -> int:
    """Add raster pixel ``p``, merging the components of its present neighbours (8-connected with
    ``eight``, else 4-connected), the smaller under the larger; returns its padded index.

    Arrays are indexed by padded pixel (a one-pixel frame that is never present, so neighbours need
    no bounds checks); a root's box is ``x0, y0, x1, y1[root]`` in map coordinates and ``head[root]``
    its first pixel in raster order (padded index). Present pixels that touch are always in one
    component, so of a run of present neighbours along the 8-ring only the first needs a find.
    """
    y = p // width
    x = p - y * width
    q = p + 2 * y + width + 3  # (y + 1) * (width + 2) + x + 1
    present[q] = True
    root = -1
    previous = False  # not the ring's last: with all 8 present no run would start
    for k in range(len(ring)):
        here = present[q + ring[k]]
        if here and not previous:
            other = _find(parent, q + ring[k])
            if root < 0:
                root = other
            elif other != root:
                big, small = (root, other) if size[root] >= size[other] else (other, root)
                parent[small] = big
                size[big] += size[small]
                x0[big], y0[big] = min(x0[big], x0[small]), min(y0[big], y0[small])
                x1[big], y1[big] = max(x1[big], x1[small]), max(y1[big], y1[small])
                head[big] = min(head[big], head[small])
                root = big
        previous = eight and here
    if root < 0:  # a new component
        x0[q], y0[q], x1[q], y1[q], head[q] = x, y, x, y, q
        return q
    parent[q] = root
    size[root] += 1
    x0[root], y0[root] = min(x0[root], x), min(y0[root], y)
    x1[root], y1[root] = max(x1[root], x), max(y1[root], y)
    head[root] = min(head[root], q)
    return q


@njit(cache=True)
def _is_foreground(quantised: np.ndarray, cut: int, y: int, x: int) -> bool:
    return 0 <= y < quantised.shape[0] and 0 <= x < quantised.shape[1] and quantised[y, x] > cut


@njit(cache=True)
def outer_border_area(quantised: np.ndarray, cut: int, y: int, x: int) -> float:
    """``cv2.contourArea`` of the outer border of the component of ``quantised > cut`` whose first
    pixel in raster order is ``(y, x)``, traced as Suzuki & Abe's algorithm 1 does (the polygon
    through the border pixels' centres, closed; CHAIN_APPROX_SIMPLE drops only collinear points)."""
    first = -1
    for k in range(8):  # clockwise from the west neighbour, which is background
        d = (4 - k) % 8
        if _is_foreground(quantised, cut, y + _DY[d], x + _DX[d]):
            first = d
            break
    if first < 0:
        return 0.0
    y1, x1 = y + _DY[first], x + _DX[first]
    y2, x2, y3, x3 = y1, x1, y, x
    twice = 0
    while True:
        back = _DIRECTION[y2 - y3 + 1, x2 - x3 + 1]
        y4, x4 = y3, x3
        for k in range(1, 9):  # counterclockwise, from the neighbour after the previous pixel
            d = (back + k) % 8
            if _is_foreground(quantised, cut, y3 + _DY[d], x3 + _DX[d]):
                y4, x4 = y3 + _DY[d], x3 + _DX[d]
                break
        twice += x3 * y4 - x4 * y3
        if y4 == y and x4 == x and y3 == y1 and x3 == x1:
            break
        y2, x2, y3, x3 = y3, x3, y4, x4
    return abs(twice) / 2.0


@njit(cache=True, inline="always")
def _component_border_area(quantised: np.ndarray, cut: int, head: int) -> float:
    """:func:`outer_border_area` of the component whose first pixel is at padded index ``head``."""
    stride = quantised.shape[1] + 2
    return outer_border_area(quantised, cut, head // stride - 1, head % stride - 1)


@njit(cache=True)
def _grow(rows: np.ndarray, needed: int) -> np.ndarray:
    if needed <= rows.shape[0]:
        return rows
    bigger = np.empty((max(needed, 2 * rows.shape[0]), rows.shape[1]), dtype=rows.dtype)
    bigger[: rows.shape[0]] = rows
    return bigger


@njit(cache=True, inline="always")
def _live_roots(roots, n_roots, parent, x0, y0, x1, y1, width, height, holes_only) -> int:
    """Keep, at the front of ``roots[:n_roots]``, the pixels that are still roots (and, with
    ``holes_only``, whose box stays off the map's border: such a component never becomes a hole
    again, the background only grows); returns how many."""
    live = 0
    for k in range(n_roots):
        r = roots[k]
        if parent[r] != r:
            continue
        if holes_only and not (x0[r] > 0 and y0[r] > 0 and x1[r] < width - 1 and y1[r] < height - 1):
            continue
        roots[live] = r
        live += 1
    return live


@njit(cache=True, inline="always")
def _record(rows, n_rows, u, roots, n_roots, x0, y0, x1, y1):
    """Append one row ``(u, x0, y0, x1, y1)`` per root of ``roots[:n_roots]``; returns the rows."""
    rows = _grow(rows, n_rows + n_roots)
    for k in range(n_roots):
        r = roots[k]
        rows[n_rows + k, 0], rows[n_rows + k, 1], rows[n_rows + k, 2] = u, x0[r], y0[r]
        rows[n_rows + k, 3], rows[n_rows + k, 4] = x1[r], y1[r]
    return rows


@njit(cache=True)
def pixels_by_level(quantised: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel indices (raster) sorted by level, the number of cuts below the pixel's value (it is
    foreground for cuts ``0 .. level - 1``), and where each level starts in that order ``(U + 2,)``
    (a counting sort: there are at most 256 values)."""
    level_of_value = np.searchsorted(cuts, np.arange(256), side="left")
    flat = quantised.ravel()
    counts = np.zeros(len(cuts) + 2, dtype=np.int64)
    for value in flat:
        counts[level_of_value[value] + 1] += 1
    starts = np.cumsum(counts)
    fill = starts.copy()
    order = np.empty(len(flat), dtype=np.int64)
    for p in range(len(flat)):
        level = level_of_value[flat[p]]
        order[fill[level]] = p
        fill[level] += 1
    return order, starts


@njit(cache=True)
def foreground_components(
    quantised: np.ndarray, cuts: np.ndarray, order: np.ndarray, starts: np.ndarray, hole_bound: np.ndarray
):
    """The 8-connected components of ``quantised > cuts[u]`` for every cut, and each cut's largest
    outer border.

    ``hole_bound``: per cut, the largest area a hole's border could have (:func:`hole_components`).
    Returns ``rows`` ``(K, 5)`` int64 ``(u, x0, y0, x1, y1)`` (inclusive pixel boxes), ``largest``
    ``(U,)`` (the row of the component with the largest outer border, or :data:`EMPTY`) and
    ``best`` ``(U,)`` float64, that border's area (``inf`` where a cut has one component and no
    hole: the only contour needs no tracing).
    """
    height, width = quantised.shape
    parent, size, x0, y0, x1, y1, head, present, roots, rows = _forest(height, width)
    ring = _neighbour_ring(width, True)
    n_roots = n_rows = 0
    largest = np.full(len(cuts), EMPTY, dtype=np.int64)
    best = np.zeros(len(cuts), dtype=np.float64)
    for u in range(len(cuts) - 1, -1, -1):
        for i in range(starts[u + 1], starts[u + 2]):  # pixels whose level is u + 1
            roots[n_roots] = _add_pixel(order[i], width, ring, True, present, parent, size, x0, y0, x1, y1, head)
            n_roots += 1
        n_roots = _live_roots(roots, n_roots, parent, x0, y0, x1, y1, width, height, False)
        if n_roots == 0:
            continue
        rows = _record(rows, n_rows, u, roots, n_roots, x0, y0, x1, y1)
        if n_roots == 1 and hole_bound[u] == 0:
            largest[u], best[u] = n_rows, np.inf
            n_rows += 1
            continue
        top, top_bound = 0, -1
        for k in range(n_roots):
            r = roots[k]
            bound = (x1[r] - x0[r]) * (y1[r] - y0[r])  # a polygon through centres
            if bound > top_bound:
                top, top_bound = k, bound
        r = roots[top]
        area = _component_border_area(quantised, cuts[u], head[r])
        winner = top
        for k in range(n_roots):
            r = roots[k]
            if k == top or (x1[r] - x0[r]) * (y1[r] - y0[r]) < area:
                continue
            other = _component_border_area(quantised, cuts[u], head[r])
            # OpenCV lists later-found borders first, so of equal areas the border found last (the
            # component whose first pixel comes last in raster order) is its first largest.
            if other > area or (other == area and head[r] > head[roots[winner]]):
                area, winner = other, k
        largest[u] = n_rows + winner
        best[u] = area
        n_rows += n_roots
    return rows[:n_rows], largest, best


@njit(cache=True)
def hole_components(quantised: np.ndarray, cuts: np.ndarray, order: np.ndarray, starts: np.ndarray):
    """The holes of ``quantised > cuts[u]`` for every cut: 4-connected components of the
    background that do not reach the map's border.

    Returns ``rows`` ``(K, 5)`` int64 ``(u, x0, y0, x1, y1)`` (the holes' inclusive pixel boxes)
    and ``(U,)`` int64: per cut, the largest area a hole's border polygon could have.
    """
    height, width = quantised.shape
    parent, size, x0, y0, x1, y1, head, present, roots, rows = _forest(height, width)
    ring = _neighbour_ring(width, False)
    n_roots = n_rows = 0
    bound = np.zeros(len(cuts), dtype=np.int64)
    for u in range(len(cuts)):
        for i in range(starts[u], starts[u + 1]):  # pixels whose level is u: background from cut u on
            roots[n_roots] = _add_pixel(order[i], width, ring, False, present, parent, size, x0, y0, x1, y1, head)
            n_roots += 1
        n_roots = _live_roots(roots, n_roots, parent, x0, y0, x1, y1, width, height, True)
        rows = _record(rows, n_rows, u, roots, n_roots, x0, y0, x1, y1)
        for k in range(n_roots):
            r = roots[k]
            # The border runs one pixel outside the hole: a polygon up to (w + 1) x (h + 1).
            bound[u] = max(bound[u], (x1[r] - x0[r] + 2) * (y1[r] - y0[r] + 2))
        n_rows += n_roots
    return rows[:n_rows], bound


class ComponentSweep(NamedTuple):
    """Per cut of a sweep: the outer and hole boxes (rows ``(u, x0, y0, x1, y1)``, inclusive pixel
    boxes of components and of holes), the row of ``outer`` with the largest outer border, and the
    cuts whose largest contour OpenCV must settle (a hole's border may be as large)."""

    outer: np.ndarray
    holes: np.ndarray
    largest: np.ndarray
    ask_opencv: np.ndarray


def component_sweep(quantised: np.ndarray, cuts: np.ndarray) -> ComponentSweep:
    """Components, holes and largest contours of ``quantised > cut`` for ascending ``cuts``.

    ``quantised``: uint8 ``(H, W)``; ``cuts``: ``(U,)`` ascending ints.
    """
    quantised = np.ascontiguousarray(quantised, dtype=np.uint8)
    cuts = np.ascontiguousarray(cuts, dtype=np.int64)
    order, starts = pixels_by_level(quantised, cuts)
    holes, hole_bound = hole_components(quantised, cuts, order, starts)
    outer, largest, best = foreground_components(quantised, cuts, order, starts, hole_bound)
    ask = (largest != EMPTY) & (hole_bound >= best)
    return ComponentSweep(outer, holes, largest, ask)
