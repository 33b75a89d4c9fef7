"""Extra passes that perturbation methods need, batched: forward-only logits of many inputs
(Score-CAM, occlusion) and the target class's score after ablating each channel of a layer
(Ablation-CAM), through the head cut out of the model's own graph.

Both graphs are cut from the CAM-ready file with plain ``onnx`` (``onnxcam.runtime.graph_cuts``)
on first use and kept for the session's life.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import onnx
import onnxruntime as ort

from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS, LayerInfo
from onnxcam.runtime.graph_cuts import extract_forward_model, extract_head
from onnxcam.runtime.session_options import without_spinning

T = TypeVar("T")

MAX_CHUNK_FLOATS = 1 << 24
"""Upper bound on the floats of one batched pass (64 MiB of float32), to keep memory bounded."""


def chunk_rows(row_floats: int, limit: int | None = None) -> int:
    """How many rows of ``row_floats`` floats one pass takes: at most ``limit``, >= 1."""
    rows = max(1, MAX_CHUNK_FLOATS // max(1, row_floats))
    return min(rows, limit) if limit else rows


def session_of_model(model: onnx.ModelProto, providers: list[str], options: ort.SessionOptions) -> ort.InferenceSession:
    """An ONNX Runtime session of an in-memory model."""
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=providers)


@dataclass
class _AblationHead:
    """One layer's head, ready to run: see ``onnxcam.runtime.graph_cuts.HeadGraph``."""

    reduce: ort.InferenceSession | None
    reduce_outputs: tuple[str, ...]
    graph: object  # HeadGraph, kept to build a body for the cut chosen on first use
    body: dict[str, ort.InferenceSession | None]


class ModelPasses:
    """Runs extra passes of the model at ``path`` with the session's providers and options, except
    that the ablation heads' worker threads do not spin
    (:func:`~onnxcam.runtime.session_options.without_spinning`): a head pass runs between two runs
    of the model and its idle threads would take their cores. Score-CAM's and occlusion's forward
    passes run back to back and keep the options."""

    def __init__(
        self,
        path: str | os.PathLike,
        providers: list[str],
        options: ort.SessionOptions,
        forward_path: str | os.PathLike | None = None,
    ):
        self.path = Path(path)
        self.forward_path = Path(forward_path) if forward_path is not None else None
        self.providers = providers
        self.options = options
        self.head_options = without_spinning(options)
        self._model: onnx.ModelProto | None = None
        self._forward: ort.InferenceSession | None = None
        self._heads: dict[str, _AblationHead] = {}
        self._built: dict[tuple, object] = {}

    @property
    def model(self) -> onnx.ModelProto:
        """The model file's graph, loaded on first use."""
        if self._model is None:
            self._model = onnx.load(str(self.path))
        return self._model

    def cached(self, key: tuple, build: Callable[[], T]) -> T:
        """``build()``, called on first use of ``key`` and kept for the session's life (a method's
        head sessions: method instances are made per call)."""
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def logits(self, inputs: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """(M, C, H, W) float32 inputs -> (M, K) logits, with the forward graph alone (no
        backward), ``batch_size`` inputs per run (default: as many as fit MAX_CHUNK_FLOATS); the
        forward graph of ``forward_path`` when given (a static-int8 copy of the model, say)."""
        if self._forward is None:
            model = self.model if self.forward_path is None else onnx.load(str(self.forward_path))
            self._forward = session_of_model(extract_forward_model(model), self.providers, self.options)
        step = chunk_rows(int(np.prod(inputs.shape[1:])), batch_size)
        reads_class_index = any(value.name == CLASS_INDEX for value in self._forward.get_inputs())
        logits = []
        for start in range(0, len(inputs), step):
            feeds = {INPUT: np.ascontiguousarray(inputs[start : start + step])}
            if reads_class_index:  # for its shape only (extract_forward_model)
                feeds[CLASS_INDEX] = np.zeros(len(feeds[INPUT]), np.int64)
            logits.append(self._forward.run([LOGITS], feeds)[0])
        return np.concatenate(logits)

    def _head(self, layer: LayerInfo) -> _AblationHead:
        if layer.name not in self._heads:
            graph = extract_head(self.model, layer.activations)
            reduce = session_of_model(graph.reduce, self.providers, self.head_options) if graph.reduce else None
            self._heads[layer.name] = _AblationHead(reduce, graph.reduce_outputs, graph, {})
        return self._heads[layer.name]

    def _cut(self, head: _AblationHead, activations: np.ndarray) -> tuple[str, np.ndarray]:
        """The furthest tensor past the layer that still has one entry per channel, and its value."""
        name, value = head.graph.activations, activations
        if head.reduce is None:
            return name, value
        channels = activations.shape[1]
        for candidate, reduced in zip(head.reduce_outputs, head.reduce.run(list(head.reduce_outputs), {head.graph.activations: activations})):
            if reduced.ndim < 2 or reduced.shape[:2] != activations.shape[:2] or reduced.shape[1] != channels:
                break
            name, value = candidate, reduced
        return name, value

    def ablated_scores(self, layer: LayerInfo, activations: np.ndarray, class_index: int) -> np.ndarray:
        """Score of class ``class_index`` with each channel of ``activations`` zeroed in turn.

        activations: (1, C, h, w) of one image -> (C,) float64 scores; row k ablates channel k.
        """
        head = self._head(layer)
        cut, value = self._cut(head, activations)
        if cut not in head.body:
            body = head.graph.body_model(cut)
            head.body[cut] = session_of_model(body, self.providers, self.head_options) if body is not None else None
        body = head.body[cut]
        channels = value.shape[1]
        linear = head.graph.linear
        if body is None and linear is not None:
            # The cut is the linear layer's input: zeroing channel k removes exactly its term.
            weight, bias = linear
            terms = value.reshape(channels).astype(np.float64) * weight[:, class_index]
            return terms.sum() + bias[class_index] - terms
        scores = np.empty(channels, dtype=np.float64)
        step = chunk_rows(value.size)
        for start in range(0, channels, step):
            stop = min(channels, start + step)
            # Row r of the chunk is the cut tensor with channel start + r zeroed.
            keep = np.ones((stop - start, channels), dtype=value.dtype)
            keep[np.arange(stop - start), np.arange(start, stop)] = 0
            ablated = value * keep.reshape(keep.shape + (1,) * (value.ndim - 2))
            features = ablated if body is None else body.run(None, {cut: ablated})[0]
            if linear is None:
                scores[start:stop] = features[:, class_index]
            else:
                weight, bias = linear
                scores[start:stop] = features.astype(np.float64) @ weight[:, class_index] + bias[class_index]
        return scores
