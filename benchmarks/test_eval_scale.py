"""The evaluation at scale (issue 15): memory of the streaming evaluation, cost per image of every
method, and the Ray engine's overhead. Not part of ``make test``; run it alone:

    pytest benchmarks/test_eval_scale.py -s -p no:cacheprovider

- ``driver_rss``: peak RSS of an evaluation's driver (its own process, no worker processes) on an
  on-disk WSOL set of 1,000 and of ``EVAL_SCALE_IMAGES`` (default 20,000) images, Grad-CAM cut to
  its first chunk by its budget (the model pass still reads every image). Goal: the large set
  within 1.2x of the small one.
- ``worker_rss``: peak RSS of a fresh process that runs one pickled (method, chunk) task of 25, 100
  and 400 images: it grows with the chunk, and the task holds no more of the set than its chunk.
- ``cost``: seconds per image on one core (a one-thread session, as every worker has) of each
  method with its three weightings, explained and scored, plus the model pass; on the synthetic
  models (96 px) and EfficientNet-Lite0 at 224 px. docs/evaluation_at_scale.md projects them.
- ``ray_overhead``: the same run (``EVAL_SCALE_RAY_IMAGES`` synthetic images, default 2,000; four
  methods) on the local engine and on a Ray instance of as many CPUs, alternated twice; goal: Ray
  at most 10% slower. Ray starts under a temporary HOME and its own temporary folder.

Every result is also written to ``reports/bench/eval_scale.json`` (``EVAL_SCALE_OUT``).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from onnxcam.atomic_write import write_text_atomically
from onnxcam.eval.chunks import ChunkTruth
from onnxcam.eval.engine import ChunkTask, LocalEngine, chunk_session, run_chunk
from onnxcam.eval.run import EVAL_WEIGHTINGS, EvaluationRun

IMAGES = int(os.environ.get("EVAL_SCALE_IMAGES", "20000"))
RAY_IMAGES = int(os.environ.get("EVAL_SCALE_RAY_IMAGES", "2000"))
OUT = Path(os.environ.get("EVAL_SCALE_OUT", "reports/bench/eval_scale.json"))
RAY_METHODS = ["gradcam", "gradcam++", "xgradcam", "layercam"]
HEAVY = {"scorecam": 1, "ablationcam": 2, "occlusion": 2}
"""Images timed for the methods that run the model hundreds of times per image (others: ``n``)."""

_results: dict[str, object] = {}


def record(key: str, value: object) -> None:
    _results[key] = value
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(OUT, json.dumps(_results, indent=1) + "\n")
    print(f"\n{key}: {json.dumps(value)}")


# ---- models and sets ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Models and written sets; ``EVAL_SCALE_DIR`` keeps them for the next run (writing 20,000
    images takes minutes)."""
    if "EVAL_SCALE_DIR" in os.environ:
        path = Path(os.environ["EVAL_SCALE_DIR"])
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("eval_scale")


def export_synthetic(folder: Path, arch: str) -> Path:
    from onnxcam.export.synthetic_models import export_synthetic_model

    checkpoint = Path("models/synthetic") / f"{arch}.pt"
    return export_synthetic_model(checkpoint, folder / f"{arch}.onnx", ["plain", "guided", "deconvnet"])


@pytest.fixture(scope="module")
def synthetic_resnet(folder) -> Path:
    return export_synthetic(folder, "synthetic_resnet")


def wsol_set(folder: Path, n: int, originals: int = 1000) -> Path:
    """A WSOL-eval folder of ``n`` images: ``originals`` synthetic PNGs, then hard links to them
    under other ids (every id its own file, as a real set; only the pixels repeat)."""
    from onnxcam.eval.datasets import read_wsol_metadata
    from onnxcam.eval.datasets.synthetic import make_synthetic_dataset
    from onnxcam.eval.datasets.wsol_metadata import WSOLMetadata, write_wsol_metadata
    from onnxcam.eval.datasets.writers import write_dataset

    base = folder / f"wsol_{originals}"
    if not (base / "metadata" / "boxes").is_dir():
        write_dataset(make_synthetic_dataset(originals, 7, 96, 12).objects(), base, "wsol", "png")
    if n <= originals:
        return base
    source = read_wsol_metadata(base / "metadata" / "boxes")
    target = folder / f"wsol_{n}"
    ids = []
    for k in range(n):
        original = source.image_ids[k % originals]
        image_id = original if k < originals else f"copy{k // originals}/{Path(original).name}"
        if not (target / image_id).exists():
            (target / image_id).parent.mkdir(parents=True, exist_ok=True)
            os.link(base / original, target / image_id)
        ids.append(image_id)
    copies = {image_id: source.image_ids[k % originals] for k, image_id in enumerate(ids)}
    write_wsol_metadata(
        WSOLMetadata(
            image_ids=ids,
            class_labels={i: source.class_labels[o] for i, o in copies.items()},
            image_sizes={i: source.image_sizes[o] for i, o in copies.items()},
            boxes={i: source.boxes[o] for i, o in copies.items()},
        ),
        target / "metadata" / "boxes",
    )
    return target


# ---- memory -------------------------------------------------------------------------------------

PEAK_RSS = """
def peak_rss_kb():  # VmHWM: ru_maxrss would carry the parent's peak over fork and exec
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
"""
DRIVER = PEAK_RSS + """
import sys
from onnxcam.eval.datasets.eval_sets import wsol_eval_set
from onnxcam.eval.run import EvaluationRun
model, folder, out = sys.argv[1:]
data = wsol_eval_set(folder + "/metadata/boxes", folder)
EvaluationRun(model, data, out, methods=["gradcam"], method_budget_s=0.001, workers=0, progress=False).run()
print("PEAK_RSS_KB", peak_rss_kb())
"""


def driver_peak_rss_mb(model: Path, data: Path, out: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall seconds of a driver process that reads the set and runs it: the
    model pass over every image, Grad-CAM cut to one chunk by its budget, no worker processes."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", DRIVER, str(model), str(data), str(out)], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    line = next(line for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
    return int(line.split()[1]) / 1024, seconds


def test_driver_rss_does_not_grow_with_the_set(synthetic_resnet, folder):
    small, large = wsol_set(folder, 1000), wsol_set(folder, IMAGES)
    for run in ("driver_small", "driver_large"):
        shutil.rmtree(folder / run, ignore_errors=True)  # a run left from before would only resume
    small_mb, small_s = driver_peak_rss_mb(synthetic_resnet, small, folder / "driver_small")
    large_mb, large_s = driver_peak_rss_mb(synthetic_resnet, large, folder / "driver_large")
    record("driver_rss", {
        "images": [1000, IMAGES], "peak_rss_mb": [round(small_mb, 1), round(large_mb, 1)],
        "ratio": round(large_mb / small_mb, 3), "goal": 1.2, "seconds": [round(small_s, 1), round(large_s, 1)],
    })
    assert large_mb / small_mb <= 1.2


WORKER = PEAK_RSS + """
import pickle, sys
from onnxcam.eval.engine import run_chunk
task = pickle.load(open(sys.argv[1], "rb"))
run_chunk(task, 1)
print("PEAK_RSS_KB", peak_rss_kb())
"""


def chunk_task(model: Path, data, method: str, indices, out: Path) -> ChunkTask:
    """The task an evaluation would hand a worker for these images of ``data`` (classes: their labels)."""
    from onnxcam.runtime import METHODS

    labels = np.array([data.accepted(i)[0] for i in indices], dtype=np.int64)
    session = chunk_session(str(model), 1)
    return ChunkTask(
        model_path=str(model), method=method, layer=session.layers[0],
        weightings=tuple(w for w in EVAL_WEIGHTINGS if w in METHODS[method].weightings),
        images=data.images.subset(indices), labels=labels,
        truth=ChunkTruth(
            gt_boxes=[data.class_boxes(i, int(c)) for i, c in zip(indices, labels)],
            sizes=[data.size(i) for i in indices],
            masks=None if data.masks is None else data.masks.subset(indices),
        ),
        path=out, start=int(indices[0]), step=0.01,
    )


@pytest.mark.parametrize("method", ["gradcam", "saliency"])
def test_worker_rss_follows_the_chunk_not_the_set(synthetic_resnet, folder, method):
    from onnxcam.eval.datasets.eval_sets import wsol_eval_set

    data_folder = wsol_set(folder, IMAGES)
    data = wsol_eval_set(data_folder / "metadata" / "boxes", data_folder)
    rows = {}
    for size in (25, 100, 400):
        for start in (0, len(data) - size):  # the set's first and last chunk
            task = chunk_task(synthetic_resnet, data, method, list(range(start, start + size)), folder / f"w_{method}_{size}_{start}.npz")
            pickled = folder / "task.pkl"
            pickled.write_bytes(pickle.dumps(task))
            done = subprocess.run([sys.executable, "-c", WORKER, str(pickled)], check=True, capture_output=True, text=True)
            line = next(line for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
            rows[f"{size}@{start}"] = {"peak_rss_mb": round(int(line.split()[1]) / 1024, 1), "task_kb": round(len(pickle.dumps(task)) / 1024, 1)}
    record(f"worker_rss_{method}", {"set_images": len(data), "chunks": rows})
    first, last = rows[f"100@0"], rows[f"100@{len(data) - 100}"]
    assert abs(first["peak_rss_mb"] - last["peak_rss_mb"]) / first["peak_rss_mb"] < 0.1


# ---- cost per image -----------------------------------------------------------------------------


def seconds_per_image(model: Path, data, method: str, n: int, out: Path) -> tuple[float, float]:
    """One core's seconds per image of ``method`` (three weightings, explained and scored), after a
    one-image warm-up that builds the session and the method's graph cut: wall time, and this
    process's CPU time (the one-thread session runs in this thread: on a shared machine, CPU time
    is the cost that other processes do not inflate)."""
    run_chunk(chunk_task(model, data, method, [0], out / f"warm_{method}.npz"), 1)
    task = chunk_task(model, data, method, list(range(1, 1 + n)), out / f"{method}.npz")
    cpu = time.process_time()
    wall = run_chunk(task, 1)
    return wall, (time.process_time() - cpu) / n


def model_pass_seconds_per_image(model: Path, data, n: int) -> float:
    """The run's model pass (prediction, then the layer outputs of the weight-sign diagnostic), one thread."""
    from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS, TOP1_CLASS
    from onnxcam.eval.weight_signs import channel_weight_methods, negative_weight_fractions
    from onnxcam.runtime import METHODS

    session = chunk_session(str(model), 1)
    methods = channel_weight_methods(list(METHODS))
    images = [data.images[i] for i in range(n)]
    began = time.perf_counter()
    batch, _ = session.prepare(images)
    logits = session.run([LOGITS], {INPUT: batch, CLASS_INDEX: np.full(n, TOP1_CLASS, dtype=np.int64)})[0]
    negative_weight_fractions(session, batch, logits.argmax(axis=1), session.layers[0], methods)
    return (time.perf_counter() - began) / n


def efficientnet_lite0(folder: Path) -> Path:
    path = folder / "efficientnet_lite0.onnx"
    if not path.exists():
        subprocess.run(
            [sys.executable, "-m", "onnxcam", "export", "--arch", "efficientnet_lite0", "--out", str(path),
             "--input-gradients", "plain,guided,deconvnet"],
            check=True, capture_output=True,
        )
    return path


@pytest.mark.parametrize("arch", ["synthetic_resnet", "synthetic_vgg", "efficientnet_lite0"])
def test_cost_per_image_of_every_method(folder, arch):
    from onnxcam.eval.evalset import synthetic_eval_set
    from onnxcam.runtime import METHODS

    if arch == "efficientnet_lite0":
        model, size, n = efficientnet_lite0(folder), 224, 4
    else:
        model, size, n = export_synthetic(folder, arch), 96, 20
    data = synthetic_eval_set(1 + n, size, 12)
    out = folder / f"cost_{arch}"
    cpu = time.process_time()
    rows = {"model_pass": [round(model_pass_seconds_per_image(model, data, n), 5), round((time.process_time() - cpu) / n, 5)]}
    for method in METHODS:
        try:
            wall, cpu = seconds_per_image(model, data, method, min(n, HEAVY.get(method, n)), out)
            rows[method] = [round(wall, 5), round(cpu, 5)]
        except ValueError as exc:  # a method the model cannot do (CAM without a GAP + linear head)
            rows[method] = str(exc).split(";")[0]
    record(f"cost_{arch}", {
        "input_px": size, "seconds_per_image_per_core_wall_cpu": rows, "load_average": os.getloadavg()[0],
    })


# ---- Ray's overhead -----------------------------------------------------------------------------


def timed_run(model: Path, data, out: Path, make_engine) -> float:
    """Wall seconds of a whole run, the engine's start and stop included."""
    began = time.perf_counter()
    engine = make_engine()
    try:
        EvaluationRun(model, data, out, methods=RAY_METHODS, chunk_size=100, engine=engine, progress=False).run()
    finally:
        engine.close()
    return time.perf_counter() - began


def test_ray_overhead_against_the_local_engine(synthetic_resnet, folder, monkeypatch):
    pytest.importorskip("ray")
    from onnxcam.eval.engine_ray import RayEngine
    from onnxcam.eval.evalset import synthetic_eval_set

    monkeypatch.setenv("HOME", str(folder / "home"))
    monkeypatch.setenv("RAY_TMPDIR", tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    cores = os.cpu_count() or 1
    data = synthetic_eval_set(RAY_IMAGES, 96, 12)
    times: dict[str, list[float]] = {"local": [], "ray": []}
    for round_ in range(2):
        times["local"].append(timed_run(synthetic_resnet, data, folder / f"local{round_}", lambda: LocalEngine(cores)))
        times["ray"].append(timed_run(synthetic_resnet, data, folder / f"ray{round_}", lambda: RayEngine(workers=cores)))
    ratio = min(times["ray"]) / min(times["local"])
    record("ray_overhead", {
        "images": RAY_IMAGES, "methods": RAY_METHODS, "cores": cores, "seconds": times,
        "ratio_best_of_2": round(ratio, 3), "goal": 1.10, "load_average": os.getloadavg()[0],
    })
