"""The map metrics' part of the localization report: rows for ``metrics.csv``, the opening figure
and findings (the answer to relu vs abs, computed from the numbers), the faithfulness table and
the sanity-check figure with its reading.

Rows follow :data:`onnxcam.apps.report.COLUMNS`. Rates and fractions are shown in percent like the
box metrics (pointing game, energy, rank accuracy, pixel AUC, Gini sparseness, deletion, insertion
and ROAD x 100; Average Drop and Increase in Confidence are percent already); the sanity
similarities are correlations in [-1, 1] and stay so. Intervals are percentile bootstraps over
images (:mod:`onnxcam.eval.bootstrap`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from onnxcam.eval.bootstrap import N_RESAMPLES, bootstrap_mean, percentile_interval, resample_counts
from onnxcam.eval.chunk_metrics import GROUP_KEYS, PASS_GROUPS

MAP_METRICS = {key: group for group, keys in GROUP_KEYS.items() for key in keys}
"""Per-image chunk keys -> their group."""
ALREADY_PERCENT = ("average_drop", "increase_in_confidence")
HIGHER_IS_BETTER = {
    "MaxBoxAccV2": True, "pointing_game": True, "energy_pointing_game": True, "relevance_rank_accuracy": True,
    "pixel_auc": True, "sparseness": True, "deletion": False, "insertion": True, "average_drop": False,
    "increase_in_confidence": True, "road_combined": True, "MaxBoxAcc": True, "PxAP": True,
}
ANSWER_METRICS = ("MaxBoxAccV2", "pointing_game", "deletion", "insertion", "average_drop")
"""The opening figure's columns."""
LABELS = {
    "MaxBoxAccV2": "MaxBoxAccV2", "pointing_game": "pointing game", "deletion": "deletion AUC (lower better)",
    "insertion": "insertion AUC", "average_drop": "average drop (lower better)",
}
WEIGHTING_COLOURS = {"relu": "#1f77b4", "abs": "#d62728", "abs-weights": "#2ca02c", "none": "#7f7f7f"}
SANITY_PASS = 0.5
"""A method passes the cascading-randomization check when the Spearman similarity of its maps to
the original model's, all layers randomized, averages below this (Adebayo et al. read the curves
by eye; 0.5 marks "most of the ranking is gone")."""


def with_pass_groups(arrays: dict[str, np.ndarray], chunk_folder: Path, status: dict) -> dict[str, np.ndarray]:
    """``arrays`` (a method's chunks concatenated) with each pass-hungry group's keys taken from the
    chunks inside the group's prefix only (``<group>_n`` of the method's status, else ``n``); a group some of
    whose prefix chunks lack it (files from before it was asked for) is left out, not misaligned."""
    pass_keys = {key for group in PASS_GROUPS for key in GROUP_KEYS[group]}
    arrays = {k: v for k, v in arrays.items() if k.split("__")[-1] not in pass_keys}
    for group in PASS_GROUPS:
        limit = status.get(f"{group}_n", status.get("n"))  # a method sized before the group was asked for: all
        if limit is None:
            continue
        parts: dict[str, list[np.ndarray]] = {}
        for path in sorted(p for p in chunk_folder.glob("*.npz") if int(p.stem) < int(limit)):
            with np.load(path) as chunk:
                for key in chunk.files:
                    if "__" in key and key.split("__")[-1] in GROUP_KEYS[group]:
                        parts.setdefault(key, []).append(chunk[key])
        for key, values in parts.items():
            joined = np.concatenate(values)
            if len(joined) == int(limit):
                arrays[key] = joined
    return arrays


def metric_row(run, method: str, weighting: str, metric: str, samples: np.ndarray, n: int) -> dict:
    """One tidy metrics.csv row: the point estimate ``samples[0]`` and the 95% interval of the
    bootstrap resamples ``samples[1:]``."""
    low, high = percentile_interval(samples[1:])
    return {
        "dataset": run.dataset, "model": run.model, "layer": run.layer, "method": method, "weighting": weighting,
        "metric": metric, "value": float(samples[0]), "ci_low": low, "ci_high": high, "n": n,
    }


def bootstrap_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """Row 0 draws every image once (the point estimate); rows 1.. are the bootstrap resamples."""
    return np.vstack([np.ones((1, n), dtype=np.float32), resample_counts(n, n_resamples, seed)])


def map_metric_rows(run, method: str, weighting: str, n_resamples: int = N_RESAMPLES, seed: int = 0) -> list[dict]:
    """The threshold-free localization, faithfulness and ROAD rows of one method x weighting (those
    its chunk files hold), each a mean over its own images (``n``) with its bootstrap interval."""
    variant = run.variants[method, weighting]
    rows = []
    for key in MAP_METRICS:
        if key not in variant:
            continue
        values = np.asarray(variant[key], dtype=np.float64) * (1.0 if key in ALREADY_PERCENT else 100.0)
        rows.append(metric_row(run, method, weighting, key, bootstrap_mean(values, bootstrap_counts(len(values), n_resamples, seed)), len(values)))
    return rows


def load_sanity(folder: Path) -> dict[str, np.ndarray] | None:
    """The run's ``sanity/sanity.npz`` arrays, or None."""
    path = Path(folder) / "sanity" / "sanity.npz"
    if not path.is_file():
        return None
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def sanity_rows(run, sanity: dict[str, np.ndarray], n_resamples: int = N_RESAMPLES, seed: int = 0) -> list[dict]:
    """Per method x weighting: ``randomized_spearman_<step>`` / ``randomized_ssim_<step>`` /
    ``randomized_flat_pct_<step>`` (step of the cascading randomization, the last one every layer;
    flat: percent of the randomized model's maps that are constant) and ``random_logit_spearman`` /
    ``random_logit_ssim``, means over the sample with bootstrap intervals."""
    rows = []
    steps = sanity["steps"].tolist()
    for key, array in sanity.items():
        if key.count("__") != 2:
            continue
        method, weighting, name = key.split("__")
        if array.ndim == 1:
            rows.append(metric_row(run, method, weighting, name, bootstrap_mean(array, bootstrap_counts(len(array), n_resamples, seed)), len(array)))
            continue
        counts = bootstrap_counts(array.shape[1], n_resamples, seed)
        for step, values in zip(steps, array):
            metric = f"randomized_{name}_{step:02d}"
            rows.append(metric_row(run, method, weighting, metric, bootstrap_mean(values, counts), array.shape[1]))
    return rows


# ---- the answer: figure and findings ------------------------------------------------------------


def _model_rows(metrics: pd.DataFrame, dataset: str, model: str) -> pd.DataFrame:
    return metrics[(metrics["dataset"] == dataset) & (metrics["model"] == model)]


def answer_figure(metrics: pd.DataFrame, dataset: str, model: str, path: Path) -> Path | None:
    """Methods down, :data:`ANSWER_METRICS` across; per weighting (relu, abs, abs-weights) a coloured
    point with its 95% interval. None when the model has none of the metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from onnxcam.atomic_write import write_atomically

    rows = _model_rows(metrics, dataset, model)
    columns = [m for m in ANSWER_METRICS if (rows["metric"] == m).any()]
    if not columns:
        return None
    methods = list(dict.fromkeys(rows[rows["metric"].isin(columns)]["method"]))
    weightings = [w for w in ("relu", "abs", "abs-weights") if (rows["weighting"] == w).any()]
    figure, axes = plt.subplots(1, len(columns), figsize=(2.6 * len(columns) + 1.2, 0.34 * len(methods) + 1.3), sharey=True, squeeze=False)
    offsets = dict(zip(weightings, np.linspace(-0.22, 0.22, len(weightings))))
    for axis, metric in zip(axes[0], columns):
        chosen = rows[rows["metric"] == metric]
        for weighting in weightings:
            part = chosen[chosen["weighting"] == weighting].set_index("method")
            ys = [i + offsets[weighting] for i, m in enumerate(methods) if m in part.index]
            present = [m for m in methods if m in part.index]
            values = part.loc[present, "value"].to_numpy()
            errors = np.abs(np.vstack([values - part.loc[present, "ci_low"].to_numpy(), part.loc[present, "ci_high"].to_numpy() - values]))
            axis.errorbar(values, ys, xerr=errors, fmt="o", ms=3.5, lw=1, color=WEIGHTING_COLOURS[weighting], label=weighting)
        axis.set_title(LABELS[metric], fontsize=9)
        axis.grid(axis="x", alpha=0.3)
        axis.tick_params(labelsize=8)
    axes[0][0].set_yticks(range(len(methods)), methods)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(fontsize=8, loc="best")
    figure.suptitle(f"{model} on {dataset}: percent, 95% bootstrap intervals", fontsize=10)
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=100))
    plt.close(figure)
    return path


def _compare(metrics: pd.DataFrame, metric: str, a: str, b: str) -> pd.DataFrame:
    """Per method: ``a`` minus ``b`` of ``metric`` (sign flipped where lower is better, so positive
    means ``a`` is better), and whether their intervals are disjoint."""
    chosen = metrics[metrics["metric"] == metric].set_index(["method", "weighting"])
    out = []
    for method in dict.fromkeys(chosen.index.get_level_values(0)):
        if (method, a) not in chosen.index or (method, b) not in chosen.index:
            continue
        first, second = chosen.loc[(method, a)], chosen.loc[(method, b)]
        sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
        separate = first["ci_low"] > second["ci_high"] or second["ci_low"] > first["ci_high"]
        out.append({"method": method, "gain": sign * (first["value"] - second["value"]), "separate": bool(separate)})
    return pd.DataFrame(out, columns=["method", "gain", "separate"])


def findings(metrics: pd.DataFrame, dataset: str, model: str, versus: str = "abs") -> tuple[str, list[str]]:
    """The findings, computed from the rows: a lead sentence and, per opening metric, how
    ``versus`` compares with relu across the methods (median gain in points, how many methods it
    wins and loses, how many of those gaps have disjoint 95% intervals, the largest one)."""
    rows = _model_rows(metrics, dataset, model)
    sentences = []
    for metric in ANSWER_METRICS:
        compared = _compare(rows, metric, versus, "relu")
        moved = compared[compared["gain"].abs() > 1e-9]
        if compared.empty:
            continue
        if moved.empty:
            sentences.append(f"{LABELS[metric]}: {versus} and relu give the same value for all {len(compared)} methods")
            continue
        better, worse = moved[moved["gain"] > 0], moved[moved["gain"] < 0]
        largest = moved.loc[moved["gain"].abs().idxmax()]
        sentences.append(
            f"{LABELS[metric]}: {versus} is better for {len(better)} and worse for {len(worse)} of the "
            f"{len(compared)} methods (same for {len(compared) - len(moved)}), median change where they "
            f"differ {moved['gain'].median():+.1f} points; intervals separate for {int(better['separate'].sum())} "
            f"gains and {int(worse['separate'].sum())} losses; largest {largest['gain']:+.1f} ({largest['method']})"
        )
    if not sentences:
        return "", []
    head = (
        f"{model} on {dataset}, {versus} against relu (a positive change: {versus} better; deletion and "
        "average drop are better lower, their sign is flipped):"
    )
    return head, sentences


def marked_table(metrics: pd.DataFrame, metric: str) -> tuple[list[str], list[list[str]]]:
    """Rows (dataset, model, method, n) x weightings of ``metric``, the best weighting of each row
    marked with a star (``**`` around it where its interval is disjoint from every other's)."""
    chosen = metrics[metrics["metric"] == metric]
    weightings = list(dict.fromkeys(chosen["weighting"]))
    header = ["dataset", "model", "method", "n", *weightings]
    body = []
    higher = HIGHER_IS_BETTER.get(metric, True)
    for (dataset, model, method), group in chosen.groupby(["dataset", "model", "method"], sort=False):
        group = group.set_index("weighting")
        best = group["value"].idxmax() if higher else group["value"].idxmin()
        ties = (group["value"] == group.loc[best, "value"]).sum() > 1
        others = group.drop(index=best)
        clear = not others.empty and bool(
            ((others["ci_high"] < group.loc[best, "ci_low"]) if higher else (others["ci_low"] > group.loc[best, "ci_high"])).all()
        )
        cells = []
        for weighting in weightings:
            if weighting not in group.index:
                cells.append("")
                continue
            row = group.loc[weighting]
            text = f"{row['value']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}]"
            if weighting == best and not ties and len(group) > 1:
                text = f"**{text}** *" if clear else f"{text} *"
            cells.append(text)
        body.append([dataset, model, method, "/".join(str(int(v)) for v in dict.fromkeys(group["n"])), *cells])
    return header, body


# ---- sanity checks ------------------------------------------------------------------------------


def sanity_figure(run, sanity: dict[str, np.ndarray], path: Path) -> Path:
    """Cascading randomization: mean Spearman similarity to the original maps against the number of
    layers randomized, one panel per weighting (relu, abs, abs-weights, none), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from onnxcam.atomic_write import write_atomically

    curves = {tuple(k.split("__")[:2]): v.mean(axis=1) for k, v in sanity.items() if k.endswith("__spearman") and k.count("__") == 2}
    weightings = [w for w in ("relu", "abs", "abs-weights", "none") if any(key[1] == w for key in curves)]
    methods = list(dict.fromkeys(method for method, _ in curves))
    colours = dict(zip(methods, plt.cm.tab20.colors))
    steps = sanity["steps"]
    figure, axes = plt.subplots(1, len(weightings), figsize=(3.3 * len(weightings) + 1.6, 3.6), sharey=True, squeeze=False)
    for axis, weighting in zip(axes[0], weightings):
        for method in methods:
            if (method, weighting) in curves:
                axis.plot([0, *steps], [1.0, *curves[method, weighting]], marker=".", lw=1.2, color=colours[method], label=method)
        axis.axhline(SANITY_PASS, color="k", lw=0.6, ls=":")
        axis.set_title(weighting, fontsize=10)
        axis.set_xlabel(f"layers randomized (of {int(sanity['layers'])}, from the logits)", fontsize=8)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("Spearman of |map| vs original")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the panels, not over them
    figure.suptitle(f"{run.model} on {run.dataset}: cascading randomization", fontsize=10)
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=100))
    plt.close(figure)
    return path


def sanity_reading(metrics: pd.DataFrame, dataset: str, model: str) -> str:
    """Which method x weighting maps pass the randomization check (mean Spearman similarity to the
    original below :data:`SANITY_PASS` once half the layers are randomized: the first step at or
    past the middle), and whether abs or abs-weights keep more of the original map than relu, with
    every layer randomized and for another class (random logit): a map that survives either reflects
    the input more than the model's decision."""
    rows = _model_rows(metrics, dataset, model)
    cascade = rows[rows["metric"].str.startswith("randomized_spearman_")]
    if cascade.empty:
        return ""
    steps = sorted({int(m.rsplit("_", 1)[1]) for m in cascade["metric"]})
    middle = next(step for step in steps if step >= steps[-1] / 2)
    at_middle = cascade[cascade["metric"] == f"randomized_spearman_{middle:02d}"].set_index(["method", "weighting"])["value"]
    fails = [f"{m} {w} ({v:.2f})" for (m, w), v in at_middle.items() if v >= SANITY_PASS]
    parts = [
        f"With {middle} of {steps[-1]} layers randomized, {len(at_middle) - len(fails)} of the {len(at_middle)} "
        f"method x weighting maps fall below a Spearman similarity of {SANITY_PASS} to the original (pass)"
        + (f"; these stay similar (fail): {', '.join(fails)}" if fails else "; none fails")
    ]
    flat = rows[rows["metric"] == f"randomized_flat_pct_{middle:02d}"]
    if not flat.empty and flat["value"].mean() > 50:
        parts.append(
            f"but {flat['value'].mean():.0f}% of those maps are flat (the randomized network's ReLUs are all off): "
            "their similarity is 0 by definition, so that pass says little"
        )
    for label, what in ((f"randomized_spearman_{steps[-1]:02d}", "with every layer randomized"),
                        ("random_logit_spearman", "for another class (random logit)")):
        chosen = rows[rows["metric"] == label]
        for versus in ("abs", "abs-weights"):
            compared = _compare(chosen, label, versus, "relu")
            moved = compared[compared["gain"].abs() > 0.005]
            if moved.empty:
                continue
            largest = moved.loc[moved["gain"].abs().idxmax()]
            parts.append(
                f"{what}, {versus} keeps more of the original map than relu for {int((moved['gain'] > 0).sum())} "
                f"and less for {int((moved['gain'] < 0).sum())} of {len(compared)} methods (median difference "
                f"where they differ {moved['gain'].median():+.2f}, intervals separate for "
                f"{int(moved['separate'].sum())}; largest {largest['gain']:+.2f}, {largest['method']})"
            )
    return "; ".join(parts) + "."
