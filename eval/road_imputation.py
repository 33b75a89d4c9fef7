"""ROAD's noisy linear imputation: removed pixels take the weighted mean of their 8 neighbours.

Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods" (ICML 2022),
replace removed pixels by solving, for the removed pixels ``x_i`` jointly, ``sum_j w_ij (x_j - x_i) = 0``
over the in-image neighbours ``j`` (weight 1/6 for the 4 direct neighbours, 1/12 for the 4
diagonal ones), known neighbours entering the right-hand side, then add Gaussian noise. The system
and its solution are those of the authors' ``NoisyLinearImputer`` (as copied into pytorch-grad-cam
1.5's ``metrics/road.py``), built here with vectorized sparse arrays instead of ``lil_matrix``
assignments, and solved with a sparse LU factorisation for all channels at once.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

NEIGHBOUR_WEIGHTS = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)
"""``((dy, dx), weight)`` of the neighbours, as in the ROAD authors' code."""


def linear_imputation(image: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``image`` ``(C, H, W)`` with the pixels where ``keep`` ``(H, W)`` is False replaced by the
    noise-free linear imputation: float32 ``(C, H, W)``.

    Every 8-connected region of removed pixels borders a kept one unless nothing is kept; then the
    system is singular (the authors' code returns NaN) and the pixels become 0, the dataset mean of
    a preprocessed input.
    """
    channels, height, width = image.shape
    keep = keep.reshape(-1)
    removed = np.flatnonzero(~keep)
    result = image.reshape(channels, -1).astype(np.float32, copy=True)
    if removed.size == 0:
        return result.reshape(image.shape)
    if not keep.any():
        result[:, removed] = 0.0
        return result.reshape(image.shape)
    values = image.reshape(channels, -1).astype(np.float64)
    unknown_id = np.full(keep.size, -1, dtype=np.int64)
    unknown_id[removed] = np.arange(removed.size)
    rows_y, rows_x = np.divmod(removed, width)
    diagonal = np.zeros(removed.size)
    rhs = np.zeros((removed.size, channels))
    matrix_rows, matrix_cols, matrix_values = [], [], []
    for (dy, dx), weight in NEIGHBOUR_WEIGHTS:
        y, x = rows_y + dy, rows_x + dx
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        equations = np.flatnonzero(inside)
        neighbours = y[inside] * width + x[inside]
        diagonal[equations] -= weight
        known = keep[neighbours]
        rhs[equations[known]] -= weight * values[:, neighbours[known]].T
        matrix_rows.append(equations[~known])
        matrix_cols.append(unknown_id[neighbours[~known]])
        matrix_values.append(np.full(int((~known).sum()), weight))
    matrix_rows.append(np.arange(removed.size))
    matrix_cols.append(np.arange(removed.size))
    matrix_values.append(diagonal)
    system = sparse.csc_matrix(
        (np.concatenate(matrix_values), (np.concatenate(matrix_rows), np.concatenate(matrix_cols))),
        shape=(removed.size, removed.size),
    )
    solution = splu(system).solve(rhs)
    result[:, removed] = solution.T
    return result.reshape(image.shape)
