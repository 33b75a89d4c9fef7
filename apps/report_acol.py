"""The localization report's ACoL vs CAM section: does ACoL (Zhang et al., CVPR 2018) localize
better than CAM on the same backbone, as the paper claims?

The ACoL model's own maps (method ``acol``, the fused ``acol_maps`` output) are compared, metric by
metric, with CAM on the backbone trained without ACoL (:data:`ACOL_BASELINES`: ``synthetic_acol``
is fine-tuned from ``synthetic_resnet``, ``models/synthetic/synthetic_acol.json``), all under the
``relu`` weighting of the papers; Grad-CAM on both backbones stands beside them. The verdict is
computed from the headline metric: the difference in points (the effect size; sign flipped where
lower is better, so positive means ACoL is better) and whether the two 95% intervals are disjoint.
"""

from __future__ import annotations

import pandas as pd

from onnxcam.apps.report_metrics import HIGHER_IS_BETTER

ACOL_BASELINES = {"synthetic_acol": "synthetic_resnet"}
"""ACoL model -> the model of the same backbone trained without ACoL."""
CLAIM_METRIC = "MaxBoxAccV2"
PAPER_METRIC = "gt_known_loc_0.15"
"""GT-known localization, the paper's own measure (at our 0.15 threshold)."""
SANITY_PREFIXES = ("randomized_", "random_logit_")
"""Sanity-check rows have no better direction here: the sanity section reads them."""


def _pick(metrics: pd.DataFrame, dataset: str, model: str, method: str) -> pd.DataFrame:
    """``metric`` -> its row, for one model's method under relu."""
    rows = metrics[
        (metrics["dataset"] == dataset) & (metrics["model"] == model) & (metrics["method"] == method) & (metrics["weighting"] == "relu")
    ]
    return rows.set_index("metric")


def acol_comparison(metrics: pd.DataFrame, dataset: str, acol_model: str, baseline: str) -> pd.DataFrame:
    """One row per metric (sanity checks aside) that both ACoL (``acol_model``'s ``acol``) and CAM (``baseline``'s
    ``cam``) have: their values and intervals, Grad-CAM on both models, ``gain`` (ACoL minus
    CAM, positive where ACoL is better) and ``separate`` (95% intervals disjoint)."""
    acol = _pick(metrics, dataset, acol_model, "acol")
    cam = _pick(metrics, dataset, baseline, "cam")
    gradcam = _pick(metrics, dataset, baseline, "gradcam")
    acol_gradcam = _pick(metrics, dataset, acol_model, "gradcam")
    rows = []
    for metric in [m for m in acol.index if m in cam.index and not m.startswith(SANITY_PREFIXES)]:
        a, c = acol.loc[metric], cam.loc[metric]
        sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
        rows.append({
            "metric": metric, "acol": a, "cam": c,
            "gradcam": gradcam.loc[metric] if metric in gradcam.index else None,
            "acol_gradcam": acol_gradcam.loc[metric] if metric in acol_gradcam.index else None,
            "gain": sign * (a["value"] - c["value"]),
            "separate": bool(a["ci_low"] > c["ci_high"] or c["ci_low"] > a["ci_high"]),
        })
    return pd.DataFrame(rows, columns=["metric", "acol", "cam", "gradcam", "acol_gradcam", "gain", "separate"])


def _cell(row) -> str:
    if row is None:
        return ""
    return f"{row['value']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}]"


def claim_sentence(table: pd.DataFrame, acol_model: str, baseline: str) -> str:
    """Whether the paper's claim holds here, from the headline metric (and the paper's own GT-known
    localization), with the effect size and whether the intervals separate."""
    by_metric = table.set_index("metric")
    if CLAIM_METRIC not in by_metric.index:
        return ""
    head = by_metric.loc[CLAIM_METRIC]
    if head["gain"] > 0 and head["separate"]:
        verdict = "holds here"
    elif head["gain"] < 0 and head["separate"]:
        verdict = "does not hold here (CAM localizes better)"
    else:
        verdict = f"is not settled here (ACoL {'ahead' if head['gain'] > 0 else 'behind'}, intervals overlap)"
    text = (
        f"The paper's claim (ACoL localizes better than CAM on the same backbone) {verdict}: {CLAIM_METRIC} "
        f"{_cell(head['acol'])} for ACoL ({acol_model}) against {_cell(head['cam'])} for CAM ({baseline}), "
        f"a difference of {head['gain']:+.1f} points; the 95% intervals {'are disjoint' if head['separate'] else 'overlap'}."
    )
    if PAPER_METRIC in by_metric.index:
        paper = by_metric.loc[PAPER_METRIC]
        text += (
            f" GT-known localization (the paper's measure, 0.15 threshold): {paper['gain']:+.1f} points, intervals "
            f"{'disjoint' if paper['separate'] else 'overlapping'}."
        )
    better, worse = table[table["gain"] > 0], table[table["gain"] < 0]
    text += (
        f" Over all {len(table)} metrics ACoL is better on {len(better)} ({int(better['separate'].sum())} with disjoint "
        f"intervals) and worse on {len(worse)} ({int(worse['separate'].sum())} disjoint)."
    )
    return text


def acol_section(metrics: pd.DataFrame) -> tuple[str, list] | None:
    """The report's "ACoL vs CAM" section, or None where no run has both an ACoL model and its baseline."""
    blocks: list = [
        "ACoL (Zhang et al., CVPR 2018) computes its class maps in the forward pass (two 1x1-conv "
        "classifier branches, the second reading features with the first's most discriminative region "
        "erased; the map is the element-wise maximum of the two normalised maps) and claims better "
        "localization than CAM on the same backbone. Here: method acol on the ACoL model against CAM "
        "on the backbone trained without ACoL, relu weighting, same images; Grad-CAM on both beside "
        "them. Gain: ACoL minus CAM in points, sign flipped where lower is better."
    ]
    for (dataset, acol_model), _ in metrics[metrics["method"] == "acol"].groupby(["dataset", "model"], sort=False):
        baseline = ACOL_BASELINES.get(acol_model)
        if baseline is None or not ((metrics["model"] == baseline) & (metrics["dataset"] == dataset)).any():
            continue
        table = acol_comparison(metrics, dataset, acol_model, baseline)
        if table.empty:
            continue
        blocks.append(claim_sentence(table, acol_model, baseline))
        header = [
            "metric", f"ACoL ({acol_model})", f"CAM ({baseline})", f"Grad-CAM ({baseline})", f"Grad-CAM ({acol_model})",
            "gain", "intervals", "n",
        ]
        body = [
            [
                r["metric"], _cell(r["acol"]), _cell(r["cam"]), _cell(r["gradcam"]), _cell(r["acol_gradcam"]),
                f"{r['gain']:+.1f}", "disjoint" if r["separate"] else "overlap", f"{int(r['acol']['n'])}/{int(r['cam']['n'])}",
            ]
            for _, r in table.iterrows()
        ]
        blocks.append(("table", header, body))
    return ("ACoL vs CAM", blocks) if len(blocks) > 1 else None
