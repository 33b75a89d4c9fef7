"""Which rows a benchmark run times, from environment variables.

Every row does the same work: a preprocessed float32 ``(N, 3, S, S)`` batch in, min-max normalised
heatmaps ``(N, S, S)`` out (the floor row: logits out), on one model with one set of weights.

Environment (all optional):

- ``BENCH_FULL=1``: every model x batch x layer x method x implementation (hours on 2 cores).
- ``BENCH_THREADS`` (2): intra-op threads of every ONNX Runtime session and of torch.
- ``BENCH_MODELS`` (``resnet50,vgg16,mobilenet_v2,efficientnet_lite0``), ``BENCH_BATCHES``
  (``1,8,32``): restrict the plan.
- ``BENCH_LAYERS`` (``last,middle``): restrict to the zoo entry's last and/or middle layer.
- ``BENCH_INPUT_SIZE`` (224): square input side (the smoke test uses 48).
- ``BENCH_ROUND_SECONDS`` (3), ``BENCH_MIN_ROUNDS`` (3), ``BENCH_MAX_ROUNDS`` (30): how many timed
  calls a row gets, ``clamp(round_seconds / warm_call_seconds, min, max)``.
- ``BENCH_WARMUP`` (1): 0 skips the warm-up call (the smoke test; rows then get ``BENCH_MIN_ROUNDS``).
- ``BENCH_PAUSE_S`` (0.3): idle time before each row, so the worker threads of the previous row
  stop spinning before the next starts (see docs/benchmarks.md, "Timing").
- ``BENCH_CACHE`` (``.benchmarks/models``): where exported models are kept between runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

FLOOR = "onnxruntime"
"""The floor: an ONNX Runtime forward pass of the plain exported classifier, logits only."""
ONNXCAM = "onnxcam"
ONNXCAM_FUSED = "onnxcam-fused"
ONNXCAM_INT8 = "onnxcam-int8"
PYTORCH_GRAD_CAM = "pytorch-grad-cam"
TORCHCAM = "torchcam"
CAPTUM = "captum"

SKIPPED_FILE = "skipped.json"
"""Written beside the pytest-benchmark JSON: the rows that were skipped, and why."""

FORWARD = "forward"
LAST, MIDDLE = "last", "middle"
"""Layer roles: the zoo entry's ``last_layer`` / ``middle_layer``."""

ONNXCAM_METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "layercam", "ablationcam", "scorecam")
"""onnxcam's methods with a row, by their ``onnxcam.runtime.methods.METHODS`` names; a row whose
method is not in the registry yet is skipped with that reason, never imitated."""

PEER_CLASSES: dict[str, dict[str, str]] = {
    PYTORCH_GRAD_CAM: {
        "gradcam": "GradCAM",
        "gradcam++": "GradCAMPlusPlus",
        "xgradcam": "XGradCAM",
        "layercam": "LayerCAM",
        "scorecam": "ScoreCAM",
        "ablationcam": "AblationCAM",
    },
    TORCHCAM: {
        "gradcam": "GradCAM",
        "gradcam++": "GradCAMpp",
        "xgradcam": "XGradCAM",
        "layercam": "LayerCAM",
        "scorecam": "ScoreCAM",
    },
    CAPTUM: {"gradcam": "LayerGradCam"},
}
"""Each peer's class for an onnxcam method name."""

PEERS = tuple(PEER_CLASSES)
ORT_IMPLEMENTATIONS = (FLOOR, ONNXCAM, ONNXCAM_FUSED, ONNXCAM_INT8)
"""The rows that run an ONNX file in ONNX Runtime (the rest are torch peers)."""

DEFAULT_MODELS = ("resnet50", "vgg16", "mobilenet_v2", "efficientnet_lite0")
HEADLINE_MODEL = "resnet50"


ROW_ID = re.compile(
    rf"(?P<model>.+)-b(?P<batch>\d+)-(?P<layer>{LAST}|{MIDDLE})-(?P<implementation>.+)-(?P<method>[^-]+)-(?P<device>cpu|cuda)"
)


@dataclass(frozen=True)
class Row:
    """One timed row: ``implementation`` computing ``method`` at ``layer`` on ``device``."""

    model: str
    batch: int
    layer: str  # LAST or MIDDLE
    implementation: str
    method: str
    device: str = "cpu"

    @property
    def id(self) -> str:
        return f"{self.model}-b{self.batch}-{self.layer}-{self.implementation}-{self.method}-{self.device}"

    @classmethod
    def from_id(cls, row_id: str) -> Row:
        """The row of :attr:`id` (method names have no hyphen; implementation names may)."""
        match = ROW_ID.fullmatch(row_id)
        if match is None:
            raise ValueError(f"{row_id!r} is not a row id such as 'resnet50-b1-last-onnxcam-gradcam-cpu'")
        return cls(**{**match.groupdict(), "batch": int(match["batch"])})

    @property
    def runs_for_minutes(self) -> bool:
        """A call that runs the whole network once per channel of the layer (2048 passes per image
        at resnet50's layer4): Score-CAM, and the peers' Ablation-CAM (onnxcam's reruns only the
        head). Such a row is timed once, with no warm-up call: one call is thousands of passes."""
        return self.method == "scorecam" or (self.method == "ablationcam" and self.implementation in PEERS)


@dataclass(frozen=True)
class BenchConfig:
    full: bool = False
    threads: int = 2
    models: tuple[str, ...] = DEFAULT_MODELS
    batches: tuple[int, ...] = (1, 8, 32)
    layers: tuple[str, ...] = (LAST, MIDDLE)
    input_size: int = 224
    round_seconds: float = 3.0
    min_rounds: int = 3
    max_rounds: int = 30
    pause_s: float = 0.3
    warmup: bool = True
    cache: Path = Path(".benchmarks/models")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> BenchConfig:
        env = os.environ if environ is None else environ

        def ints(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(int(v) for v in env[name].split(",")) if env.get(name) else default

        return cls(
            full=env.get("BENCH_FULL", "0") not in ("", "0"),
            threads=int(env.get("BENCH_THREADS", "2")),
            models=tuple(env["BENCH_MODELS"].split(",")) if env.get("BENCH_MODELS") else DEFAULT_MODELS,
            batches=ints("BENCH_BATCHES", (1, 8, 32)),
            layers=tuple(env["BENCH_LAYERS"].split(",")) if env.get("BENCH_LAYERS") else (LAST, MIDDLE),
            input_size=int(env.get("BENCH_INPUT_SIZE", "224")),
            round_seconds=float(env.get("BENCH_ROUND_SECONDS", "3")),
            min_rounds=int(env.get("BENCH_MIN_ROUNDS", "3")),
            max_rounds=int(env.get("BENCH_MAX_ROUNDS", "30")),
            pause_s=float(env.get("BENCH_PAUSE_S", "0.3")),
            warmup=env.get("BENCH_WARMUP", "1") not in ("", "0"),
            cache=Path(env.get("BENCH_CACHE", ".benchmarks/models")),
        )


def _method_rows(model: str, batch: int, layer: str, method: str, device: str, peers: tuple[str, ...] = PEERS) -> list[Row]:
    """The peers' rows first, then onnxcam's (numpy, and fused for Grad-CAM at the last layer), so
    that onnxcam's rows can compare their maps with pytorch-grad-cam's (:func:`map_references`)."""
    implementations = [peer for peer in peers if method in PEER_CLASSES[peer]] + [ONNXCAM]
    if method == "gradcam" and layer == LAST:
        implementations.append(ONNXCAM_FUSED)
    return [Row(model, batch, layer, implementation, method, device) for implementation in implementations]


def _all_rows(model: str, batch: int, device: str) -> list[Row]:
    rows = [Row(model, batch, LAST, FLOOR, FORWARD, device)]
    for layer in (LAST, MIDDLE):
        for method in ONNXCAM_METHODS:
            rows += _method_rows(model, batch, layer, method, device)
        rows.append(Row(model, batch, layer, ONNXCAM_INT8, "gradcam", device))
    return rows


def _default_rows(model: str, batch: int, device: str) -> list[Row]:
    """About 15 minutes on 2 idle cores, exports included (``python -m benchmarks.estimate``).

    resnet50: every goal row of issue 8 -- the floor and Grad-CAM of onnxcam (numpy, fused) and of
    every peer at layer4, batch 1, 8 and 32; at batch 1 also CAM, Grad-CAM at layer3, Grad-CAM++,
    XGrad-CAM and LayerCAM (with pytorch-grad-cam and torchcam), Ablation-CAM and Score-CAM (with
    pytorch-grad-cam, whose calls run a minute and more), and int8 Grad-CAM. Other models, batch
    1 and 8: the floor, onnxcam's Grad-CAM (numpy, fused) and captum's (with torchcam the fastest
    peer; pytorch-grad-cam's Grad-CAM is timed on resnet50).
    CUDA rows (resnet50) are listed everywhere and skipped without a GPU.
    """
    floor = [Row(model, batch, LAST, FLOOR, FORWARD, device)]
    headline = model == HEADLINE_MODEL
    if batch == 32 and not headline:
        return []
    if device == "cuda":
        return floor + _method_rows(model, batch, LAST, "gradcam", device) if headline else []
    if not headline:
        return floor + _method_rows(model, batch, LAST, "gradcam", device, (CAPTUM,))
    rows = floor + _method_rows(model, batch, LAST, "gradcam", device)
    if batch != 1:  # int8 against captum at batch 8 and 32, where fp32 cannot be 1.5x ahead
        return rows + [Row(model, batch, LAST, ONNXCAM_INT8, "gradcam", device)]
    rows += _method_rows(model, batch, LAST, "cam", device)
    rows += _method_rows(model, batch, MIDDLE, "gradcam", device)
    for method in ("gradcam++", "xgradcam", "layercam"):
        rows += _method_rows(model, batch, LAST, method, device, (PYTORCH_GRAD_CAM, TORCHCAM))
    for method in ("ablationcam", "scorecam"):
        rows += _method_rows(model, batch, LAST, method, device, (PYTORCH_GRAD_CAM,))
    return rows + [Row(model, batch, LAST, ONNXCAM_INT8, "gradcam", device)]


def map_references(row: Row) -> dict[str, Row]:
    """The earlier rows whose maps (same batch) this row's are compared with, by the name of the
    bench.csv columns ``cosine_to_<name>`` / ``max_abs_diff_to_<name>``: int8 against onnxcam's
    fp32 maps, onnxcam against pytorch-grad-cam's ("same maps")."""
    if row.implementation == ONNXCAM_INT8:
        return {"fp32": replace(row, implementation=ONNXCAM)}
    if row.implementation in (ONNXCAM, ONNXCAM_FUSED) and row.method in PEER_CLASSES[PYTORCH_GRAD_CAM]:
        return {"pytorch_grad_cam": replace(row, implementation=PYTORCH_GRAD_CAM)}
    return {}


def plan(config: BenchConfig) -> list[Row]:
    """The rows of a run, in order; CUDA rows are listed everywhere and skipped without a GPU."""
    rows: list[Row] = []
    for model in config.models:
        for device in ("cpu", "cuda"):
            for batch in config.batches:
                rows += (_all_rows if config.full else _default_rows)(model, batch, device)
    return [row for row in rows if row.layer in config.layers or row.implementation == FLOOR]
