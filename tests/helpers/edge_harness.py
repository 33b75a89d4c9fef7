"""Running a model under the JavaScript runtimes of ``edge/`` (onnxruntime-node, onnxruntime-web)
from Python: write the inputs, call ``node edge/run_model.mjs``, read the outputs back."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EDGE_DIR = Path(__file__).resolve().parents[2] / "edge"
SCRIPT = EDGE_DIR / "run_model.mjs"
JS_RUNTIMES = ("node", "web")
PACKAGES = {"node": "onnxruntime-node", "web": "onnxruntime-web"}


def js_runtime_missing(runtime: str) -> str | None:
    """Why ``runtime`` cannot run here (for pytest.skip), or None when it can."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH: the onnxruntime-{runtime} edge tests need Node.js and npm"
    if not (EDGE_DIR / "node_modules" / PACKAGES[runtime] / "package.json").is_file():
        return f"{PACKAGES[runtime]} is not installed: run `make edge-test` (or `cd edge && npm install --ignore-scripts`)"
    return None


@dataclass(frozen=True)
class JsRun:
    outputs: dict[str, np.ndarray]
    version: str | None
    load_ms: float
    run_ms: float


def run_in_js(
    runtime: str,
    model: Path,
    feeds: Mapping[str, np.ndarray],
    output_names: Sequence[str],
    workdir: Path,
    timeout: float = 300,
) -> JsRun:
    """Run ``model`` on ``feeds`` (float32 or int64 arrays) with onnxruntime-``runtime``; return the
    named outputs as arrays."""
    workdir.mkdir(parents=True, exist_ok=True)
    inputs = []
    for i, (name, array) in enumerate(feeds.items()):
        array = np.ascontiguousarray(array)
        dtype = {np.dtype(np.float32): "float32", np.dtype(np.int64): "int64"}[array.dtype]
        file = f"input-{i}.bin"
        array.astype(array.dtype.newbyteorder("<"), copy=False).tofile(workdir / file)
        inputs.append({"name": name, "dtype": dtype, "shape": list(array.shape), "file": file})
    (workdir / "request.json").write_text(json.dumps({"inputs": inputs, "outputs": list(output_names)}))
    completed = subprocess.run(
        ["node", str(SCRIPT), "--runtime", runtime, "--model", str(model), "--io", str(workdir)],
        capture_output=True, text=True, timeout=timeout, cwd=EDGE_DIR,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"onnxruntime-{runtime} failed:\n{completed.stderr[-4000:]}")
    response = json.loads((workdir / f"response-{runtime}.json").read_text())
    dtypes = {"float32": np.float32, "int64": np.int64}
    outputs = {
        spec["name"]: np.fromfile(workdir / spec["file"], dtype=dtypes[spec["dtype"]]).reshape(spec["shape"])
        for spec in response["outputs"]
    }
    return JsRun(outputs, response.get("version"), float(response["load_ms"]), float(response["run_ms"]))


def openvino_missing() -> str | None:
    """Why OpenVINO cannot run here (for pytest.skip), or None when it can."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino is not installed (pip install -c constraints.txt openvino, or make install)"
    return None


def run_in_openvino(model: Path, feeds: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Run ``model`` with OpenVINO on CPU at float32 precision: its default there (bf16 where the
    CPU has it) wrecks gradients, so INFERENCE_PRECISION_HINT=f32 is part of deploying with it."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(model)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    results = compiled(dict(feeds))
    return {name: np.asarray(results[compiled.output(name)]) for name in output_names}
