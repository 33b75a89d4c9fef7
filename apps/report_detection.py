"""The localization report's detection part: a multi-label model's class maps on the multi-object
set, scored as detections with COCO AP (docs/detection.md).

:func:`run_detection` (``onnxcam eval --detection MODEL.onnx``) explains the held-out multi-object
split (seed ``MULTI_OBJECT_TEST_SEED``) with :data:`DETECTION_METHODS` x the report's weightings,
for the classes present and the classes predicted, sweeps the (box, NMS) settings
(:func:`onnxcam.apps.detection_report.detection_rows`) and writes ``OUT/detection/<model>/``
(:data:`DETECTION_SETTINGS`):
``sweep.csv`` (every setting), ``run.json`` (what was run, so a rerun with the same options is
skipped) and ``examples_*.png`` (ground truth, detections before and after NMS). The report
(:func:`detection_metric_rows`, :func:`detection_section`) adds each method x weighting's best
setting to ``metrics.csv``, with its ``setting`` column, and a section with the examples.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from onnxcam.atomic_write import write_atomically, write_text_atomically
from onnxcam.eval.detection_sweep import DetectionSetting

DETECTION_METHODS = ("cam", "gradcam++")
"""Methods scored as detections; each costs one map per (image, class explained). Grad-CAM is left
out: on a GAP + linear head (synthetic_multilabel) its maps are CAM's (docs/detection.md)."""
DETECTION_WEIGHTINGS = ("relu", "abs", "abs-weights")
DETECTION_IMAGES = 200
"""Held-out multi-object images (``--detection-images``), sized so the step costs <= 3 min on 2 cores."""
DETECTION_SETTINGS = (
    *[DetectionSetting(box, None) for box in (0.3, 0.4, 0.5, 0.6, 0.7)],
    *[DetectionSetting(pool, nms) for pool in ((0.3, 0.5, 0.7), (0.2, 0.4, 0.6, 0.8)) for nms in (0.3, 0.5)],
)
"""The report's sweep, 9 of the default 36 settings (each setting is one COCO evaluation, ~0.5-1 s
here): single thresholds without NMS, which changes nothing there (one threshold's blobs are
disjoint), and the pooled thresholds, whose nested boxes NMS chooses among, at two IoU thresholds."""
AP_METRICS = ("AP", "AP50", "AP75")
EXAMPLES = 3


def detection_dataset_name(classes: str) -> str:
    """``metrics.csv``'s ``dataset`` of the detection rows: ``multi-object:present`` (the classes
    present are explained, the GT-known framing) or ``multi-object:predicted``."""
    return f"multi-object:{classes}"


def run_detection(
    model: str | os.PathLike, out: str | os.PathLike, images: int = DETECTION_IMAGES,
    methods=DETECTION_METHODS, weightings=DETECTION_WEIGHTINGS, classes=("present", "predicted"),
    settings=DETECTION_SETTINGS,
) -> Path:
    """Score ``model``'s maps as detections on ``images`` multi-object images; returns the folder
    ``OUT/detection/<model stem>`` (kept as it is when its ``run.json`` asked for the same)."""
    from onnxcam.apps.detection_report import detection_rows
    from onnxcam.eval.datasets.multi_object import MULTI_OBJECT_TEST_SEED, make_multi_object_dataset
    from onnxcam.runtime import CamSession

    model = Path(model)
    folder = Path(out) / "detection" / model.stem
    config = {
        "model": model.stem, "images": images, "seed": MULTI_OBJECT_TEST_SEED,
        "methods": list(methods), "weightings": list(weightings), "classes": list(classes),
        "settings": [setting.name for setting in settings],
    }
    if (folder / "sweep.csv").is_file() and (folder / "run.json").is_file():
        if json.loads((folder / "run.json").read_text(encoding="utf-8")) == config:
            return folder
    session = CamSession(model)
    metadata = session.metadata
    data = make_multi_object_dataset(images, MULTI_OBJECT_TEST_SEED, metadata.preprocessing.input_size[0], metadata.num_classes)
    table = pd.concat([detection_rows(session, data, methods, weightings, c, settings=settings) for c in classes], ignore_index=True)
    write_atomically(folder / "sweep.csv", lambda temporary: table.to_csv(temporary, index=False, float_format="%.4f"))
    _write_examples(session, data, table, folder)
    write_text_atomically(folder / "run.json", json.dumps(config, indent=1) + "\n")
    return folder


def _example_row(table: pd.DataFrame) -> pd.Series:
    """The setting the examples show: the best pooled-threshold setting with NMS of the best
    method (classes present, relu), where NMS has nested boxes to choose among."""
    present = table[(table["classes"] == "present") & (table["weighting"] == "relu")]
    best_method = present.loc[present["AP"].idxmax(), "method"]
    pooled = present[(present["method"] == best_method) & present["box_threshold"].str.contains(r"\+") & present["nms_threshold"].notna()]
    return (pooled if not pooled.empty else present[present["method"] == best_method]).sort_values("AP", kind="stable").iloc[-1]


def _write_examples(session, data, table: pd.DataFrame, folder: Path) -> None:
    """``examples_<i>.png``: image | ground truth and detections before NMS | after NMS, for the
    :data:`EXAMPLES` images (of the first 40) where NMS removes the most boxes; ``examples.json``
    the captions."""
    from onnxcam.apps.detection_report import class_maps, draw_detections, ground_truth
    from onnxcam.eval.detections import detections_from_maps
    from onnxcam.runtime.image_io import write_png

    row = _example_row(table)
    thresholds = [float(t) for t in str(row["box_threshold"]).split("+")]
    subset = _first(data, min(40, len(data)))
    maps, scores = class_maps(session, subset, row["method"], ["relu"], "present")
    truth = ground_truth(subset)
    before = [detections_from_maps(m, thresholds, None, row["score"], s) for m, s in zip(maps["relu"], scores)]
    after = [detections_from_maps(m, thresholds, float(row["nms_threshold"]), row["score"], s) for m, s in zip(maps["relu"], scores)]
    removed = np.array([len(b) - len(a) for b, a in zip(before, after)])
    captions = []
    for i in np.argsort(-removed, kind="stable")[:EXAMPLES].tolist():
        image = np.asarray(subset.images[i])
        panels = [image, draw_detections(image, truth[i], before[i]), draw_detections(image, truth[i], after[i])]
        name = f"examples_{i:03d}.png"
        write_png(folder / name, _upscaled(np.concatenate(panels, axis=1), 3))
        captions.append({
            "file": name,
            "caption": (
                f"image {i}: {len(truth[i].boxes)} objects (green); {row['method']} relu maps of the classes "
                f"present, {row['setting']}: {len(before[i])} detections before NMS, {len(after[i])} after (red)"
            ),
        })
    write_text_atomically(folder / "examples.json", json.dumps(captions, indent=1) + "\n")


def _first(data, n: int):
    """The first ``n`` images of a multi-object set."""
    from dataclasses import replace

    return replace(data, images=data.images[:n], boxes=data.boxes[:n], labels=data.labels[:n], masks=data.masks[:n])


def _upscaled(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so one-pixel boxes on 96 px images stay visible."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def find_detections(out: str | os.PathLike) -> list[Path]:
    """Finished detection folders under ``OUT/detection``, sorted."""
    return sorted(path.parent for path in Path(out).glob("detection/*/run.json"))


def detection_metric_rows(folder: Path) -> list[dict]:
    """``metrics.csv`` rows of one detection folder: each method x weighting x classes' best
    setting by AP, with AP, AP50, AP75 and the per-class AP/<class> of that setting. COCO AP is
    a set-level number: no bootstrap interval (``ci_low``/``ci_high`` empty)."""
    from onnxcam.apps.detection_report import best_rows

    config = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    best = best_rows(pd.read_csv(folder / "sweep.csv", keep_default_na=False, na_values=[""]))
    per_class = [c for c in best.columns if c.startswith("AP/")]
    rows = []
    for _, row in best.iterrows():
        for metric in (*AP_METRICS, *per_class):
            if pd.notna(row[metric]):
                rows.append({
                    "dataset": detection_dataset_name(row["classes"]), "model": config["model"], "layer": "",
                    "method": row["method"], "weighting": row["weighting"], "metric": metric, "value": float(row[metric]),
                    "ci_low": np.nan, "ci_high": np.nan, "n": config["images"], "setting": row["setting"],
                })
    return rows


def detection_section(metrics: pd.DataFrame, folders: list[Path]) -> tuple[str, list] | None:
    """The report's detection section: per model and classes framing, the best setting's AP,
    AP50 and AP75 of every method x weighting, then the example images."""
    rows = metrics[metrics["dataset"].astype(str).str.startswith("multi-object:") & metrics["metric"].isin(AP_METRICS)]
    if rows.empty:
        return None
    blocks: list = [
        "The detection framing of the R-CNN family (docs/detection.md): a multi-label model "
        "explains each held-out multi-object image's classes (present: the classes in the ground "
        "truth; predicted: sigmoid >= 0.5, at least the top-1); every 8-connected blob of a map at a "
        "box threshold is a box scored by the map's peak times the class probability; NMS within a "
        "class; COCO AP (IoU 0.50:0.95), AP50, AP75 in percent. Each row is the best of the swept "
        "(box, NMS) settings, named in `setting`. COCO AP is a set-level number: no intervals."
    ]
    header = ["model", "classes", "method", "weighting", "best setting", "n", *AP_METRICS]
    body = []
    for (dataset, model, method, weighting), group in rows.groupby(["dataset", "model", "method", "weighting"], sort=False):
        values = group.set_index("metric")
        body.append([
            model, dataset.split(":", 1)[1], method, weighting, str(group["setting"].iloc[0]), str(int(group["n"].iloc[0])),
            *[f"{values.loc[m, 'value']:.1f}" for m in AP_METRICS],
        ])
    blocks.append(("table", header, body))
    best = rows[rows["metric"] == "AP"].sort_values("value", ascending=False, kind="stable").iloc[0]  # ties: first row
    blocks.append(
        f"Best: {best['method']} {best['weighting']} ({best['dataset'].split(':', 1)[1]} classes, {best['setting']}), "
        f"AP {best['value']:.1f}."
    )
    for folder in folders:
        examples = folder / "examples.json"
        if examples.is_file():
            for item in json.loads(examples.read_text(encoding="utf-8")):
                name = f"detection/{folder.name}/{item['file']}"
                blocks.append(("image", name, f"{item['caption']} (image | before NMS | after NMS)"))
    return "Detection: maps scored as many boxes per image", blocks
