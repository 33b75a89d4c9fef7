"""Extra passes of a model exported with a target other than the class logit: the target's value
(``target/score``) of many inputs, through the graph cut to it (forward only, no backward), for
the methods that re-run the model (Score-CAM, occlusion)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnxruntime as ort

from onnxcam.contract import CLASS_INDEX, INPUT, TARGET_SCORE, TargetInfo
from onnxcam.runtime.graph_cuts import extract_model
from onnxcam.runtime.methods.passes import ModelPasses, chunk_rows, session_of_model


class TargetPasses:
    """Runs ``input, class_index, *target inputs -> target/score`` for a model's ``target``."""

    def __init__(self, passes: ModelPasses, target: TargetInfo):
        self.passes = passes
        self.target = target
        self._session: ort.InferenceSession | None = None

    def scores(
        self,
        inputs: np.ndarray,
        class_index: np.ndarray,
        target_inputs: Mapping[str, np.ndarray],
        batch_size: int | None = None,
    ) -> np.ndarray:
        """(M, C, H, W) float32 inputs, (M,) classes, {name: (M, ...)} target inputs -> (M,)
        target values, ``batch_size`` inputs per run (default: as many as fit MAX_CHUNK_FLOATS)."""
        if self._session is None:
            names = [INPUT, CLASS_INDEX, *self.target.input_names]
            cut = extract_model(self.passes.model, names, [TARGET_SCORE])
            self._session = session_of_model(cut, self.passes.providers, self.passes.options)
        read = {value.name for value in self._session.get_inputs()}
        step = chunk_rows(int(np.prod(inputs.shape[1:])), batch_size)
        scores = []
        for start in range(0, len(inputs), step):
            rows = slice(start, start + step)
            feeds = {INPUT: np.ascontiguousarray(inputs[rows]), CLASS_INDEX: class_index[rows]}
            feeds.update({name: np.ascontiguousarray(value[rows]) for name, value in target_inputs.items()})
            scores.append(self._session.run([TARGET_SCORE], {k: v for k, v in feeds.items() if k in read})[0])
        return np.concatenate(scores)
