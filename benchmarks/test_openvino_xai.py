"""OpenVINO XAI (PyPI ``openvino-xai``) as a peer: its white-box ReciproCAM against onnxcam's, on the
same plain ONNX model and the same preprocessed photos.

OpenVINO XAI pins openvino 2024.4 and numpy<2, so it runs in a virtual environment of its own
(``make openvino-xai-venv``; ``OPENVINO_XAI_PYTHON`` names another interpreter) through
``benchmarks/openvino_xai_worker.py``. Two kinds of test:

- the parity test (``make edge-test`` and ``make bench``): on a small CNN, onnxcam's
  ``ReciproCAM(score="logit")`` map (OpenVINO XAI scores with logits when the model has no
  softmax), min-max normalised at the layer's resolution, times 255, is OpenVINO XAI's uint8 map
  plus its truncation: ``0 <= ours * 255 - theirs < 1``; and onnxcam's fused ReciproCAM
  (``heatmap/reciprocam/relu``) gives the same maps in OpenVINO as in ONNX Runtime;
- the rows (``make bench``): per model and batch 1 and 8, onnxcam's ReciproCAM and the ONNX
  Runtime floor (interleaved), OpenVINO XAI's ReciproCAM (a batch of N is N calls: its in-graph
  branch takes batch 1), the OpenVINO forward floor and onnxcam's fused ReciproCAM run by OpenVINO
  (the whole batch per call; all three interleaved, in the worker), same threads;
  written to ``reports/bench/openvino_xai.{json,md}`` with the maps' agreement and the goals:
  onnxcam within 1.3x of its floor, and faster than OpenVINO XAI at batch 8.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from onnxcam.atomic_write import write_text_atomically
from onnxcam.contract import heatmap_name
from onnxcam.runtime import CamSession
from onnxcam.runtime.methods import ReciproCAM
from onnxcam.runtime.normalization import minmax_normalize
from onnxcam.runtime.resize import resize_maps

from benchmarks.implementations import make_runner, session_options
from benchmarks.measure import input_batch, map_agreement
from benchmarks.plan import FLOOR, FORWARD, LAST, ONNXCAM, Row
from helpers.edge_models import fused_copy  # tests/ is on the pytest pythonpath

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("openvino_xai_worker.py")
VENV_PYTHON = ROOT / ".venv-openvino-xai" / "bin" / "python"
REPORT = Path("reports/bench")
MODELS = tuple(os.environ.get("BENCH_OPENVINO_XAI_MODELS", "resnet50").split(","))
BATCHES = (1, 8)
ROUNDS = int(os.environ.get("BENCH_OPENVINO_XAI_ROUNDS", "10"))
FLOOR_GOAL, BATCH8_GOAL = 1.3, 1.0
FUSED = ("reciprocam", "relu")
FUSED_OUTPUT = heatmap_name(*FUSED)
OPENVINO_TO_ORT_TOLERANCE = 1e-4
_rows: list[dict] = []


def openvino_xai_python() -> Path:
    python = Path(os.environ.get("OPENVINO_XAI_PYTHON", VENV_PYTHON))
    if not python.exists():
        pytest.skip(f"OpenVINO XAI's virtual environment is missing ({python}): run `make openvino-xai-venv`")
    return python


def run_worker(
    plain: Path, batch: np.ndarray, classes: np.ndarray, threads: int, rounds: int, folder: Path, fused: Path | None = None
) -> dict:
    """OpenVINO XAI's uint8 maps (N, h, w) and, with ``rounds``, its and OpenVINO's timings (ms);
    with ``fused`` (a CAM-ready model with :data:`FUSED_OUTPUT`), that output run by OpenVINO:
    ``fused_maps`` (N, H, W) and ``fused_ms``."""
    np.save(folder / "batch.npy", batch)
    out = folder / "openvino_xai.npz"
    command = [
        str(openvino_xai_python()), str(WORKER), "--model", str(plain), "--batch", str(folder / "batch.npy"),
        "--classes", ",".join(str(int(c)) for c in classes), "--threads", str(threads),
        "--rounds", str(rounds), "--out", str(out),
    ]
    if fused is not None:
        command += ["--fused-model", str(fused), "--fused-output", FUSED_OUTPUT]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-3000:]}"
    with np.load(out) as result:
        return {name: result[name] for name in result.files}


def normalised_at_layer(session: CamSession, batch: np.ndarray, classes: np.ndarray, layer: str) -> np.ndarray:
    """onnxcam's ReciproCAM scored as OpenVINO XAI scores a model without softmax, (N, h, w) in [0, 1]."""
    result = session.explain(batch, ReciproCAM(score="logit"), "none", class_index=classes, layer=layer)
    return minmax_normalize(result.raw_maps)


def test_parity_with_openvino_xai(tmp_path):
    torch = pytest.importorskip("torch")
    from helpers.method_models import INPUT_SIZE, SmallGapNet, export_small  # tests/ is on the pythonpath

    from benchmarks.models import export_forward_model

    openvino_xai_python()
    torch.manual_seed(5)
    model = SmallGapNet().eval()
    with torch.no_grad():  # probabilities far from uniform: maps above float32's rounding of them
        model.fc.weight.mul_(30)
    cam_path = export_small(model, tmp_path, "gap", fused=[FUSED])
    plain = export_forward_model(model, torch.zeros(1, 3, *INPUT_SIZE), tmp_path / "plain.onnx")
    batch = np.random.default_rng(0).standard_normal((3, 3, *INPUT_SIZE)).astype(np.float32)
    classes = np.array([0, 3, 5])
    peer = run_worker(plain, batch, classes, threads=1, rounds=0, folder=tmp_path, fused=cam_path)
    theirs = peer["maps"]
    session = CamSession(cam_path, providers="cpu")
    ours = normalised_at_layer(session, batch, classes, "features")
    assert theirs.dtype == np.uint8 and theirs.shape == ours.shape == (3, 12, 12)
    gap = ours.astype(np.float64) * 255 - theirs
    assert gap.min() >= -1e-3 and gap.max() < 1 + 1e-3, (gap.min(), gap.max())
    on_ort = session.explain(batch, "reciprocam", class_index=classes).maps
    assert peer["fused_maps"].shape == on_ort.shape == (3, *INPUT_SIZE)
    assert np.abs(peer["fused_maps"] - on_ort).max() <= OPENVINO_TO_ORT_TOLERANCE


def interleaved_ms(first, second, batch: np.ndarray, rounds: int) -> tuple[list[float], list[float]]:
    """Per-call milliseconds of ``first(batch)`` and ``second(batch)``, alternating, after a warm-up."""
    first(batch), second(batch)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for runner, record in zip((first, second), times):
            started = time.perf_counter()
            runner(batch)
            record.append((time.perf_counter() - started) * 1e3)
    return times


@pytest.mark.parametrize("arch", MODELS)
@pytest.mark.parametrize("batch_size", BATCHES)
def test_openvino_xai_rows(arch, batch_size, bench_config, bench_model, tmp_path):
    openvino_xai_python()
    model = bench_model(arch)
    layer = model.layers[LAST]
    batch = input_batch(batch_size, model.preprocessing)
    threads = bench_config.threads
    floor = make_runner(Row(arch, batch_size, LAST, FLOOR, FORWARD), model, threads)
    onnxcam = make_runner(Row(arch, batch_size, LAST, ONNXCAM, "reciprocam"), model, threads)
    time.sleep(bench_config.pause_s)
    floor_ms, onnxcam_ms = interleaved_ms(floor, onnxcam, batch, ROUNDS)
    session = CamSession(model.cam_path(LAST), session_options=session_options(threads))
    classes = session.explain(batch, "reciprocam", layer=layer).class_index
    ours = normalised_at_layer(session, batch, classes, layer)
    fused = fused_copy(model.cam_path(LAST), tmp_path / "cam-fused-reciprocam.onnx", [FUSED])
    on_ort = CamSession(fused, session_options=session_options(threads)).explain(batch, "reciprocam", class_index=classes).maps
    time.sleep(bench_config.pause_s)
    peer = run_worker(model.forward_path, batch, classes, threads, ROUNDS, tmp_path, fused=fused)
    theirs = peer["maps"].astype(np.float32) / 255
    agreement = map_agreement(ours, theirs) if theirs.shape == ours.shape else {"shape": str(theirs.shape)}
    # Theirs at the input's size, as the fused maps are (which score probabilities, theirs logits).
    fused_agreement = map_agreement(peer["fused_maps"], minmax_normalize(resize_maps(theirs, batch.shape[2:])))
    row = {
        "model": arch, "batch": batch_size, "layer": layer, "threads": threads, "rounds": ROUNDS,
        "openvino": str(peer["version"]),
        "onnxruntime_floor_ms": statistics.median(floor_ms),
        "onnxcam_reciprocam_ms": statistics.median(onnxcam_ms),
        "openvino_floor_ms": float(np.median(peer["floor_ms"])),
        "openvino_xai_reciprocam_ms": float(np.median(peer["xai_ms"])),
        "onnxcam_reciprocam_openvino_ms": float(np.median(peer["fused_ms"])),
        "onnxcam_openvino_max_abs_to_ort": float(np.abs(peer["fused_maps"] - on_ort).max()),
        "load_1min": os.getloadavg()[0],
        **{f"{name}_to_openvino_xai": value for name, value in agreement.items()},
        **{f"onnxcam_openvino_{name}_to_openvino_xai": value for name, value in fused_agreement.items()},
    }
    row["onnxcam_ratio_to_floor"] = row["onnxcam_reciprocam_ms"] / row["onnxruntime_floor_ms"]
    row["openvino_xai_ratio_to_openvino_floor"] = row["openvino_xai_reciprocam_ms"] / row["openvino_floor_ms"]
    row["speedup_vs_openvino_xai"] = row["openvino_xai_reciprocam_ms"] / row["onnxcam_reciprocam_ms"]
    row["onnxcam_openvino_ratio_to_openvino_floor"] = row["onnxcam_reciprocam_openvino_ms"] / row["openvino_floor_ms"]
    row["onnxcam_openvino_speedup_vs_openvino_xai"] = row["openvino_xai_reciprocam_ms"] / row["onnxcam_reciprocam_openvino_ms"]
    _rows.append(row)
    write_report(_rows)


def write_report(rows: list[dict]) -> None:
    REPORT.mkdir(parents=True, exist_ok=True)
    write_text_atomically(REPORT / "openvino_xai.json", json.dumps(rows, indent=1))
    lines = [
        "| model | batch | ORT floor ms | onnxcam ReciproCAM ms (x floor, goal <= 1.3) | OpenVINO floor ms "
        "| OpenVINO XAI ReciproCAM ms (x its floor) | onnxcam speed-up (goal > 1 at batch 8) | cosine / max abs to OpenVINO XAI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        floor_goal = "met" if r["onnxcam_ratio_to_floor"] <= FLOOR_GOAL else "MISSED"
        speed = f"{r['speedup_vs_openvino_xai']:.2f}x"
        if r["batch"] == 8:
            speed += " met" if r["speedup_vs_openvino_xai"] > BATCH8_GOAL else " MISSED"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['onnxruntime_floor_ms']:.1f} | {r['onnxcam_reciprocam_ms']:.1f} "
            f"({r['onnxcam_ratio_to_floor']:.2f}x, {floor_goal}) | {r['openvino_floor_ms']:.1f} | "
            f"{r['openvino_xai_reciprocam_ms']:.1f} ({r['openvino_xai_ratio_to_openvino_floor']:.2f}x) | {speed} | "
            f"{r.get('cosine_to_openvino_xai', float('nan')):.4f} / {r.get('max_abs_diff_to_openvino_xai', float('nan')):.4f} |"
        )
    lines += [
        "",
        "| model | batch | OpenVINO floor ms | onnxcam ReciproCAM on OpenVINO ms (x its floor) "
        "| OpenVINO XAI ReciproCAM ms | onnxcam on OpenVINO speed-up | cosine / max abs to OpenVINO XAI | max abs to ORT |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['openvino_floor_ms']:.1f} | {r['onnxcam_reciprocam_openvino_ms']:.1f} "
            f"({r['onnxcam_openvino_ratio_to_openvino_floor']:.2f}x) | {r['openvino_xai_reciprocam_ms']:.1f} | "
            f"{r['onnxcam_openvino_speedup_vs_openvino_xai']:.2f}x | {r['onnxcam_openvino_cosine_to_openvino_xai']:.4f} / "
            f"{r['onnxcam_openvino_max_abs_diff_to_openvino_xai']:.4f} | {r['onnxcam_openvino_max_abs_to_ort']:.2g} |"
        )
    write_text_atomically(REPORT / "openvino_xai.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
