"""A diagnostic of the run's model pass: how many of a method's channel weights are negative, the
share that the ``relu`` and ``abs`` weightings treat differently."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcam.contract import CLASS_INDEX, INPUT


def channel_weight_methods(methods: Sequence[str]) -> dict[str, object]:
    """Instances of the ``methods`` whose maps are ``sum_k w_k A^k`` with weights from one pass
    (:attr:`~onnxcam.runtime.methods.CamMethod.single_pass` and their own ``channel_weights``)."""
    from onnxcam.runtime.methods import CamMethod, get_method

    found = {}
    for name in methods:
        method = get_method(name)
        if method.single_pass and type(method).channel_weights is not CamMethod.channel_weights:
            found[name] = method
    return found


def negative_weight_fractions(session, batch: np.ndarray, labels: np.ndarray, layer: str, methods: dict) -> dict[str, np.ndarray]:
    """Per image, the fraction of channel weights ``alpha_k`` below zero, per method ``(n,)``, for
    the ``methods`` (:func:`channel_weight_methods`) that the layer's outputs serve (CAM needs a
    GAP + linear head), from one run of the outputs they read."""
    from onnxcam.runtime.methods import LayerOutputs

    reads = {}
    for name, method in methods.items():
        try:
            reads[name] = session.layer_output_names(method, layer)
        except ValueError:
            continue  # the layer lacks an output the method reads
    if not reads:
        return {}
    names = list(dict.fromkeys(name for needed in reads.values() for name in needed))
    fetched = dict(zip(names, session.run(names, {INPUT: batch, CLASS_INDEX: labels})))
    info = session.metadata.layer(layer)
    outputs = LayerOutputs(fetched[info.activations], fetched.get(info.gradients), fetched.get(info.cam_weights))
    return {name: (np.asarray(methods[name].channel_weights(outputs)) < 0).mean(axis=1) for name in reads}
