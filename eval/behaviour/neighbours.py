"""Nearest neighbours of images in a layer's feature space, and how often they share a label."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

QUERY_BLOCK = 1024
"""Queries scored at once: a (QUERY_BLOCK, N) distance block bounds the memory."""


@dataclass(frozen=True)
class Neighbours:
    """``indices[q]``: the ``k`` images nearest to image ``queries[q]`` (itself excluded), nearest
    first, ties by index; ``distances[q]``: their cosine distances ``1 - cos`` in [0, 2]."""

    queries: np.ndarray
    indices: np.ndarray
    distances: np.ndarray


def spatial_mean(activations: np.ndarray) -> np.ndarray:
    """A layer's features per image, averaged over positions: ``(N, C, h, w) -> (N, C)`` float32."""
    if activations.ndim != 4:
        raise ValueError(f"activations must be (N, C, h, w); got shape {activations.shape}")
    return activations.mean(axis=(2, 3), dtype=np.float64).astype(np.float32)


def _unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero (cosine distance 1 to everything)."""
    features = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def nearest_neighbours(features: np.ndarray, k: int, queries: Sequence[int] | np.ndarray | None = None) -> Neighbours:
    """The ``k`` nearest neighbours by cosine distance of each query image among all the others.

    Args:
        features: ``(N, D)`` one feature vector per image (e.g. :func:`spatial_mean` of a layer).
        k: neighbours per query, ``1 <= k <= N - 1``.
        queries: image indices to query (default: every image).

    >>> features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0]])
    >>> nearest_neighbours(features, 1).indices.ravel().tolist()
    [1, 0, 3, 2]
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D); got shape {features.shape}")
    n = features.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k = {k} neighbours needs 1 <= k <= N - 1 = {n - 1} (N = {n} images)")
    if not np.isfinite(features).all():
        raise ValueError("features hold NaN or Inf values")
    queries = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    if queries.size and (queries.min() < 0 or queries.max() >= n):
        raise ValueError(f"query indices must lie in 0..{n - 1}")
    unit = _unit_rows(features)
    indices = np.empty((queries.size, k), dtype=np.int64)
    distances = np.empty((queries.size, k), dtype=np.float32)
    for begin in range(0, queries.size, QUERY_BLOCK):
        block = queries[begin : begin + QUERY_BLOCK]
        distance = 1.0 - unit[block] @ unit.T
        distance[np.arange(block.size), block] = np.inf  # never one's own neighbour
        order = np.argsort(distance, axis=1, kind="stable")[:, :k]
        indices[begin : begin + block.size] = order
        distances[begin : begin + block.size] = np.take_along_axis(distance, order, axis=1)
    return Neighbours(queries, indices, np.clip(distances, 0.0, 2.0))


def neighbour_label_agreement(labels: np.ndarray, neighbours: Neighbours) -> float:
    """The mean over queries of the fraction of their neighbours that share the query's label.

    >>> n = nearest_neighbours(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0]]), 1)
    >>> neighbour_label_agreement(np.array([0, 0, 1, 2]), n)
    0.5
    """
    labels = np.asarray(labels)
    same = labels[neighbours.indices] == labels[neighbours.queries][:, None]
    return float(same.mean())


def chance_label_agreement(labels: np.ndarray, queries: Sequence[int] | np.ndarray | None = None) -> float:
    """The agreement expected from neighbours drawn at random among the other images: for a query
    of label ``c``, ``(n_c - 1) / (N - 1)``, averaged over the queries.

    >>> chance_label_agreement(np.array([0, 0, 1, 1]))
    0.3333333333333333
    """
    labels = np.asarray(labels)
    queries = np.arange(labels.size) if queries is None else np.asarray(queries)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return float(np.mean((counts[inverse[queries]] - 1) / (labels.size - 1)))
