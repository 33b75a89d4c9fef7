"""Reference activations and gradients straight from torch autograd, written independently of
onnxcam's exporter: one forward hook, one ``torch.autograd.grad`` with a one-hot seed; and the one
rule (:func:`assert_gradients_match`) by which ONNX gradients are held to it.

The truth is torch autograd in float64. Float32 cannot always reach it: where a ReLU (ReLU6, max
pool, Hardswish) input downstream of the layer lies within float32 forward rounding of its kink
(measured on resnet50 at 96x96: ~1e-5 of activations of scale ~1 four blocks deep), any float32
run may put it on the other side, and the flipped unit moves the whole gradient (by ~1e-2 in mean
relative error on a 3x3 map). Which units flip depends on the rounding, so torch float32 and ONNX
Runtime flip different ones; both are equally far from the truth.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

MIN_COSINE = 0.9999
MAX_MEAN_RELATIVE_ERROR = 1e-4
KINK_FACTOR = 2.0
"""How much further from the truth than the sample's float32 spread an excused sample may be, in
both measures. A float32 run on a kink is off by the share of the units it flips; where torch
float32 shows the kink, twice its miss lets ONNX flip about as many units again (measured: the
largest ratio ``summary_line`` prints stays below 1). Where ONNX's own nudged runs show it, the
bound is loose by construction (ONNX at the input is that far from its nudged runs); the evidence
there is that the same graph meets the truth at inputs 2^-18 away, which a wrong rule never does,
and the cosine floor bounds the jump."""
KINK_COSINE_FLOOR = 0.999
"""Every sample, excused or not, keeps this cosine: a flipped unit moves a gradient by a few 1e-4
in cosine at most (measured), a wrong rule by far more."""


def autograd_layer_gradients(
    model: torch.nn.Module, layer: str, batch: torch.Tensor, class_index: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(activations, dy^c/dA, logits) of ``layer`` for ``batch``, in the model's dtype; c is the
    top-1 class by default.

    The layer's output becomes a leaf and the network goes on with a copy of it, so in-place ops
    right after the layer (DenseNet's ``F.relu(features, inplace=True)``) rewrite neither the
    captured activations nor what is differentiated.
    """
    logits, leaf = outputs_with_layer_leaf(model, layer, batch)
    index = logits.argmax(dim=1) if class_index is None else torch.as_tensor(class_index)
    seed = torch.nn.functional.one_hot(index, logits.shape[1]).to(logits.dtype)
    (gradients,) = torch.autograd.grad(logits, leaf, grad_outputs=seed)
    return leaf.detach().numpy(), gradients.numpy(), logits.detach().numpy()


def outputs_with_layer_leaf(model: torch.nn.Module, layer: str, batch: torch.Tensor):
    """``(model(batch), leaf)``: the forward pass with ``layer``'s output made a leaf tensor that
    requires grad, the network going on with a copy of it (so in-place ops after the layer rewrite
    neither the captured activations nor what is differentiated)."""
    captured = {}

    def capture(_module, _inputs, output):
        captured["leaf"] = output.detach().clone().requires_grad_()
        return captured["leaf"].clone()

    handle = model.get_submodule(layer).register_forward_hook(capture)
    try:
        with torch.enable_grad():
            outputs = model(batch)
    finally:
        handle.remove()
    return outputs, captured["leaf"]


def float64_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The model in float64 (parameters and buffers), for the truth; ``model`` is left as it is."""
    return copy.deepcopy(model).double().eval()


NUDGE = 2.0**-18
"""Relative size of the input nudges that probe a sample for kinks (~3.8e-6): small enough that a
smooth gradient moves at most 2.5e-5 in mean relative error (measured on the ViTs: 1e-4 at 2^-16),
four times inside the bounds; large enough to move deep activations by the order of float32's own
forward error (measured 1e-6 to 1e-4 of their scale), so units that float32 rounding could flip
are flipped by some of the nudges."""


def nudged_inputs(batch: np.ndarray, copies: int = 3) -> np.ndarray:
    """``(copies, N, ...)`` float32 copies of ``batch``, each entry scaled by ``1 +- NUDGE`` with a
    seeded random sign per entry and copy."""
    signs = np.where(np.random.default_rng(0).random((copies, *np.shape(batch))) < 0.5, -1.0, 1.0)
    return (np.asarray(batch, np.float64)[None] * (1.0 + NUDGE * signs)).astype(np.float32)


@dataclass(frozen=True)
class SampleScore:
    """One sample: ONNX vs the float64 truth, and the sample's float32 spread (the larger of torch
    float32 vs the truth and ONNX at the input vs ONNX at :func:`nudged_inputs`), each as
    (1 - cosine, mean relative error)."""

    onnx: tuple[float, float]
    spread: tuple[float, float]

    @property
    def within_bounds(self) -> bool:
        return _within_bounds(self.onnx)

    @property
    def on_kink(self) -> bool:
        return not _within_bounds(self.spread)

    @property
    def excusable(self) -> bool:
        return (
            self.on_kink
            and 1 - self.onnx[0] >= KINK_COSINE_FLOOR
            and all(o <= KINK_FACTOR * s for o, s in zip(self.onnx, self.spread))
        )


def _within_bounds(distance: tuple[float, float]) -> bool:
    return 1 - distance[0] >= MIN_COSINE and distance[1] <= MAX_MEAN_RELATIVE_ERROR


def _distance(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    return 1 - cosine(a, b), mean_relative_error(a, b)


def score_samples(
    onnx_grads: np.ndarray, onnx_nudged: np.ndarray, truth: np.ndarray, torch_float32: np.ndarray
) -> list[SampleScore]:
    """Per sample of ``onnx_grads`` ``(N, ...)``: ``onnx_nudged`` ``(copies, N, ...)`` are ONNX's
    gradients at :func:`nudged_inputs` of the input, ``truth`` float64 autograd and
    ``torch_float32`` float32 autograd at the input itself."""
    scores = []
    for i, (grad, true) in enumerate(zip(onnx_grads, truth)):
        distances = [_distance(torch_float32[i], true)] + [_distance(grad, n[i]) for n in onnx_nudged]
        spread = tuple(max(d[k] for d in distances) for k in range(2))
        scores.append(SampleScore(_distance(grad, true), spread))
    return scores


def assert_gradients_match(
    onnx_grads: np.ndarray,
    onnx_nudged: np.ndarray,
    truth: np.ndarray,
    torch_float32: np.ndarray,
    where: object,
) -> list[SampleScore]:
    """The acceptance rule, per sample: the ONNX gradient meets cosine >= MIN_COSINE and mean
    relative error <= MAX_MEAN_RELATIVE_ERROR against the float64 truth; or the sample sits on a
    kink, shown by float32 itself missing those bounds (torch float32 against the truth, or ONNX at
    the input against ONNX at inputs nudged by NUDGE), and then ONNX is within KINK_FACTOR times
    that float32 spread of the truth, with cosine >= KINK_COSINE_FLOOR. A wrong backward rule is
    reproducible under the nudge and absent from torch, so it is never excused. Returns the scores."""
    assert onnx_grads.shape == truth.shape == torch_float32.shape, (where, onnx_grads.shape, truth.shape)
    assert np.abs(truth).max() > 0, f"{where}: the reference gradient is all zero"
    scores = score_samples(onnx_grads, onnx_nudged, truth, torch_float32)
    failed = [i for i, s in enumerate(scores) if not (s.within_bounds or s.excusable)]
    excused = [i for i, s in enumerate(scores) if not s.within_bounds and s.excusable]
    assert not failed, (
        f"{where}: samples {failed} miss the bounds against float64 autograd without a kink to "
        f"excuse them ({len(excused)} of {len(scores)} excused); (1 - cosine, mean relative error) "
        f"ONNX / float32 spread: {[(s.onnx, s.spread) for s in scores]}"
    )
    return scores


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


def summary_line(where: object, scores: list[SampleScore]) -> str:
    """One line for logs: the range of cosine and mean relative error, and the excused samples."""
    cosines = [1 - s.onnx[0] for s in scores]
    errors = [s.onnx[1] for s in scores]
    excused = [s for s in scores if not s.within_bounds]
    ratio = max((o / sp for s in excused for o, sp in zip(s.onnx, s.spread)), default=0.0)
    return (
        f"{where}: cosine {min(cosines):.6f}-{max(cosines):.6f}, mean relative error "
        f"{min(errors):.1e}-{max(errors):.1e}, {len(excused)} of {len(scores)} excused (on a kink, "
        f"largest ONNX/spread ratio {ratio:.2f})"
    )


# -- the zoo as the gradient tests use it -----------------------------------------------------------

SWEEP_SIZE = 96
"""Input side for the CNNs of the zoo sweeps (any size works; small keeps the sweeps quick)."""


def calibrate_batchnorm(model: torch.nn.Module, batch: torch.Tensor) -> torch.nn.Module:
    """Set every BatchNorm's running statistics to those of ``batch`` (one train-mode pass), so
    random-init networks have trained-like activation scales: untrained MobileNetV3's
    squeeze-excite and Hardswish stages otherwise shrink activations to ~1e-9."""
    for norm in model.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average: after one batch, exactly its statistics
    model.train()
    with torch.no_grad():
        model(batch)
    return model.eval()


def sweep_size(arch: str) -> int:
    """The input side of ``arch`` in the sweeps: the ViT's position embedding fixes its size."""
    from onnxcam.export.zoo import zoo_entry

    entry = zoo_entry(arch)
    return entry.preprocessing.input_size[0] if entry.reshape is not None else SWEEP_SIZE


def calibrated_zoo_model(arch: str) -> torch.nn.Module:
    """The zoo model, seeded, with BatchNorm calibrated and ConvNeXt's layer scales at trained-like
    values (its 1e-6 init would make every block an identity and hide LayerNorm/GELU)."""
    from onnxcam.export.zoo import build_model

    torch.manual_seed(0)
    model = build_model(arch)
    if arch.startswith("convnext"):
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith("layer_scale"):
                    parameter.uniform_(0.1, 1.0)
    size = sweep_size(arch)
    return calibrate_batchnorm(model, torch.randn(8, 3, size, size))
