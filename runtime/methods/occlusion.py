"""Occlusion (Zeiler & Fergus, ECCV 2014)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext
from onnxcam.runtime.weighting import rectify


def window_starts(size: int, window: int, stride: int) -> np.ndarray:
    """Start offsets of the windows along one axis: ``0, stride, ...`` while the window fits."""
    return np.arange(0, size - window + 1, stride)


class Occlusion(CamMethod):
    r"""Occlusion: how much the class score drops when a square window of the input is set to
    ``baseline`` (0, the dataset mean after normalisation), averaged over the windows that cover
    each pixel, as captum's ``Occlusion`` computes it.

    .. math:: M_{ij} = \frac{1}{|W_{ij}|} \sum_{w \in W_{ij}} \big(y^c(x) - y^c(x_{w \leftarrow b})\big)

    Costs one forward pass per window position (``((H - window) / stride + 1)^2`` per image),
    batched. Pixels no window covers get 0. A model exported with another target than the logit
    is scored by that target (the same class, mask or box) on every occluded input.

    >>> result = session.explain(batch, method=Occlusion(window=32, stride=16))  # doctest: +SKIP
    """

    name = "occlusion"
    needs_gradients = False
    single_pass = False

    def __init__(self, window: int = 32, stride: int = 16, baseline: float = 0.0, batch_size: int = 32):
        self.window, self.stride, self.baseline, self.batch_size = window, stride, baseline, batch_size

    def raw_maps_by_weighting(
        self, outputs: LayerOutputs, weightings: Sequence[str], context: MethodContext | None = None
    ) -> dict[str, np.ndarray]:
        batch = context.batch
        height, width = batch.shape[2:]
        windows = [(top, left) for top in window_starts(height, self.window, self.stride)
                   for left in window_starts(width, self.window, self.stride)]
        maps = np.zeros((len(batch), height, width), dtype=np.float64)
        counts = np.zeros((height, width), dtype=np.float64)
        for top, left in windows:
            counts[top : top + self.window, left : left + self.window] += 1
        for i in range(len(batch)):
            score = context.score(i)
            for start in range(0, len(windows), self.batch_size):
                chunk = windows[start : start + self.batch_size]
                occluded = np.repeat(batch[i : i + 1], len(chunk), axis=0)
                for row, (top, left) in enumerate(chunk):
                    occluded[row, :, top : top + self.window, left : left + self.window] = self.baseline
                drops = score - context.rescore(i, occluded)
                for drop, (top, left) in zip(drops, chunk):
                    maps[i, top : top + self.window, left : left + self.window] += drop
        signed = maps / np.maximum(counts, 1)
        return {w: rectify(signed, w) for w in weightings}
