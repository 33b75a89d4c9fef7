"""Score-CAM (Wang et al., CVPR Workshops 2020)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from onnxcam.runtime.methods.base import CamMethod, LayerOutputs, MethodContext

EPSILON = 1e-8
"""Added to each upsampled channel's range before dividing, as pytorch-grad-cam does."""


@lru_cache(maxsize=16)
def align_corners_matrix(out_size: int, in_size: int) -> np.ndarray:
    """(out_size, in_size) bilinear interpolation matrix with ``align_corners=True`` (the corner
    samples of input and output coincide), as ``torch.nn.UpsamplingBilinear2d`` does."""
    matrix = np.zeros((out_size, in_size), dtype=np.float32)
    if in_size == 1 or out_size == 1:
        matrix[:, 0] = 1.0
        return matrix
    centres = np.arange(out_size) * (in_size - 1) / (out_size - 1)
    low = np.minimum(np.floor(centres).astype(np.intp), in_size - 2)
    frac = centres - low
    matrix[np.arange(out_size), low] = 1.0 - frac
    matrix[np.arange(out_size), low + 1] += frac
    return matrix


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class ScoreCAM(CamMethod):
    r"""Score-CAM: each channel, upsampled and scaled to [0, 1], masks the input; the class score
    of each masked input, softmaxed over channels, weighs the channel.

    .. math:: H^k = \frac{U(A^k) - \min U(A^k)}{\max U(A^k) - \min U(A^k)},\qquad
        w^c = \mathrm{softmax}_k\big(y^c(x \odot H^k)\big)

    U is bilinear upsampling with aligned corners. Costs C forward passes per image (C = the
    layer's channels), run ``batch_size`` at a time through the forward graph alone. Like
    pytorch-grad-cam, the score is the logit (the paper's increase of confidence over a baseline
    does not change the softmax when the baseline is the same for every channel). For a model
    exported with another target (a probability, a segmentation region, a box score), the masked
    inputs are scored by that target, as pytorch-grad-cam scores them by its target.

    >>> result = session.explain(batch, method=ScoreCAM(batch_size=64))  # doctest: +SKIP
    """

    name = "scorecam"
    needs_gradients = False
    single_pass = False

    def __init__(self, batch_size: int = 32):
        self.batch_size = batch_size

    def channel_weights(self, outputs: LayerOutputs, context: MethodContext | None = None) -> np.ndarray:
        acts = outputs.activations
        height, width = context.batch.shape[2:]
        rows, cols = align_corners_matrix(height, acts.shape[2]), align_corners_matrix(width, acts.shape[3])
        weights = np.empty(acts.shape[:2], dtype=np.float64)
        for i in range(len(acts)):
            scores = np.empty(acts.shape[1], dtype=np.float64)
            # Chunks of channels bound the memory: masks are (chunk, H, W), inputs (chunk, C_in, H, W).
            for start in range(0, acts.shape[1], self.batch_size):
                upsampled = rows @ acts[i, start : start + self.batch_size] @ cols.T
                low = upsampled.min(axis=(1, 2), keepdims=True)
                masks = (upsampled - low) / (upsampled.max(axis=(1, 2), keepdims=True) - low + EPSILON)
                masked = (context.batch[i][None] * masks[:, None]).astype(np.float32)
                scores[start : start + len(masks)] = context.rescore(i, masked)
            weights[i] = _softmax(scores)
        return weights
