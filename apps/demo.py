"""``onnxcam demo`` (``make demo``): a short lesson in class activation maps.

EfficientNet-Lite0 with its real ImageNet weights is exported CAM-ready (last and middle layer,
guided input gradients) and explains five photos that ship with scikit-image. The page shows, per
photo, the top-3 classes, six methods that differ, the papers' fixed-threshold box and the best
threshold's box against hand-labelled ground truth, and at the middle layer the signed map where the
``relu`` and ``abs`` weightings part. Writes ``index.html`` (with its pictures) and ``summary.md``.
"""

from __future__ import annotations

import argparse
import html
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxcam.apps.drawing import BEST_COLOUR, PREDICTED_COLOUR, TRUTH_COLOUR, draw_box
from onnxcam.atomic_write import write_text_atomically

ARCH = "efficientnet_lite0"
GALLERY = (
    ("gradcam", "Grad-CAM"),
    ("gradcam++", "Grad-CAM++"),
    ("scorecam", "Score-CAM"),
    ("layercam", "LayerCAM"),
    ("eigencam", "Eigen-CAM"),
    ("guided-gradcam", "Guided Grad-CAM"),
)
PIXEL_LEVEL = {"guided-gradcam"}
"""Methods whose maps are pixel-sparse: shown saturated at their 99th percentile so that they can be
seen (boxes and IoU still come from the map itself)."""
SCORE_CAM_PHOTOS = 1
"""Score-CAM runs one forward pass per channel (1,280 here): it is shown on the first photo only,
so that ``make demo`` stays under two minutes on two cores."""
BOX_THRESHOLD = 0.15  # of the map's maximum, the Grad-CAM paper's rule
TOP_K = 3
THUMBNAIL = 224


@dataclass(frozen=True)
class MapView:
    """One picture of the page: a method's map on a photo, with its boxes' IoU."""

    picture: str
    title: str
    fixed_iou: float | None
    best_iou: float | None = None
    best_threshold: float | None = None


@dataclass(frozen=True)
class PhotoResult:
    file: str
    top: list[tuple[str, float]]
    correct: bool
    gallery: list[MapView]
    weightings: list[MapView]


def export_demo_model(path: Path) -> Path:
    import torch

    from onnxcam.export import export_cam_model
    from onnxcam.export.zoo import build_model, zoo_entry

    entry = zoo_entry(ARCH)
    return export_cam_model(
        build_model(ARCH),
        torch.zeros(1, 3, *entry.preprocessing.input_size),
        [entry.last_layer, entry.middle_layer],
        path,
        preprocessing=entry.preprocessing,
        class_labels=entry.class_labels,
        arch=ARCH,
        input_gradients=["guided"],
    )


def _gallery_view(
    image: np.ndarray, heatmap: np.ndarray, truth: np.ndarray, path: Path, title: str, saturate: bool = False
) -> MapView:
    from onnxcam.eval import box_from_heatmap, box_iou
    from onnxcam.eval.localization import best_threshold_box
    from onnxcam.runtime.image_io import heatmap_overlay, write_png

    box = box_from_heatmap(heatmap, BOX_THRESHOLD)
    threshold, best_box, best_iou = best_threshold_box(heatmap, truth)
    shown = np.clip(heatmap / max(float(np.quantile(heatmap, 0.99)), 1e-6), 0, 1) if saturate else heatmap
    picture = heatmap_overlay(image, shown)
    for truth_box in truth:
        picture = draw_box(picture, truth_box, TRUTH_COLOUR)
    picture = draw_box(draw_box(picture, best_box, BEST_COLOUR), box, PREDICTED_COLOUR)
    write_png(path, picture)
    fixed_iou = float(box_iou(box[None], truth).max())
    return MapView(path.name, title, fixed_iou, best_iou, threshold)


def _weighting_views(session, image: np.ndarray, layer: str, class_index: int, out: Path, stem: str) -> list[MapView]:
    """relu, abs and the signed map they come from, at ``layer`` (Grad-CAM)."""
    from onnxcam.runtime.image_io import heatmap_overlay, signed_colormap, write_png
    from onnxcam.runtime.resize import resize_maps

    results = session.explain_weightings([image], "gradcam", ["relu", "abs", "none"], class_index, layer=layer)
    signed = resize_maps(results["none"].raw_maps, image.shape[:2])[0]
    scale = float(np.abs(signed).max()) or 1.0
    views = []
    for weighting, title in (("relu", "relu: positive evidence"), ("abs", "abs: evidence for and against")):
        name = f"{stem}.middle.{weighting}.png"
        write_png(out / name, heatmap_overlay(image, results[weighting].maps[0]))
        views.append(MapView(name, title, None))
    name = f"{stem}.middle.signed.png"
    write_png(out / name, heatmap_overlay(image, signed / scale, opacity=0.6, colormap=signed_colormap))
    views.append(MapView(name, "signed: red for, blue against", None))
    return views


def explain_photo(session, record: dict, image: np.ndarray, out: Path, with_score_cam: bool) -> PhotoResult:
    from onnxcam.runtime.class_scores import top_classes

    truth = np.array([obj["box"] for obj in record["objects"]])
    accepted = {c for obj in record["objects"] for c in obj["imagenet_classes"]}
    stem = Path(record["file"]).stem
    gallery = []
    result = None
    for method, title in GALLERY:
        if method == "scorecam" and not with_score_cam:
            continue
        result = session.explain([image], method=method, weighting="relu")
        path = out / f"{stem}.{method}.png"
        gallery.append(_gallery_view(image, result.maps[0], truth, path, title, method in PIXEL_LEVEL))
    class_index = int(result.class_index[0])
    top = top_classes(result.logits, TOP_K, session.metadata.class_labels)[0]
    middle = session.layers[1]
    weightings = _weighting_views(session, image, middle, class_index, out, stem)
    return PhotoResult(record["file"], top, class_index in accepted, gallery, weightings)


def colour_bar(path: Path, colormap, width: int = 256, height: int = 14) -> Path:
    """A horizontal strip of ``colormap`` over [0, 1] (or [-1, 1] for a signed one) as PNG."""
    from onnxcam.runtime.image_io import signed_colormap, write_png

    ramp = np.linspace(-1.0 if colormap is signed_colormap else 0.0, 1.0, width)
    return write_png(path, np.repeat(colormap(ramp[None, :]), height, axis=0))


def summary_markdown(results: list[PhotoResult], seconds: float) -> str:
    methods = [view.title for view in results[0].gallery]
    lines = [
        "# onnxcam demo: EfficientNet-Lite0 (ImageNet weights) on scikit-image photos",
        "",
        f"IoU of the largest blob's box at {BOX_THRESHOLD:.0%} of the map's maximum (the Grad-CAM "
        "paper's rule) against the best-matching hand-labelled box; in brackets, at the best threshold.",
        "",
        "| photo | top-1 | p | correct | " + " | ".join(methods) + " |",
        "|" + "---|" * (4 + len(methods)),
    ]
    for r in results:
        by_title = {view.title: view for view in r.gallery}
        cells = " | ".join(
            f"{by_title[m].fixed_iou:.2f} ({by_title[m].best_iou:.2f})" if m in by_title else "-" for m in methods
        )
        name, probability = r.top[0]
        lines.append(f"| {r.file} | {name} | {probability:.2f} | {'yes' if r.correct else 'no'} | {cells} |")
    lines += ["", f"Run time: {seconds:.1f} s."]
    return "\n".join(lines) + "\n"


LESSON = f"""
<p>A <b>class activation map</b> shows where in a photo a classifier found the evidence for a class.
<b>CAM</b> weighs the channels of the last convolutional layer by the classifier's weights of that
class; <b>Grad-CAM</b> weighs them by the gradient of the class score, averaged over the map. With a
global-average-pooling head followed by one linear layer, as here, that gradient <i>is</i> the
classifier weight divided by the map's size, so CAM and Grad-CAM give the same map (which is why only
Grad-CAM is shown). The other methods weigh the channels differently (Grad-CAM++, LayerCAM), by
masking the input with each channel (Score-CAM), by the channels' principal component (Eigen-CAM),
or sharpen the map with guided backpropagation down to the pixels (Guided Grad-CAM).</p>
<p>The <b>weighting</b> decides what happens to negative evidence. The paper's <code>relu</code> keeps
only the regions that speak <i>for</i> the class; <code>abs</code> keeps those that speak for or
against it. At the last layer the two usually agree (the evidence there is positive); at a middle
layer they part, and the signed map (red for, blue against) shows where. Choose <code>abs</code> when
"what did the model look at" matters more than "what convinced it", as for localization with
weak evidence (the localization report measures when it helps).</p>
<p><b>IoU</b> (intersection over union) scores a box against the hand-labelled one (green): 1 is a
perfect match, 0.5 the usual bar for "found". The <span style="color:rgb{PREDICTED_COLOUR}">red</span>
box takes the largest blob above {BOX_THRESHOLD:.0%} of the map's maximum, as the Grad-CAM paper does;
the <span style="color:rgb{BEST_COLOUR}">yellow</span> one the best of thresholds 5%-95%, which is
how well the map <i>could</i> localize. Maps run from blue (low) to red (high):</p>
"""

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1320px;margin:0 auto;padding:0 16px;color:#222}
h2{margin:28px 0 4px;border-top:1px solid #ddd;padding-top:16px}
.top{margin:0 0 8px;color:#444}.wrong{color:#b00}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
figure{margin:0}figure img{width:100%;height:auto;display:block;border-radius:3px}
figcaption{font-size:13px;margin-top:3px}
.bar{display:flex;align-items:center;gap:8px;font-size:13px;margin:4px 0}
.bar img{width:256px;height:14px}
h3{font-size:15px;margin:14px 0 6px}
"""


def _figure(view: MapView) -> str:
    caption = html.escape(view.title)
    if view.fixed_iou is not None:
        caption += (
            f"<br>IoU {view.fixed_iou:.2f} at {BOX_THRESHOLD:.0%}; "
            f"{view.best_iou:.2f} at {view.best_threshold:.0%}"
        )
    return f'<figure><img src="{view.picture}" alt="{html.escape(view.title)}"><figcaption>{caption}</figcaption></figure>'


def index_html(results: list[PhotoResult], middle_layer: str, seconds: float) -> str:
    sections = []
    for r in results:
        top = ", ".join(f"{html.escape(name)} ({p:.0%})" for name, p in r.top)
        verdict = "" if r.correct else ' <span class="wrong">(not the labelled object)</span>'
        sections.append(
            f"<h2>{html.escape(r.file)}</h2><p class='top'>Top-3: {top}{verdict}</p>"
            f"<h3>Six methods, last layer, relu</h3><div class='grid'>{''.join(map(_figure, r.gallery))}</div>"
            f"<h3>relu vs abs at a middle layer ({html.escape(middle_layer)}, Grad-CAM)</h3>"
            f"<div class='grid'>{''.join(map(_figure, r.weightings))}</div>"
        )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>onnxcam demo</title><style>{STYLE}</style></head><body>"
        "<h1>What did the classifier look at?</h1>"
        "<p>EfficientNet-Lite0 (ImageNet weights), exported to ONNX with its gradients and explained "
        f"with ONNX Runtime alone, on five photos from scikit-image ({seconds:.0f} s in all).</p>"
        f"{LESSON}"
        "<div class='bar'>low <img src='colourbar.png' alt='colour scale'> high</div>"
        "<div class='bar'>against <img src='colourbar_signed.png' alt='signed colour scale'> for</div>"
        f"{''.join(sections)}</body></html>\n"
    )


def run_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from onnxcam.eval.datasets.demo_photos import demo_photos, skimage_data_dir
    from onnxcam.runtime import CamSession
    from onnxcam.runtime.image_io import jet_colormap, read_rgb_image, signed_colormap

    started = time.perf_counter()
    out = Path(args.out)
    model_path = export_demo_model(out / f"{ARCH}.cam.onnx")
    session = CamSession(model_path, prune_graph=True)
    data_dir = skimage_data_dir()
    records = demo_photos()["images"]
    results = [
        explain_photo(session, record, read_rgb_image(data_dir / record["file"]), out, i < SCORE_CAM_PHOTOS)
        for i, record in enumerate(tqdm(records, desc="explaining photos", unit="photo"))
    ]
    colour_bar(out / "colourbar.png", jet_colormap)
    colour_bar(out / "colourbar_signed.png", signed_colormap)
    seconds = time.perf_counter() - started
    summary = summary_markdown(results, seconds)
    write_text_atomically(out / "summary.md", summary)
    write_text_atomically(out / "index.html", index_html(results, session.layers[1], seconds))
    print(summary)
    print(f"open {out / 'index.html'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="a short lesson: EfficientNet-Lite0 explained on five real photos, six methods, relu vs abs, boxes",
        description="Export EfficientNet-Lite0 (ImageNet weights) CAM-ready and explain five photos that ship "
        "with scikit-image: six methods, relu vs abs at a middle layer, boxes scored by IoU against "
        "hand-labelled ones. Writes OUT/index.html and OUT/summary.md.",
    )
    demo.add_argument("--out", default="reports/demo", help="output folder (default: reports/demo)")
    demo.set_defaults(func=run_demo)
