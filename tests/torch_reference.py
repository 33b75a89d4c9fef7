"""Reference activations and gradients straight from torch autograd, written independently of
onnxcam's exporter: one forward hook, one ``torch.autograd.grad`` with a one-hot seed."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch


def autograd_layer_gradients(
    model: torch.nn.Module, layer: str, batch: torch.Tensor, class_index: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(activations, dy^c/dA, logits) of ``layer`` for ``batch``; c is the top-1 class by default."""
    captured = {}
    module = dict(model.named_modules())[layer]
    # The network goes on with a clone, so in-place ops right after the layer (DenseNet's
    # F.relu(features, inplace=True)) do not rewrite the captured activations.
    handle = module.register_forward_hook(lambda m, i, output: captured.setdefault("a", output).clone())
    try:
        with torch.enable_grad():
            logits = model(batch)
    finally:
        handle.remove()
    index = logits.argmax(dim=1) if class_index is None else class_index
    seed = torch.nn.functional.one_hot(index, logits.shape[1]).to(logits.dtype)
    (gradients,) = torch.autograd.grad(logits, captured["a"], grad_outputs=seed)
    return captured["a"].detach().numpy(), gradients.numpy(), logits.detach().numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def mean_relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """mean |a - b| / mean |b|: robust to the near-zero entries that make max-relative error useless."""
    return float(np.abs(a - b).mean() / np.abs(b).mean())


def exact_session(path) -> ort.InferenceSession:
    """A CPU session at ORT_ENABLE_EXTENDED: the optimisations that keep float sums in order, so
    gradient exactness is measured rather than ORT_ENABLE_ALL's NCHWc reordering."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def minmax(maps: np.ndarray) -> np.ndarray:
    """Per-map min-max normalisation as the peers' maps are normalised (N, H, W) -> (N, H, W)."""
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / (maps.max(axis=(1, 2), keepdims=True) - low)
