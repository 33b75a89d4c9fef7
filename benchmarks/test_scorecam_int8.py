"""Score-CAM against pytorch-grad-cam's at resnet50 layer4, batch 1, with the masked passes in fp32
and on the static-int8 copy (``CamSession(perturbation_model=...)``, from
``onnxcam.export.quantize.quantize_cam_model``).

Every call runs 2,048 masked forward passes (minutes on 2 cores), so each row is timed once, like
the main suite's Score-CAM rows. The fp32 row runs twice: with the forward session's worker threads
spinning (onnxcam's default, which Score-CAM's back-to-back passes keep) and not spinning (the
bench's setting for rows that alternate with the floor). Goal: >= 5x faster than pytorch-grad-cam;
the int8 row meets it only if its maps reach cosine >= 0.99 to the fp32 Score-CAM's. Written to
``reports/bench/scorecam_int8.{json,md}`` with the floor's per-image cost at batch 32 (spinning as
the row it is compared with). Not part of ``make bench``'s default plan (about 10 minutes):

    .venv/bin/python -m pytest benchmarks/test_scorecam_int8.py -q -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import onnxruntime as ort
import pytest

from onnxcam.atomic_write import write_text_atomically
from onnxcam.contract import INPUT, LOGITS
from onnxcam.runtime import CamSession
from onnxcam.runtime.session_options import default_session_options, without_spinning

from benchmarks.implementations import make_runner
from benchmarks.measure import input_batch, map_agreement
from benchmarks.plan import LAST, PYTORCH_GRAD_CAM, Row

ARCH = os.environ.get("BENCH_SCORECAM_MODEL", "resnet50")
SPEEDUP_GOAL, COSINE_GOAL = 5.0, 0.99
REPORT = "reports/bench"


def _options(threads: int, spinning: bool) -> ort.SessionOptions:
    options = default_session_options(threads)
    return options if spinning else without_spinning(options)


def _timed(call):
    started = time.perf_counter()
    out = call()
    return out, time.perf_counter() - started


def floor_ms_per_image(path, threads: int, spinning: bool, batch: np.ndarray) -> float:
    """The forward floor's median cost per image at the batch size of Score-CAM's passes (32)."""
    session = ort.InferenceSession(str(path), _options(threads, spinning), providers=["CPUExecutionProvider"])
    session.run([LOGITS], {INPUT: batch})
    times = [_timed(lambda: session.run([LOGITS], {INPUT: batch}))[1] for _ in range(5)]
    return float(np.median(times)) * 1e3 / len(batch)


def test_scorecam_int8_rows(bench_config, bench_model):
    model = bench_model(ARCH)
    layer = model.layers[LAST]
    batch = input_batch(1, model.preprocessing)
    threads = bench_config.threads
    int8 = model.int8_path()
    rows: dict[str, dict] = {}

    def onnxcam(name: str, spinning: bool, perturbation_model=None) -> np.ndarray:
        session = CamSession(
            model.cam_path(LAST), session_options=_options(threads, spinning), perturbation_model=perturbation_model
        )
        time.sleep(bench_config.pause_s)
        result, seconds = _timed(lambda: session.explain(batch, "scorecam", layer=layer))
        rows[name] = {"seconds": seconds, "spinning": spinning, "masked_passes": "int8" if perturbation_model else "fp32"}
        return result.maps

    peer = make_runner(Row(ARCH, 1, LAST, PYTORCH_GRAD_CAM, "scorecam"), model, threads)
    time.sleep(bench_config.pause_s)
    peer_maps, peer_s = _timed(lambda: peer(batch))
    rows["pytorch-grad-cam"] = {"seconds": peer_s}
    fp32 = onnxcam("onnxcam fp32 (spinning)", True)
    onnxcam("onnxcam fp32 (not spinning)", False)
    int8_maps = onnxcam("onnxcam int8 masked passes (spinning)", True, int8)
    floor_batch = input_batch(32, model.preprocessing)
    floors = {
        "fp32 spinning": floor_ms_per_image(model.forward_path, threads, True, floor_batch),
        "fp32 not spinning": floor_ms_per_image(model.forward_path, threads, False, floor_batch),
    }
    channels = CamSession(model.cam_path(LAST)).metadata.layer(layer).shape[0]  # one masked pass each
    for name, row in rows.items():
        row["speedup_vs_pytorch_grad_cam"] = peer_s / row["seconds"]
        row["ms_per_masked_image"] = row["seconds"] * 1e3 / channels
    rows["onnxcam fp32 (spinning)"].update(map_agreement(fp32, peer_maps))
    int8_row = rows["onnxcam int8 masked passes (spinning)"]
    int8_row.update({f"{k}_to_fp32": v for k, v in map_agreement(int8_maps, fp32).items()})
    int8_row["goal_met"] = int8_row["speedup_vs_pytorch_grad_cam"] >= SPEEDUP_GOAL and int8_row["cosine_to_fp32"] >= COSINE_GOAL
    report = {"model": ARCH, "layer": layer, "threads": threads, "load_1min": os.getloadavg()[0],
              "floor_ms_per_image_batch32": floors, "rows": rows}
    os.makedirs(REPORT, exist_ok=True)
    write_text_atomically(f"{REPORT}/scorecam_int8.json", json.dumps(report, indent=1))
    write_text_atomically(f"{REPORT}/scorecam_int8.md", markdown(report))
    assert fp32.shape == int8_maps.shape == (1, model.input_size, model.input_size)


def markdown(report: dict) -> str:
    """The rows as a table, goals marked (5x pytorch-grad-cam; int8 also cosine >= 0.99 to fp32)."""
    floors = ", ".join(f"{name} {ms:.1f} ms" for name, ms in report["floor_ms_per_image_batch32"].items())
    lines = [
        f"{report['model']} {report['layer']}, batch 1, {report['threads']} threads, load {report['load_1min']:.1f}; "
        f"the floor per image at batch 32: {floors}.",
        "",
        "| row | s | ms per masked image | speed-up vs pytorch-grad-cam (goal >= 5) | map cosine |",
        "|---|---|---|---|---|",
    ]
    for name, row in report["rows"].items():
        speedup = row["speedup_vs_pytorch_grad_cam"]
        met = "" if name == "pytorch-grad-cam" else (" met" if speedup >= SPEEDUP_GOAL else " MISSED")
        cosine = row.get("cosine_to_fp32", row.get("cosine"))
        cosine_text = "" if cosine is None else f"{cosine:.4f}" + (" to fp32" if "cosine_to_fp32" in row else " to pytorch-grad-cam")
        lines.append(f"| {name} | {row['seconds']:.1f} | {row['ms_per_masked_image']:.1f} | {speedup:.2f}x{met} | {cosine_text} |")
    return "\n".join(lines) + "\n"
