"""OpenVINO XAI's white-box ReciproCAM and the OpenVINO forward floor, run inside OpenVINO XAI's
own virtual environment (it pins openvino 2024.4 and numpy<2: ``make openvino-xai-venv``).

Standalone on purpose: it imports numpy, openvino and openvino_xai only, never onnxcam.

    python benchmarks/openvino_xai_worker.py --model plain.onnx --batch batch.npy --classes 3,7 \
        --threads 2 --rounds 10 --out result.npz

reads a plain ``input`` -> ``logits`` ONNX classifier and a preprocessed float32 ``(N, C, H, W)``
batch, and writes ``maps`` ``(N, h, w)`` uint8 (OpenVINO XAI's map of each image's class, min-max
scaled to 0..255 in its graph), ``xai_ms`` (per round: the N images explained one call each, as
its in-graph branch takes batch 1) and ``floor_ms`` (per round: one OpenVINO forward of the
batch), rounds interleaved. Every compiled model runs in f32 (OpenVINO's CPU default is bf16
where the CPU has it) on ``--threads`` threads.

``--fused-model cam.onnx --fused-output heatmap/reciprocam/relu`` also runs onnxcam's CAM-ready
model with that fused output in OpenVINO, the whole batch in one call fed ``input`` and
``class_index`` (the same classes), and writes ``fused_maps`` ``(N, H, W)`` and ``fused_ms``
(per round, interleaved with the other two).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import openvino as ov
from openvino_xai.common.utils import SALIENCY_MAP_OUTPUT_NAME
from openvino_xai.methods import ReciproCAM


def compile_f32(core: ov.Core, model: ov.Model, threads: int) -> ov.CompiledModel:
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": str(threads)}
    return core.compile_model(model, "CPU", config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch", required=True)
    parser.add_argument("--classes", required=True, help="comma-separated class of each image")
    parser.add_argument("--target-layer", default=None, help="OpenVINO node name (default: its own choice)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds after one warm-up (0: maps only)")
    parser.add_argument("--fused-model", default=None, help="a CAM-ready ONNX model with a fused heatmap output")
    parser.add_argument("--fused-output", default="heatmap/reciprocam/relu", help="that output's name")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    core = ov.Core()
    batch = np.load(args.batch).astype(np.float32)
    classes = [int(c) for c in args.classes.split(",")]
    method = ReciproCAM(core.read_model(args.model), target_layer=args.target_layer, prepare_model=False)
    explainer = compile_f32(core, method.prepare_model(load_model=False), args.threads)
    floor = compile_f32(core, core.read_model(args.model), args.threads)

    def explain() -> np.ndarray:
        return np.stack(
            [explainer(batch[i : i + 1])[SALIENCY_MAP_OUTPUT_NAME][0, c] for i, c in enumerate(classes)]
        )

    runners = {"floor_ms": lambda: floor(batch), "xai_ms": explain}
    saved = {"maps": explain()}
    if args.fused_model:
        fused = compile_f32(core, core.read_model(args.fused_model), args.threads)
        feeds = {"input": batch, "class_index": np.array(classes, dtype=np.int64)}
        runners["fused_ms"] = lambda: fused(feeds)[args.fused_output]
        saved["fused_maps"] = np.array(runners["fused_ms"]())
    floor(batch)
    times = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner()
            times[name].append((time.perf_counter() - started) * 1e3)
    np.savez(args.out, **saved, **{name: np.array(ms) for name, ms in times.items()}, version=ov.__version__)


if __name__ == "__main__":
    main()
