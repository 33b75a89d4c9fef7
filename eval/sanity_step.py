"""The sanity checks of an evaluation, once per model (``onnxcam eval --metrics sanity``).

The model is randomized from the logits down (:func:`onnxcam.eval.sanity.randomize_layers`, at
most :data:`SANITY_STEPS` evenly spaced steps, the last one every layer) into the run folder; on a
small sample of the set, each method's maps under each weighting (``none`` included, where the
method has it) are compared with the original model's (:func:`~onnxcam.eval.sanity.map_similarity`)
at every step, and with the maps of another class (the random-logit check). A method that
explains the model gives maps that drift away from the original as more layers are randomized.

Results, one ``sanity.npz`` per run folder, keyed ``<method>__<weighting>__<key>``:
``spearman`` / ``ssim`` / ``flat_pct`` (100 where the randomized model's map is constant) ``(steps, n)``,
``random_logit_spearman`` / ``random_logit_ssim`` ``(n,)``;
plus ``steps`` (the randomization steps, of ``layers`` in all).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

SANITY_IMAGES = 16
SANITY_STEPS = 5


def spaced_steps(count: int, most: int = SANITY_STEPS) -> list[int]:
    """At most ``most`` of the steps ``1..count``, evenly spaced, ending at ``count`` (all layers).

    >>> spaced_steps(3), spaced_steps(20)
    ([1, 2, 3], [4, 8, 12, 16, 20])
    """
    if count <= most:
        return list(range(1, count + 1))
    return sorted({int(round(count * k / most)) for k in range(1, most + 1)})


def sanity_weightings(method: str, weightings: Sequence[str]) -> list[str]:
    """The run's weightings that ``method`` accepts, and ``none`` (the signed map) if it has it."""
    from onnxcam.runtime.methods import METHODS

    accepted = METHODS[method].weightings
    return [w for w in dict.fromkeys([*weightings, "none"]) if w in accepted]


def sanity_arrays(
    model_path: str,
    randomized: Sequence[str | Path],
    batch: np.ndarray,
    labels: np.ndarray,
    methods: dict[str, list[str]],
    layer: str,
    samples: dict[str, int],
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Similarity of each method's maps to the original model's, per randomized model and for a
    random other class: ``{"<method>__<weighting>__<key>": array}``.

    ``batch`` ``(N, C, H, W)`` preprocessed, ``labels`` ``(N,)`` the classes explained;
    ``methods`` maps each method to its weightings; ``samples[method]`` is how many of the ``N``
    images it gets (the costly ones fewer). Each randomized model is opened once for all methods.
    """
    from onnxcam.eval.engine import chunk_session
    from onnxcam.eval.sanity import map_similarity, random_other_classes
    from onnxcam.runtime import CamSession
    from onnxcam.runtime.session_options import default_session_options, without_spinning

    session = chunk_session(model_path, threads)
    others = random_other_classes(labels, session.metadata.num_classes)
    arrays: dict[str, np.ndarray] = {}
    originals = {}
    for method, weightings in methods.items():
        n = samples[method]
        originals[method] = session.explain_weightings(batch[:n], method, weightings, class_index=labels[:n], layer=layer)
        swapped = session.explain_weightings(batch[:n], method, weightings, class_index=others[:n], layer=layer)
        for weighting in weightings:
            rank, index = map_similarity(originals[method][weighting].maps, swapped[weighting].maps)
            arrays[f"{method}__{weighting}__random_logit_spearman"] = rank
            arrays[f"{method}__{weighting}__random_logit_ssim"] = index
    curves: dict[str, list[np.ndarray]] = {}
    for path in randomized:
        # Not cached: each randomized model serves every method once, then is dropped.
        options = without_spinning(default_session_options(threads))
        randomized_session = CamSession(str(path), session_options=options, prune_graph=True)
        for method, weightings in methods.items():
            n = samples[method]
            results = randomized_session.explain_weightings(batch[:n], method, weightings, class_index=labels[:n], layer=layer)
            for weighting in weightings:
                maps = results[weighting].maps
                rank, index = map_similarity(originals[method][weighting].maps, maps)
                curves.setdefault(f"{method}__{weighting}__spearman", []).append(rank)
                curves.setdefault(f"{method}__{weighting}__ssim", []).append(index)
                # A flat map (a randomized network whose ReLUs are all off) has Spearman 0 by definition.
                flat = maps.reshape(len(maps), -1).max(axis=1) == maps.reshape(len(maps), -1).min(axis=1)
                curves.setdefault(f"{method}__{weighting}__flat_pct", []).append(100.0 * flat)
    arrays.update({key: np.stack(values) for key, values in curves.items()})
    return arrays
