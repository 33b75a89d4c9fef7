"""The report's ACoL vs CAM and detection sections: the claim sentence from hand-made rows, and a
tiny ``onnxcam eval ... --detection`` run whose report holds both sections and whose metrics.csv
holds the detection rows with their setting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from onnxcam.apps.report import COLUMNS


def _row(model, method, metric, value, low, high, n=100):
    return {
        "dataset": "synthetic", "model": model, "layer": "layer3", "method": method, "weighting": "relu", "metric": metric,
        "value": value, "ci_low": low, "ci_high": high, "n": n, "setting": np.nan,
    }


def _metrics(acol_box, acol_interval, deletion=(20.0, 18.0, 22.0)):
    rows = [
        _row("synthetic_acol", "acol", "MaxBoxAccV2", acol_box, *acol_interval),
        _row("synthetic_resnet", "cam", "MaxBoxAccV2", 67.0, 65.0, 69.0),
        _row("synthetic_resnet", "gradcam", "MaxBoxAccV2", 67.0, 65.0, 69.0),
        _row("synthetic_acol", "acol", "deletion", *deletion),
        _row("synthetic_resnet", "cam", "deletion", 30.0, 28.0, 32.0),
        _row("synthetic_acol", "acol", "randomized_spearman_3", 0.9, 0.8, 1.0),
        _row("synthetic_resnet", "cam", "randomized_spearman_3", 0.1, 0.0, 0.2),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.mark.parametrize(
    ("box", "interval", "verdict"),
    [
        (60.0, (58.0, 62.0), "does not hold here (CAM localizes better)"),
        (72.0, (70.0, 74.0), "holds here"),
        (68.0, (64.0, 72.0), "is not settled here (ACoL ahead, intervals overlap)"),
    ],
)
def test_claim_sentence_reads_effect_and_intervals(box, interval, verdict):
    from onnxcam.apps.report_acol import acol_comparison, acol_section, claim_sentence

    metrics = _metrics(box, interval)
    table = acol_comparison(metrics, "synthetic", "synthetic_acol", "synthetic_resnet")
    assert table["metric"].tolist() == ["MaxBoxAccV2", "deletion"]  # sanity rows are the sanity section's
    assert table.set_index("metric").loc["deletion", "gain"] == pytest.approx(10.0)  # lower deletion: ACoL better
    text = claim_sentence(table, "synthetic_acol", "synthetic_resnet")
    assert verdict in text and f"{box - 67.0:+.1f} points" in text
    title, blocks = acol_section(metrics)
    assert title == "ACoL vs CAM" and blocks[1] == text


def test_the_report_opens_with_the_run_of_most_images():
    """Run folders sort by name (demo-photos, then synthetic_acol, synthetic_resnet); the opening puts
    the 2,000-image run with every method first, then ACoL's three methods, then five photos."""
    from pathlib import Path
    from types import SimpleNamespace

    from onnxcam.apps.report import _answer_blocks

    def run(model, dataset, images, methods):
        variants = {(f"m{i}", w): {} for i in range(methods) for w in ("relu", "abs", "abs-weights")}
        return SimpleNamespace(model=model, dataset=dataset, explained=np.zeros(images), variants=variants)

    answers = [
        (run("efficientnet_lite0", "demo-photos", 5, 15), Path("demo.png")),
        (run("synthetic_acol", "synthetic", 2000, 3), Path("acol.png")),
        (run("synthetic_resnet", "synthetic", 2000, 15), Path("resnet.png")),
    ]
    blocks = _answer_blocks(_metrics(70.0, (68.0, 72.0)), answers)
    images = [block[1] for block in blocks if isinstance(block, tuple) and block[0] == "image"]
    assert images == ["resnet.png", "acol.png", "demo.png"]


def test_no_acol_section_without_the_baseline():
    from onnxcam.apps.report_acol import acol_section

    metrics = _metrics(60.0, (58.0, 62.0))
    assert acol_section(metrics[metrics["model"] != "synthetic_resnet"]) is None


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("torch")
    from onnxcam.export.synthetic_models import export_synthetic_model

    folder = tmp_path_factory.mktemp("report_models")
    return {
        name: export_synthetic_model(f"models/synthetic/{name}.pt", folder / f"{name}.onnx")
        for name in ("synthetic_resnet", "synthetic_acol", "synthetic_multilabel")
    }


def test_tiny_run_reports_acol_and_detection(exported, tmp_path):
    from onnxcam.apps.report_detection import detection_dataset_name
    from onnxcam.cli import main

    out = tmp_path / "report"
    argv = [
        "eval", str(exported["synthetic_resnet"]), str(exported["synthetic_acol"]), "--images", "10", "--chunk", "10",
        "--method", "cam", "--method", "gradcam", "--method", "acol", "--metrics", "none", "--workers", "0",
        "--detection", str(exported["synthetic_multilabel"]), "--detection-images", "6", "--resamples", "20",
        "--quiet", "--out", str(out),
    ]
    assert main(argv) == 0
    report = (out / "report.md").read_text()
    assert "## ACoL vs CAM" in report and "The paper's claim (ACoL localizes better than CAM" in report
    assert "## Detection: maps scored as many boxes per image" in report and "(image | before NMS | after NMS)" in report
    metrics = pd.read_csv(out / "metrics.csv")
    detection = metrics[metrics["dataset"] == detection_dataset_name("present")]
    ap = detection[detection["metric"] == "AP"]
    assert sorted(ap["method"].unique()) == ["cam", "gradcam++"] and ap["setting"].str.startswith("box=").all()
    assert ap["value"].between(0, 100).all() and (ap["n"] == 6).all()
    assert metrics[metrics["dataset"] == "synthetic"]["setting"].isna().all()
    examples = sorted((out / "detection" / "synthetic_multilabel").glob("examples_*.png"))
    assert examples and all(f"detection/synthetic_multilabel/{p.name}" in report for p in examples)
    assert "ACoL vs CAM" in (out / "report.html").read_text()


def test_eval_default_is_the_report_detection_size():
    from onnxcam.apps.cli import build_parser
    from onnxcam.apps.report_detection import DETECTION_IMAGES

    assert build_parser().parse_args(["eval"]).detection_images == DETECTION_IMAGES
