"""``onnxcam web`` (``make web``): the on-device page of ``edge/web/``, served locally.

The page runs a fused, int8 CAM-ready EfficientNet-Lite0 in onnxruntime-web and draws relu and abs
Grad-CAM over a photo the person chooses or drops; nothing but static files is served. This module
builds that model, lays out the folder the page reads (``index.html``, its scripts, ``model/`` and
onnxruntime-web's ``ort/``) and serves it with the headers that give WebAssembly its threads.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from onnxcam.atomic_write import write_text_atomically
from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS, TOP1_CLASS, heatmap_name

EDGE = Path(__file__).resolve().parents[1] / "edge"
PAGE = EDGE / "web"
ORT_DIST = EDGE / "node_modules" / "onnxruntime-web" / "dist"
ARCH = "efficientnet_lite0"
WEIGHTINGS = ("relu", "abs")


def build_web_model(folder: Path) -> Path:
    """Export EfficientNet-Lite0 with Grad-CAM relu and abs fused into the graph, then quantize it
    to static int8 (backward in float) on scikit-image's calibration photos: ``folder/model.int8.onnx``."""
    import torch

    from onnxcam.eval.datasets.demo_photos import calibration_photos
    from onnxcam.export import export_cam_model
    from onnxcam.export.quantize import quantize_cam_model
    from onnxcam.export.zoo import build_model, zoo_entry

    entry = zoo_entry(ARCH)
    fp32 = export_cam_model(
        build_model(ARCH),
        torch.zeros(1, 3, *entry.preprocessing.input_size),
        [entry.last_layer],
        folder / "model.fp32.onnx",
        preprocessing=entry.preprocessing,
        class_labels=entry.class_labels,
        arch=ARCH,
        fused=[("gradcam", weighting) for weighting in WEIGHTINGS],
    )
    return quantize_cam_model(fp32, calibration_photos(), folder / "model.int8.onnx")


def page_model_info(model_path: Path) -> dict:
    """What the page needs to know of a CAM-ready model (the JSON beside it): tensor names,
    preprocessing and class labels. Raises ValueError if it lacks a fused relu or abs Grad-CAM."""
    from onnxcam.runtime import CamSession

    session = CamSession(model_path, providers="cpu")
    metadata = session.metadata
    names = {weighting: heatmap_name("gradcam", weighting) for weighting in WEIGHTINGS}
    outputs = {output.name for output in session.session.get_outputs()}
    missing = sorted(name for name in names.values() if name not in outputs)
    if missing:
        raise ValueError(
            f"{model_path} lacks the fused outputs {', '.join(missing)}: export it with "
            "--fused gradcam:relu,gradcam:abs"
        )
    prep = metadata.preprocessing
    return {
        "input": INPUT,
        "class_index": CLASS_INDEX,
        "top1_class": TOP1_CLASS,
        "logits": LOGITS,
        "heatmaps": names,
        "input_size": list(prep.input_size),
        "mean": list(prep.mean),
        "std": list(prep.std),
        "channel_order": prep.channel_order,
        "class_labels": list(metadata.class_labels) if metadata.class_labels else None,
    }


def write_web_folder(model_path: Path, out: Path, ort_dist: Path = ORT_DIST) -> Path:
    """Lay out ``out`` for the page: its files, ``model/model.onnx`` with ``model/model.json``, and
    ``ort/`` (a link to onnxruntime-web's ``dist``). Returns ``out``."""
    if not (ort_dist / "ort.all.min.mjs").is_file():
        raise FileNotFoundError(
            f"onnxruntime-web is not installed at {ort_dist}: run `make edge-install` (needs node and npm)"
        )
    out.mkdir(parents=True, exist_ok=True)
    for page_file in PAGE.iterdir():
        shutil.copyfile(page_file, out / page_file.name)
    (out / "model").mkdir(exist_ok=True)
    if model_path.resolve() != (out / "model" / "model.onnx").resolve():
        shutil.copyfile(model_path, out / "model" / "model.onnx")
    write_text_atomically(out / "model" / "model.json", json.dumps(page_model_info(model_path)) + "\n")
    link = out / "ort"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(ort_dist.resolve(), target_is_directory=True)
    return out


class _IsolatedHandler(SimpleHTTPRequestHandler):
    """Static files with the headers that make the page cross-origin isolated (WebAssembly
    threads need SharedArrayBuffer), and the MIME type of ``.mjs`` and ``.wasm``."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve_folder(folder: Path, port: int = 0) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (``port`` 0: any free one) in a thread; yields the page's URL."""
    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_IsolatedHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


def run_web(args: argparse.Namespace) -> int:
    out = Path(args.out)
    model = Path(args.model) if args.model else out / "model" / "model.onnx"
    if not model.is_file():
        print(f"building {model} (export, fuse Grad-CAM relu and abs, quantize to int8)...")
        built = build_web_model(out / "build")
        model.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, model)
    write_web_folder(model, out)
    if args.no_serve:
        print(f"wrote {out}: serve it over http (WebAssembly cannot load from file://)")
        return 0
    with serve_folder(out, args.port) as url:
        print(f"serving {out} at {url} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    web = subparsers.add_parser(
        "web",
        help="serve the on-device page: Grad-CAM relu/abs in the browser with onnxruntime-web",
        description="Build (once) a fused int8 CAM-ready EfficientNet-Lite0 and serve edge/web/ locally: a page "
        "that explains a chosen or dropped photo in the browser, with no server beyond static files.",
    )
    web.add_argument("--out", default="reports/web", help="the folder to lay out and serve (default: reports/web)")
    web.add_argument("--model", help="a CAM-ready model with fused gradcam relu and abs (default: build one)")
    web.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    web.add_argument("--no-serve", action="store_true", help="only lay out the folder")
    web.set_defaults(func=run_web)
