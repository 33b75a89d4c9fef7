"""Class scores from logits: softmax probabilities, the top-k classes with their labels, and the
explained class as graph ops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from onnxcam.contract import CLASS_INDEX

if TYPE_CHECKING:
    from onnxcam.graph import GraphBuilder


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


def graph_explained_class(b: GraphBuilder, scores: str) -> str:
    """The class each sample explains, as graph ops: ``class_index`` (N,), a negative entry (the
    contract's TOP1_CLASS) replaced by the argmax of ``scores`` (N, K)."""
    top1 = b.op("ArgMax", scores, axis=1, keepdims=0)
    return b.op("Where", b.op("Less", CLASS_INDEX, b.const(np.int64(0))), top1, CLASS_INDEX)
