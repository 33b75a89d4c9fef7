"""A diagnostic of the run's model pass: how many of a method's channel weights are negative, the
share that the ``relu`` and ``abs`` weightings treat differently."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcam.contract import CLASS_INDEX, INPUT


def channel_weight_methods(methods: Sequence[str]) -> dict[str, object]:
    """Instances of the ``methods`` whose maps are ``sum_k w_k A^k`` with weights from one pass."""
    from onnxcam.runtime.methods import CamMethod, get_method

    found = {}
    for name in methods:
        method = get_method(name)
        if type(method).channel_weights is not CamMethod.channel_weights:
            found[name] = method
    return found


def negative_weight_fractions(session, batch: np.ndarray, labels: np.ndarray, layer: str, methods: dict) -> dict[str, np.ndarray]:
    """Per image, the fraction of channel weights ``alpha_k`` below zero, per method ``(n,)``."""
    from onnxcam.runtime.methods import LayerOutputs

    info = session.metadata.layer(layer)
    names = [info.activations, info.gradients] + ([info.cam_weights] if info.has_cam_weights else [])
    fetched = dict(zip(names, session.run(names, {INPUT: batch, CLASS_INDEX: labels})))
    outputs = LayerOutputs(fetched[info.activations], fetched[info.gradients], fetched.get(info.cam_weights))
    fractions = {}
    for name, method in methods.items():
        if method.needs_cam_weights and outputs.cam_weights is None:
            continue
        try:
            weights = np.asarray(method.channel_weights(outputs))
        except (NotImplementedError, TypeError, ValueError, AttributeError):
            continue  # a method whose weights need more than one pass's outputs
        fractions[name] = (weights < 0).mean(axis=1)
    return fractions
