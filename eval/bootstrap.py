"""Percentile bootstrap intervals for localization metrics computed from per-image rows.

A resample draws ``N`` of the ``N`` images with replacement; it is represented by how many times
each image is drawn, one row of a ``(B, N)`` count matrix. Every metric here is a function of
count-weighted sums over images, so ``B`` resamples cost one matrix product:

- a mean over images (top-1 / GT-known localization): ``counts @ values / N``;
- a best-over-thresholds accuracy (MaxBoxAcc, each IoU of MaxBoxAccV2): ``max_t counts @ hits / N``,
  re-maximised in every resample, so the interval carries the threshold selection too;
- PxAP: the per-image pixel histograms summed with the counts, then
  :func:`onnxcam.eval.wsol.pxap_from_histograms`.

The interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the
resampled statistic (linear interpolation, ``numpy.percentile``'s default).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcam.eval.wsol import pxap_from_histograms

N_RESAMPLES = 1000


def resample_counts(n: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Return ``(n_resamples, n)`` float32 counts: how often each of ``n`` items is drawn per resample.

    Each row is a multinomial draw of ``n`` items with equal probabilities, so it sums to ``n``.
    """
    if n < 1 or n_resamples < 1:
        raise ValueError(f"need n >= 1 and n_resamples >= 1, got {n}, {n_resamples}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float32)


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` percentile interval ``(low, high)`` of 1-D ``samples``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(np.asarray(samples, dtype=np.float64), [tail, 100 - tail])
    return float(low), float(high)


def _check_counts(counts: np.ndarray, n: int) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float32)
    if counts.ndim != 2 or counts.shape[1] != n:
        raise ValueError(f"counts must have shape (B, {n}), got {counts.shape}")
    return counts


def bootstrap_mean(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Resampled means ``(B,)`` of per-image ``values`` ``(N,)`` (e.g. 100 * hit for percent)."""
    values = np.asarray(values, dtype=np.float32)
    return (_check_counts(counts, len(values)) @ values).astype(np.float64) / len(values)


def bootstrap_max_accuracy(hits: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Resampled best-over-thresholds accuracies ``(B,)`` in percent.

    ``hits`` ``(N, T)`` is true where image ``i`` is correctly localized at threshold ``t``; a
    resample's accuracy is ``100 * max_t (counts @ hits)[t] / N``.
    """
    hits = np.asarray(hits)
    if hits.ndim != 2:
        raise ValueError(f"hits must be (N, T), got shape {hits.shape}")
    correct = _check_counts(counts, hits.shape[0]) @ hits.astype(np.float32)
    return 100.0 * correct.max(axis=1).astype(np.float64) / hits.shape[0]


def bootstrap_pxap(
    true_hists: np.ndarray, false_hists: np.ndarray, thresholds: Sequence[float], counts: np.ndarray
) -> np.ndarray:
    """Resampled PxAP ``(B,)`` in percent from per-image ``(N, T + 2)`` pixel histograms."""
    counts = _check_counts(counts, len(true_hists)).astype(np.float64)
    true_sums = counts @ np.asarray(true_hists, dtype=np.float64)
    false_sums = counts @ np.asarray(false_hists, dtype=np.float64)
    return np.array([pxap_from_histograms(t, f, thresholds).value for t, f in zip(true_sums, false_sums)])
