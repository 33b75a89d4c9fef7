"""Class visualization: the input a model scores highest for a class, by regularized gradient
ascent (Simonyan et al. 2014, with the jitter, blur and clipping of Yosinski et al. 2015), on the
input gradients of a CAM-ready model in ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS, Preprocessing, input_gradients_name
from onnxcam.runtime.inputs import class_index_array

GRADIENT_RULE = "plain"
"""dS_c/dI is the plain autograd input gradient (``input_gradients/plain``)."""


@dataclass(frozen=True)
class ClassVisualization:
    """``images``: ``(n, C, H, W)`` float32 in the model's input space (see :func:`input_to_rgb`),
    one per class of ``classes`` ``(n,)``; ``scores``: ``(steps + 1, n)`` float32, the class scores
    (logits) S_c of the image each step started from (jittered, as the step saw it), then of the
    final image."""

    images: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


def input_range(preprocessing: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """The model-input values of pixel 0 and pixel 255 per channel, each ``(C, 1, 1)`` float32."""
    mean = np.asarray(preprocessing.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(preprocessing.std, dtype=np.float32)[:, None, None]
    return (0.0 - mean) / std, (1.0 - mean) / std


def input_to_rgb(batch: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """Model inputs back to pictures: ``(N, C, H, W)`` float -> ``(N, H, W, 3)`` uint8 RGB (the
    inverse of the contract's preprocessing, clipped to 0..255)."""
    mean = np.asarray(preprocessing.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(preprocessing.std, dtype=np.float32)[:, None, None]
    pixels = np.clip((batch * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    pixels = np.moveaxis(pixels, 1, -1)
    return pixels[..., ::-1].copy() if preprocessing.channel_order == "BGR" else pixels


def check_input_gradients(session) -> None:
    """A ``ValueError`` naming the export flag if ``session``'s model lacks ``input_gradients/plain``."""
    if GRADIENT_RULE not in session.metadata.input_gradients:
        raise ValueError(
            f"{session.path.name} has no input gradients ({input_gradients_name(GRADIENT_RULE)}), which class "
            f"visualization ascends: re-export it with `--input-gradients {GRADIENT_RULE}` (onnxcam export / "
            f"export-synthetic) or input_gradients=[{GRADIENT_RULE!r}]"
        )


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each ``(H, W)`` plane of ``(n, C, H, W)`` images (edges reflected)."""
    planes = images.reshape(-1, *images.shape[2:])
    return np.stack([cv2.GaussianBlur(plane, (0, 0), sigma) for plane in planes]).reshape(images.shape)


def class_visualization(
    session,
    classes: Sequence[int],
    *,
    steps: int = 200,
    learning_rate: float = 10.0,
    l2: float = 1e-3,
    jitter: int | None = None,
    blur_every: int = 10,
    blur_sigma: float = 0.8,
    start: str | np.ndarray = "blank",
    seed: int = 0,
    progress=None,
) -> ClassVisualization:
    """Regularized gradient ascent on the input, one image per class, in ONNX Runtime.

    .. math::

        I^* = \\arg\\max_I S_c(I) - \\lambda \\lVert I \\rVert^2, \\qquad
        I \\leftarrow I + \\eta \\left( \\frac{\\partial S_c}{\\partial I} - 2 \\lambda I \\right)

    with :math:`S_c` the class logit and :math:`I` in the model's (normalised) input space. Each step
    runs the model once on all classes' images. Helps: the image is shifted by a random offset of up
    to ``jitter`` pixels (``np.roll``) before the step and shifted back after; every ``blur_every``
    steps it is blurred (Gaussian, ``blur_sigma`` pixels); after every step it is clipped to the
    values of pixels 0..255.

    Args:
        session: a :class:`~onnxcam.runtime.CamSession` whose model has ``input_gradients/plain``
            (export with ``--input-gradients plain``); ``prune_graph=True`` skips its other outputs.
        classes: the classes to visualize.
        steps, learning_rate (:math:`\\eta`), l2 (:math:`\\lambda`): the ascent.
        jitter: largest shift in pixels (default: 1/16 of the input side; 0 for none).
        blur_every: blur period in steps (0: never).
        start: ``"blank"`` (the mean image: zeros), ``"noise"`` (seeded, standard deviation 0.1), or an
            ``(n, C, H, W)`` float32 array.
        seed: the jitter offsets' and the noise's seed.
        progress: a callable wrapping the step range (``tqdm.tqdm``), or None.

    >>> result = class_visualization(CamSession("m.onnx", prune_graph=True), [3, 7])  # doctest: +SKIP
    >>> input_to_rgb(result.images, session.metadata.preprocessing).shape  # doctest: +SKIP
    (2, 224, 224, 3)
    """
    check_input_gradients(session)
    metadata = session.metadata
    classes = class_index_array(np.asarray(list(classes), dtype=np.int64), len(classes), metadata.num_classes)
    channels = len(metadata.preprocessing.mean)
    shape = (classes.size, channels, *metadata.preprocessing.input_size)
    rng = np.random.default_rng(seed)
    if isinstance(start, np.ndarray):
        if start.shape != shape:
            raise ValueError(f"start has shape {start.shape}; expected {shape}, one image per class")
        images = start.astype(np.float32).copy()
    elif start == "blank":
        images = np.zeros(shape, dtype=np.float32)
    elif start == "noise":
        images = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    else:
        raise ValueError(f"start must be 'blank', 'noise' or an array; got {start!r}")
    low, high = input_range(metadata.preprocessing)
    jitter = max(1, shape[-1] // 16) if jitter is None else int(jitter)
    names = [LOGITS, input_gradients_name(GRADIENT_RULE)]
    rows = np.arange(classes.size)
    scores = np.empty((steps + 1, classes.size), dtype=np.float32)
    for step in (progress or iter)(range(steps)):
        dy, dx = rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0)
        shifted = np.roll(images, (dy, dx), axis=(2, 3))
        logits, gradient = session.run(names, {INPUT: shifted, CLASS_INDEX: classes})
        scores[step] = logits[rows, classes]
        shifted = shifted + np.float32(learning_rate) * (gradient - np.float32(2 * l2) * shifted)
        images = np.roll(shifted, (-dy, -dx), axis=(2, 3))
        if blur_every and (step + 1) % blur_every == 0:
            images = _blur(images, blur_sigma)
        images = np.clip(images, low, high).astype(np.float32)
    (logits,) = session.run([LOGITS], {INPUT: images, CLASS_INDEX: classes})
    scores[steps] = logits[rows, classes]
    return ClassVisualization(images, classes, scores)
