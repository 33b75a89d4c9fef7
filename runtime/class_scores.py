"""Class scores from logits: softmax probabilities and the top-k classes with their labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, ``(..., K)`` -> ``(..., K)`` float64 (shifted by the maximum,
    so large logits do not overflow)."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(shifted - shifted.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def class_name(class_index: int, class_labels: Sequence[str] | None) -> str:
    """``"285 Egyptian cat"`` where the model's metadata has labels, ``"class 285"`` otherwise."""
    if class_labels is None:
        return f"class {class_index}"
    return f"{class_index} {class_labels[class_index]}"


def top_classes(logits: np.ndarray, k: int, class_labels: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable classes of each row of ``(N, K)`` logits, as ``(name, probability)``
    pairs, most probable first (names from :func:`class_name`)."""
    probabilities = softmax(logits)
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return [[(class_name(int(c), class_labels), float(row[c])) for c in classes] for row, classes in zip(probabilities, order)]
