"""The localization report: every run under ``OUT/runs`` -> metrics with bootstrap 95% intervals.

Writes, in ``OUT``: ``metrics.csv`` (tidy: dataset, model, layer, method, weighting, metric, value,
ci_low, ci_high, n), ``diagnostics.csv`` (same columns: negative channel weights, how often abs
changes the box), ``report.md`` and ``report.html`` (the same content: the answer first, per model
``answer_<set>_<model>.png`` and computed findings, then the tables with the best weighting of each
row marked; the map metrics' sections come from :mod:`onnxcam.apps.report_metrics`, with
``sanity_<set>_<model>.png``), ``curves_<set>_<model>.png`` (box accuracy against the map
threshold) and ``overlays/`` (the images where ``relu`` and ``abs`` disagree most), the ACoL vs CAM section
(:mod:`onnxcam.apps.report_acol`) and the detection section with ``detection/<model>/`` from
``onnxcam eval --detection`` (:mod:`onnxcam.apps.report_detection`). Metrics are percentages; intervals are percentile bootstraps over images
(:mod:`onnxcam.eval.bootstrap`, 1000 resamples, the same resamples for every variant of a run).
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from onnxcam.atomic_write import write_atomically, write_text_atomically
from onnxcam.apps.report_acol import acol_section
from onnxcam.apps.report_detection import detection_metric_rows, detection_section, find_detections
from onnxcam.apps.report_metrics import (
    answer_figure,
    bootstrap_counts,
    findings,
    load_sanity,
    map_metric_rows,
    marked_table,
    metric_row,
    sanity_figure,
    sanity_reading,
    sanity_rows,
    with_pass_groups,
)
from onnxcam.eval.boxes import box_iou
from onnxcam.eval.bootstrap import (
    N_RESAMPLES,
    bootstrap_max_accuracy,
    bootstrap_mean,
    bootstrap_pxap,
)
from onnxcam.eval.chunks import FIXED_THRESHOLDS, unpack_hits
from onnxcam.eval.evalset import EvalSet, demo_photos_eval_set, synthetic_eval_set
from onnxcam.eval.wsol import V2_IOU_THRESHOLDS, scoremap_thresholds

COLUMNS = ["dataset", "model", "layer", "method", "weighting", "metric", "value", "ci_low", "ci_high", "n", "setting"]
"""``setting``: the best swept setting of a detection row (e.g. ``box=0.5,nms=0.3``), else empty."""
BOX_METRICS = ("MaxBoxAcc",) + tuple(f"MaxBoxAccV2_IoU{round(d * 100)}" for d in V2_IOU_THRESHOLDS)
HEADLINE = "MaxBoxAccV2"


@dataclass
class RunResults:
    """One finished run, its per-image arrays concatenated over chunks."""

    folder: Path
    config: dict
    predicted: np.ndarray
    explained: np.ndarray
    correct: np.ndarray
    negative_weights: dict[str, np.ndarray]
    variants: dict[tuple[str, str], dict[str, np.ndarray]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    skipped_images: list[str] = field(default_factory=list)  # ids left out as unreadable (--skip-missing)
    sanity: dict[str, np.ndarray] | None = None  # sanity/sanity.npz (onnxcam.eval.sanity_step)

    @property
    def dataset(self) -> str:
        return str(self.config["dataset"]["dataset"])

    @property
    def model(self) -> str:
        return str(self.config["model"])

    @property
    def layer(self) -> str:
        return str(self.config["layer"])


def _concatenated(paths: list[Path]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for path in sorted(paths):
        with np.load(path) as chunk:
            for key in chunk.files:
                if key != "start" and not key.startswith("seconds__"):  # seconds: one number per chunk
                    parts.setdefault(key, []).append(chunk[key])
    return {key: np.concatenate(values) for key, values in parts.items()}


def load_run(folder: str | os.PathLike) -> RunResults:
    """Read ``run.json`` and the chunk files of one run folder."""
    folder = Path(folder)
    state = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    model = _concatenated(list((folder / "chunks" / "model").glob("*.npz")))
    results = RunResults(
        folder=folder,
        config=state["config"],
        predicted=model["predicted"],
        explained=model["explained"],
        correct=model["correct"].astype(bool),
        negative_weights={k.split("__", 1)[1]: v for k, v in model.items() if k.startswith("negative_weights__")},
        skipped_images=[image["id"] for image in state.get("skipped_images", [])],
    )
    for method in state["config"]["methods"]:
        status = state["methods"].get(method)
        if status is None:
            continue
        if status.get("skipped"):
            results.skipped[method] = status["reason"]
            continue
        # A method cut to a prefix by its budget may have chunks past it (scored while it was sized).
        chunks = [path for path in (folder / "chunks" / method).glob("*.npz") if int(path.stem) < status["n"]]
        arrays = with_pass_groups(_concatenated(chunks), folder / "chunks" / method, status)
        for weighting in state["config"]["weightings"]:
            prefix = f"{weighting}__"
            variant = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            if variant:
                results.variants[method, weighting] = variant
    results.sanity = load_sanity(folder)
    return results


def find_runs(out: str | os.PathLike) -> list[Path]:
    """Run folders (``runs/<set>/<model>``, holding a ``run.json``) under ``out``, sorted."""
    return sorted(path.parent for path in Path(out).glob("runs/*/*/run.json"))


def variant_metrics(run: RunResults, method: str, weighting: str, n_resamples: int = N_RESAMPLES, seed: int = 0) -> list[dict]:
    """The metric rows of one method x weighting of a run."""
    variant = run.variants[method, weighting]
    n = len(variant["levels"])
    counts = bootstrap_counts(n, n_resamples, seed)
    rows = []
    per_iou = []
    for metric in BOX_METRICS:
        samples = bootstrap_max_accuracy(unpack_hits(variant["levels"], metric), counts)
        rows.append(metric_row(run, method, weighting, metric, samples, n))
        if metric != "MaxBoxAcc":
            per_iou.append(samples)
    rows.insert(1, metric_row(run, method, weighting, HEADLINE, np.mean(per_iou, axis=0), n))
    for tau in FIXED_THRESHOLDS:
        hit = variant[f"iou_{tau:.2f}"] >= 0.5
        rows.append(metric_row(run, method, weighting, f"gt_known_loc_{tau:.2f}", bootstrap_mean(100.0 * hit, counts), n))
        top1 = hit & run.correct[:n]
        rows.append(metric_row(run, method, weighting, f"top1_loc_{tau:.2f}", bootstrap_mean(100.0 * top1, counts), n))
    if "px_true" in variant:
        thresholds = scoremap_thresholds(run.config["step"])
        samples = bootstrap_pxap(variant["px_true"], variant["px_false"], thresholds, counts)
        rows.append(metric_row(run, method, weighting, "PxAP", samples, n))
    return rows


def _box_changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a != b).any(axis=1)


def diagnostic_rows(run: RunResults, n_resamples: int = N_RESAMPLES, seed: int = 0) -> list[dict]:
    """Negative channel weights and how often ``abs`` / ``abs-weights`` change the 0.15 box."""
    rows = []
    n_all = len(run.correct)
    rows.append(metric_row(run, "-", "-", "top1_accuracy", bootstrap_mean(100.0 * run.correct, bootstrap_counts(n_all, n_resamples, seed)), n_all))
    for method, fraction in run.negative_weights.items():
        rows.append(metric_row(run, method, "-", "negative_weights_pct", bootstrap_mean(100.0 * fraction, bootstrap_counts(n_all, n_resamples, seed)), n_all))
    for method in sorted({m for m, _ in run.variants}):
        relu = run.variants.get((method, "relu"))
        if relu is None:
            continue
        n = len(relu["levels"])
        counts = bootstrap_counts(n, n_resamples, seed)
        flat = relu["raw"].reshape(n, -1).max(axis=1) <= 0
        rows.append(metric_row(run, method, "relu", "relu_map_all_zero_pct", bootstrap_mean(100.0 * flat, counts), n))
        for other in ("abs", "abs-weights"):
            if (method, other) in run.variants:
                changed = _box_changed(relu["box_0.15"], run.variants[method, other]["box_0.15"])
                rows.append(metric_row(run, method, other, "box_changed_vs_relu_pct", bootstrap_mean(100.0 * changed, counts), n))
    return rows


def _cell(row: pd.Series) -> str:
    return f"{row['value']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}]"


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _html_cell(text: str) -> str:
    """A table cell; markdown's ``**bold**`` (a clearly best weighting) in bold."""
    if text.startswith("**") and "**" in text[2:]:
        bold, rest = text[2:].split("**", 1)
        return f"<b>{html.escape(bold)}</b>{html.escape(rest)}"
    return html.escape(text)


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def plot_curves(run: RunResults, path: Path) -> Path:
    """Box accuracy (every contour, IoU 0.5) against the score-map threshold, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds = scoremap_thresholds(run.config["step"])
    styles = {"relu": "-", "abs": "--", "abs-weights": ":"}
    figure, axis = plt.subplots(figsize=(7, 4.5))
    colours = dict(zip(sorted({m for m, _ in run.variants}), plt.cm.tab20.colors))
    for (method, weighting), variant in run.variants.items():
        curve = 100.0 * unpack_hits(variant["levels"], "MaxBoxAccV2_IoU50").mean(axis=0)
        axis.plot(thresholds, curve, styles.get(weighting, "-."), color=colours[method], label=f"{method} {weighting}", lw=1.3)
    axis.set_xlabel("score-map threshold (of the max)")
    axis.set_ylabel("box accuracy at IoU 0.5, all contours (%)")
    axis.set_title(f"{run.model} on {run.dataset}")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=110))
    plt.close(figure)
    return path


def eval_set_from_spec(spec: dict) -> EvalSet:
    """Rebuild the image set a run used from its ``run.json`` dataset spec."""
    if spec["dataset"] == "synthetic":
        return synthetic_eval_set(int(spec["n"]), int(spec["image_size"]), int(spec["num_classes"]), int(spec["seed"]))
    if spec["dataset"] == "demo-photos":
        return demo_photos_eval_set()
    from onnxcam.eval.datasets.eval_sets import on_disk_eval_set_from_spec

    return on_disk_eval_set_from_spec(spec)


def disagreement_overlays(run: RunResults, out: Path, method: str = "gradcam", count: int = 4) -> list[tuple[str, str]]:
    """Overlays of the images where the ``relu`` and ``abs`` boxes (0.15) of ``method`` differ most.

    Returns ``(png path relative to out, caption)`` pairs; each PNG shows the relu map, then the
    abs map, ground truth in green and the 0.15 box in red.
    """
    from onnxcam.apps.drawing import PREDICTED_COLOUR, TRUTH_COLOUR, draw_box
    from onnxcam.runtime.image_io import heatmap_overlay, write_png
    from onnxcam.runtime.normalization import minmax_normalize
    from onnxcam.runtime.resize import resize_maps

    if (method, "relu") not in run.variants or (method, "abs") not in run.variants:
        return []
    relu, absolute = run.variants[method, "relu"], run.variants[method, "abs"]
    agreement = np.array([box_iou(a, b)[0, 0] for a, b in zip(relu["box_0.15"], absolute["box_0.15"])])
    gap = np.abs(relu["iou_0.15"] - absolute["iou_0.15"])
    order = np.lexsort((-gap, agreement))[:count]
    data = eval_set_from_spec(run.config["dataset"])
    if run.skipped_images:
        left_out = set(run.skipped_images)
        data = data.without([i for i, image_id in enumerate(data.ids) if image_id in left_out])
    written = []
    for i in order.tolist():
        image = np.asarray(data.images[i])
        truth = data.class_boxes(i, int(run.explained[i]))
        panels = []
        for variant in (relu, absolute):
            heatmap = minmax_normalize(resize_maps(variant["raw"][i : i + 1], image.shape[:2]))[0]
            picture = heatmap_overlay(image, heatmap)
            for box in truth:
                picture = draw_box(picture, box, TRUTH_COLOUR, width=1)
            panels.append(draw_box(picture, variant["box_0.15"][i], PREDICTED_COLOUR, width=1))
        name = f"overlays/{run.dataset}_{run.model}_{method}_{i:05d}.png"
        write_png(out / name, np.concatenate([image, *panels], axis=1))
        caption = (
            f"{data.ids[i]}: class {int(run.explained[i])}; IoU at 0.15: relu {relu['iou_0.15'][i]:.2f}, "
            f"abs {absolute['iou_0.15'][i]:.2f} (image | {method} relu | {method} abs)"
        )
        written.append((name, caption))
    return written


def write_report(out: str | os.PathLike, n_resamples: int = N_RESAMPLES, progress: bool = True) -> pd.DataFrame:
    """Aggregate every run under ``out`` and write the report files; returns the metrics table."""
    from tqdm import tqdm

    out = Path(out)
    runs = [load_run(folder) for folder in find_runs(out)]
    detections = find_detections(out)
    if not runs and not detections:
        raise ValueError(f"no evaluation runs under {out / 'runs'}: run onnxcam eval first")
    rows, diagnostics = [], []
    jobs = [(run, m, w) for run in runs for (m, w) in run.variants]
    for run, method, weighting in tqdm(jobs, desc="bootstrap intervals", disable=not progress):
        rows += variant_metrics(run, method, weighting, n_resamples)
        rows += map_metric_rows(run, method, weighting, n_resamples)
    for run in runs:
        if run.sanity is not None:
            rows += sanity_rows(run, run.sanity, n_resamples)
    for run in runs:
        diagnostics += diagnostic_rows(run, n_resamples)
    for folder in detections:
        rows += detection_metric_rows(folder)
    metrics = pd.DataFrame(rows, columns=COLUMNS)
    diag = pd.DataFrame(diagnostics, columns=COLUMNS)
    write_atomically(out / "metrics.csv", lambda temporary: metrics.to_csv(temporary, index=False, float_format="%.4f"))
    write_atomically(out / "diagnostics.csv", lambda temporary: diag.to_csv(temporary, index=False, float_format="%.4f"))
    plots = [plot_curves(run, out / f"curves_{run.dataset}_{run.model}.png").name for run in runs]
    overlays = [item for run in runs for item in disagreement_overlays(run, out)]
    answers = [
        (run, answer_figure(metrics, run.dataset, run.model, out / f"answer_{run.dataset}_{run.model}.png")) for run in runs
    ]
    sanity_plots = [
        (run, sanity_figure(run, run.sanity, out / f"sanity_{run.dataset}_{run.model}.png")) for run in runs if run.sanity is not None
    ]
    sections = _sections(runs, metrics, diag, plots, overlays, answers, sanity_plots)
    sections[-1:-1] = [section for section in (acol_section(metrics), detection_section(metrics, detections)) if section]
    write_text_atomically(out / "report.md", _render_markdown(sections))
    write_text_atomically(out / "report.html", _render_html(sections))
    return metrics


def _sections(runs, metrics, diag, plots, overlays, answers=(), sanity_plots=()) -> list[tuple[str, list]]:
    """The report as ``(title, blocks)``; a block is text, ``("table", header, body)``, ``("list", items)``
    or ``("image", path, caption)``."""
    models_header = ["dataset", "model", "layer", "images", "top-1 accuracy", "threshold step", "notes"]
    models_body = []
    for run in runs:
        accuracy = diag[(diag["model"] == run.model) & (diag["dataset"] == run.dataset) & (diag["metric"] == "top1_accuracy")].iloc[0]
        notes = [f"{m}: skipped ({reason.split(';')[0]})" for m, reason in run.skipped.items()]
        if run.skipped_images:
            notes.append(f"{len(run.skipped_images)} unreadable images left out (listed in run.json)")
        counts = {int(v["levels"].shape[0]) for v in run.variants.values()}
        if len(counts) > 1:
            notes.append("some methods ran on a prefix of the images (see n)")
        models_body.append([run.dataset, run.model, run.layer, str(len(run.correct)), _cell(accuracy), str(run.config["step"]), "; ".join(notes)])
    intro = (
        "Localization of class activation maps, ReLU vs abs weighting. Boxes follow the WSOL protocol "
        "of Choe et al. (CVPR 2020) as `onnxcam score --protocol wsol` does (raw maps bicubic to 224x224, "
        "min-max, uint8, strict `>`, RETR_TREE contours, inclusive IoU); top-1 / GT-known localization "
        "use the largest 8-connected blob of the map at the image's own size at 0.15 / 0.20 of its "
        "maximum. Maps explain the ground-truth class. Values in percent, brackets: bootstrap 95% "
        f"intervals over images ({N_RESAMPLES} resamples). n: images scored."
    )
    sections: list[tuple[str, list]] = [
        ("Localization report", _answer_blocks(metrics, answers)),
        ("How it is measured", [intro]),
        ("Models", [("table", models_header, models_body)]),
        (f"{HEADLINE} (headline)", [MARK_NOTE, ("table", *marked_table(metrics, HEADLINE))]),
    ]
    for metric in ("MaxBoxAcc", "gt_known_loc_0.15", "top1_loc_0.15", "PxAP"):
        if (metrics["metric"] == metric).any():
            sections.append((metric, [("table", *marked_table(metrics, metric))]))
    sections += _map_metric_sections(metrics, sanity_plots)
    diag_body = [
        [r["dataset"], r["model"], r["method"], r["weighting"], r["metric"], _cell(r), str(int(r["n"]))]
        for _, r in diag.iterrows()
    ]
    sections.append((
        "Diagnostics",
        [
            "negative_weights_pct: share of channel weights alpha_k below zero (per image, averaged); "
            "relu_map_all_zero_pct: images whose ReLU map is all zero (no box at all); "
            "box_changed_vs_relu_pct: images whose 0.15 box differs from the ReLU one.",
            ("table", ["dataset", "model", "method", "weighting", "metric", "value [95% CI]", "n"], diag_body),
        ],
    ))
    sections.append(("Accuracy against threshold", [("image", name, name) for name in plots]))
    sections.append(("Where relu and abs disagree most", [("image", name, caption) for name, caption in overlays]))
    sections.append(("Full numbers", ["Every metric of every variant: `metrics.csv`; diagnostics: `diagnostics.csv`."]))
    return sections


MARK_NOTE = (
    "In every table, * marks the best weighting of a row, in bold where its 95% interval is disjoint "
    "from every other weighting's; n: images scored (a/b where weightings differ)."
)


def _answer_blocks(metrics: pd.DataFrame, answers) -> list:
    """The report's opening: per model its figure and the computed findings, abs and abs-weights
    each against relu."""
    blocks: list = [
        "Does abs in place of the Grad-CAM paper's ReLU give better maps? Per model: every method's "
        "box accuracy (MaxBoxAccV2), pointing game, deletion and insertion AUC and Average Drop under "
        "relu, abs and abs-weights, with 95% bootstrap intervals, then what the numbers say."
    ]
    # The best-supported answer first: most images (2,000 synthetic images before five demo photos),
    # then most method x weighting variants (the full run before ACoL's three methods).
    for run, figure in sorted(answers, key=lambda answer: (-len(answer[0].explained), -len(answer[0].variants))):
        if figure is not None:
            blocks.append(("image", figure.name, f"{run.model} on {run.dataset}"))
        for versus in ("abs", "abs-weights"):
            head, items = findings(metrics, run.dataset, run.model, versus)
            if items:
                blocks += [head, ("list", items)]
    return blocks


MAP_METRIC_SECTIONS = (
    (
        "Localization without thresholds",
        ("localization",),
        "pointing_game: the map's peak on the object; energy_pointing_game: share of the map's mass on "
        "it; relevance_rank_accuracy: share of the |object| top pixels on it; pixel_auc: ROC AUC of "
        "the map as a pixel classifier; sparseness: Gini index (x100). Objects from the masks, else the boxes.",
    ),
    (
        "Faithfulness",
        ("faithfulness", "road"),
        "Extra forward passes on the graph cut to the logits, on the map at the model's input size: "
        "average_drop (lower is better) and increase_in_confidence (Grad-CAM++), deletion (lower is "
        "better) and insertion AUC x100 (RISE, as torchcam: 20 steps, baseline 0), road_combined x100 "
        "((LeRF - MoRF) / 2, pytorch-grad-cam). These rows have their own n: past the metrics budget "
        "they run on a prefix of the method's images.",
    ),
)
"""The map-metric sections: (title, MAP_METRICS groups, what the metrics mean)."""


def _map_metric_sections(metrics: pd.DataFrame, sanity_plots) -> list[tuple[str, list]]:
    """Threshold-free localization, faithfulness and sanity checks, where the runs have them."""
    from onnxcam.apps.report_metrics import MAP_METRICS

    present = set(metrics["metric"])
    sections: list[tuple[str, list]] = []
    for title, groups, intro in MAP_METRIC_SECTIONS:
        names = [m for m, group in MAP_METRICS.items() if group in groups and m in present]
        if names:
            blocks: list = [intro]
            for metric in names:
                blocks += [metric, ("table", *marked_table(metrics, metric))]
            sections.append((title, blocks))
    sanity_blocks: list = []
    for run, figure in sanity_plots:
        sanity_blocks.append(("image", figure.name, f"{run.model} on {run.dataset}: similarity to the original maps"))
        text = sanity_reading(metrics, run.dataset, run.model)
        if text:
            sanity_blocks.append(text)
    final = sorted(m for m in present if m.startswith("randomized_spearman_"))
    if final:
        table = metrics[metrics["metric"].isin([final[-1], "random_logit_spearman"])]
        weightings = [w for w in ("relu", "abs", "abs-weights", "none") if (table["weighting"] == w).any()]
        body = []
        for (dataset, model, method, check), group in table.groupby(["dataset", "model", "method", "metric"], sort=False):
            cells = {r["weighting"]: f"{r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" for _, r in group.iterrows()}
            body.append([dataset, model, method, check, str(int(group["n"].max())), *[cells.get(w, "") for w in weightings]])
        sanity_blocks.append((
            "table", ["dataset", "model", "method", "Spearman to the original", "n", *weightings], body
        ))
    if sanity_blocks:
        intro = (
            "Adebayo et al. (2018): the model's layers are randomized from the logits down and each "
            "method's maps compared with the original model's (Spearman rank correlation of |map|; SSIM "
            "in metrics.csv); a method that explains the model loses the similarity. The random-logit "
            "check explains another class instead: a class-sensitive map changes."
        )
        sections.append(("Sanity checks", [intro, *sanity_blocks]))
    return sections


def _render_markdown(sections) -> str:
    parts = []
    for level, (title, blocks) in enumerate(sections):
        parts.append(("# " if level == 0 else "## ") + title)
        for block in blocks:
            if isinstance(block, str):
                parts.append(block)
            elif block[0] == "table":
                parts.append(_markdown_table(block[1], block[2]))
            elif block[0] == "list":
                parts.append("\n".join(f"- {item}" for item in block[1]))
            else:
                parts.append(f"![{block[2]}]({block[1]})\n\n{block[2]}")
    return "\n\n".join(parts) + "\n"


def _render_html(sections) -> str:
    parts = []
    for level, (title, blocks) in enumerate(sections):
        tag = "h1" if level == 0 else "h2"
        parts.append(f"<{tag}>{html.escape(title)}</{tag}>")
        for block in blocks:
            if isinstance(block, str):
                parts.append(f"<p>{html.escape(block)}</p>")
            elif block[0] == "table":
                parts.append(_html_table(block[1], block[2]))
            elif block[0] == "list":
                parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block[1]) + "</ul>")
            else:
                parts.append(f'<figure><img src="{html.escape(block[1])}"><figcaption>{html.escape(block[2])}</figcaption></figure>')
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto} table{border-collapse:collapse;margin:8px 0}"
        " td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px} img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>onnxcam localization report</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )
