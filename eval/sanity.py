"""Sanity checks for saliency maps (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018):
does the map change when the model's weights are randomized, or when another class is explained?

A method that explains the model must give maps that drift away from the original ones as layers
are randomized from the logits down (guided backpropagation famously does not: it keeps
reconstructing edges). :func:`randomize_layers` writes the randomized CAM-ready copies without
torch: the weights are initializers of the ONNX file, and the backward part of the graph reads the
same initializers (or transposed copies of them, which are redrawn alike), so its gradients follow.
:func:`map_similarity` is the paper's comparison, Spearman rank correlation of ``|map|`` and SSIM.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from scipy import ndimage, stats

from onnxcam.atomic_write import write_atomically
from onnxcam.eval.map_arrays import check_class_index, check_maps
from onnxcam.runtime.graph_cuts import extract_forward_model

LAYER_OPS = ("Conv", "Gemm", "MatMul")
ORDERS = ("top-down", "independent")
SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03


def randomizable_layers(model: onnx.ModelProto) -> list[tuple[str, list[str]]]:
    """The layers of the forward graph that carry weights, from the logits down: ``[(node name,
    [its float initializers: weight, bias])]``. A layer is a Conv, Gemm or MatMul node whose
    weight (or bias) operand is a float initializer, directly or through shape-only ops (the
    exporter feeds a Linear's ``W`` to its Gemm through a Transpose, say)."""
    floats = {init.name for init in model.graph.initializer if init.data_type in _FLOAT_TYPES}
    producers = {output: node for node in model.graph.node for output in node.output}
    layers = []
    for node in extract_forward_model(model).graph.node:
        operands = node.input if node.op_type == "MatMul" else node.input[1:]
        weights = [source for source in (_initializer_source(name, producers, floats) for name in operands) if source]
        if node.op_type in LAYER_OPS and weights:
            layers.append((node.name, list(dict.fromkeys(weights))))
    return layers[::-1]


_SHAPE_ONLY_OPS = {"Transpose", "Reshape", "Cast", "Identity", "Unsqueeze", "Squeeze", "Flatten"}


def _initializer_source(name: str, producers: dict[str, onnx.NodeProto], floats: set[str]) -> str | None:
    """The float initializer that ``name`` is, or is made from by shape-only ops; else None."""
    while name not in floats:
        node = producers.get(name)
        if node is None or node.op_type not in _SHAPE_ONLY_OPS:
            return None
        name = node.input[0]
    return name


_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def _fingerprint(array: np.ndarray) -> tuple:
    """Equal for arrays that hold the same values in any order or shape."""
    return array.size, np.sort(array, axis=None).tobytes()


def _linked_copies(name: str, arrays: dict[str, np.ndarray], fingerprints: dict[str, tuple]) -> list[tuple[str, tuple[int, ...]]]:
    """Every initializer that holds ``name``'s values transposed and/or reshaped (the exporter
    folds ``W^T`` of a Linear into the forward Gemm and keeps ``W`` for the backward, say):
    ``[(initializer, axis permutation of name's array)]``, ``name`` itself included."""
    source = arrays[name]
    links = []
    for other, array in arrays.items():
        if fingerprints[other] != fingerprints[name]:
            continue
        for perm in itertools.permutations(range(source.ndim)):
            if np.array_equal(np.transpose(source, perm).reshape(-1), array.reshape(-1)):
                links.append((other, perm))
                break
    return links


def _file_name(stem: str, step: int, node: str) -> str:
    return f"{stem}.randomized-{step:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', node)}.onnx"


def randomize_layers(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    order: str = "top-down",
    seed: int = 0,
    steps: Sequence[int] | None = None,
) -> list[Path]:
    """Copies of a CAM-ready model with layers' weights re-drawn, one file per step.

    Each layer of :func:`randomizable_layers` (a Conv, Gemm or MatMul with weights, from the
    logits down) has its weight and bias initializers re-drawn from a normal distribution with
    that initializer's own mean and standard deviation, and every transposed or reshaped copy of
    them in the file is replaced alike. ``order="top-down"`` is Adebayo et al.'s cascading
    randomization: step ``k`` randomizes the ``k`` layers nearest the logits, cumulatively;
    ``"independent"`` randomizes only layer ``k`` in file ``k``. Draws come from ``seed``, the same
    draw for a layer in every file. Files are ``<stem>.randomized-<k>-<node>.onnx`` in ``out_dir``,
    written atomically, metadata (the contract) kept; returns their paths in step order.
    ``steps`` (1-based, default all): write only these files (a deep network has one per layer).
    """
    if order not in ORDERS:
        raise ValueError(f"order {order!r}: one of {', '.join(ORDERS)}")
    model_path = Path(model_path)
    model = onnx.load(str(model_path))
    layers = randomizable_layers(model)
    if not layers:
        raise ValueError(
            f"{model_path.name} has no Conv, Gemm or MatMul with float weight initializers in its "
            "forward graph (a quantized model cannot be randomized: randomize the float one)"
        )
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer if init.data_type in _FLOAT_TYPES}
    fingerprints = {name: _fingerprint(array) for name, array in arrays.items()}
    rng = np.random.default_rng(seed)
    redrawn: list[dict[str, np.ndarray]] = []
    for _, weights in layers:
        values = {}
        for name in weights:
            source = arrays[name].astype(np.float64)
            fresh = rng.normal(source.mean(), source.std(), source.shape)
            if source.std() == 0:  # a constant is its own redraw (and would "match" any equal constant)
                continue
            for copy, perm in _linked_copies(name, arrays, fingerprints):
                values[copy] = np.transpose(fresh, perm).reshape(arrays[copy].shape).astype(arrays[copy].dtype)
        redrawn.append(values)
    paths = []
    wanted = set(range(1, len(layers) + 1) if steps is None else steps)
    if not wanted <= set(range(1, len(layers) + 1)):
        raise ValueError(f"steps {sorted(wanted)} must lie in 1..{len(layers)} ({model_path.name} has {len(layers)} layers)")
    for step, (node, _) in enumerate(layers, start=1):
        if step not in wanted:
            continue
        applied: dict[str, np.ndarray] = {}
        for values in redrawn[:step] if order == "top-down" else [redrawn[step - 1]]:
            applied.update(values)
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        for init in copy.graph.initializer:
            if init.name in applied:
                init.CopyFrom(numpy_helper.from_array(applied[init.name], init.name))
        path = Path(out_dir) / _file_name(model_path.stem, step, node)
        paths.append(write_atomically(path, lambda temporary, copy=copy: onnx.save(copy, temporary)))
    return paths


def spearman_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of ``|a[i]|`` and ``|b[i]|`` per image: ``(N, H, W)`` x2 ->
    ``(N,)`` float64 in [-1, 1]; 0 where either map is constant (no ranking to compare)."""
    a, b = np.abs(check_maps(a, "a")), np.abs(check_maps(b, "b"))
    if a.shape != b.shape:
        raise ValueError(f"maps to compare have shapes {a.shape} and {b.shape}")
    ranks_a = stats.rankdata(a.reshape(len(a), -1), axis=1)
    ranks_b = stats.rankdata(b.reshape(len(b), -1), axis=1)
    ranks_a -= ranks_a.mean(axis=1, keepdims=True)
    ranks_b -= ranks_b.mean(axis=1, keepdims=True)
    scale = np.sqrt((ranks_a**2).sum(axis=1) * (ranks_b**2).sum(axis=1))
    covariance = (ranks_a * ranks_b).sum(axis=1)
    return np.divide(covariance, scale, out=np.zeros(len(a)), where=scale > 0)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Mean structural similarity of ``a[i]`` and ``b[i]``: ``(N, H, W)`` x2 -> ``(N,)`` float64.

    scikit-image's ``structural_similarity`` with its defaults (Wang et al. 2004 with a uniform
    7x7 window, sample covariances, K1 = 0.01, K2 = 0.03, the mean over the pixels at least 3 from
    the border) and ``data_range`` (1 for maps in [0, 1]). Maps must be at least 7x7.
    """
    a, b = check_maps(a, "a"), check_maps(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"maps to compare have shapes {a.shape} and {b.shape}")
    if min(a.shape[1:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs maps of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {a.shape[1:]}")
    size = (1, SSIM_WINDOW, SSIM_WINDOW)
    window = SSIM_WINDOW**2
    covariance_scale = window / (window - 1)

    def mean(x):
        return ndimage.uniform_filter(x, size=size)

    mean_a, mean_b = mean(a), mean(b)
    var_a = covariance_scale * (mean(a * a) - mean_a**2)
    var_b = covariance_scale * (mean(b * b) - mean_b**2)
    cov = covariance_scale * (mean(a * b) - mean_a * mean_b)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    index = ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))
    pad = (SSIM_WINDOW - 1) // 2
    return index[:, pad:-pad, pad:-pad].mean(axis=(1, 2))


def map_similarity(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How alike two batches of maps are, as Adebayo et al. compare them: ``(spearman, ssim)``,
    each ``(N,)`` float64: :func:`spearman_abs` (rank correlation of the magnitudes) and
    :func:`ssim` of the maps (in [0, 1], as the runtime returns them)."""
    return spearman_abs(a, b), ssim(a, b)


def random_other_classes(class_index: np.ndarray, num_classes: int, seed: int = 0) -> np.ndarray:
    """For the random-logit check: a class drawn uniformly from the ``num_classes - 1`` others for
    each image, ``(N,)`` int64 (the map of a sound method changes with the class explained)."""
    class_index = check_class_index(class_index, len(np.asarray(class_index)))
    if num_classes < 2 or (class_index >= num_classes).any():
        raise ValueError(f"class_index {class_index.tolist()[:10]} must lie in [0, {num_classes}) with num_classes >= 2")
    shift = np.random.default_rng(seed).integers(1, num_classes, size=len(class_index))
    return (class_index + shift) % num_classes


def randomization_similarity(
    session_factory,
    original_maps: np.ndarray,
    randomized_paths: Sequence[str | os.PathLike],
    batch: np.ndarray,
    class_index: np.ndarray,
    method: str = "gradcam",
    weighting: str = "relu",
    **explain_options,
) -> tuple[np.ndarray, np.ndarray]:
    """The cascading-randomization curve: ``(spearman, ssim)``, each ``(steps, N)`` float64, the
    similarity of each randomized model's maps (for the same classes) to ``original_maps``.

    ``session_factory(path)`` opens a model (``CamSession`` with the options the caller wants);
    ``explain_options`` go to ``explain``.
    """
    spearman, structural = [], []
    for path in randomized_paths:
        maps = session_factory(path).explain(batch, method, weighting, class_index, **explain_options).maps
        rank, index = map_similarity(original_maps, maps)
        spearman.append(rank)
        structural.append(index)
    return np.array(spearman), np.array(structural)
