"""``onnxcam eval``: bootstrap intervals on hand-computed cases, and a small run end to end."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from onnxcam.eval.bootstrap import (
    bootstrap_max_accuracy,
    bootstrap_mean,
    bootstrap_pxap,
    percentile_interval,
    resample_counts,
)
from onnxcam.eval.chunks import pack_levels, unpack_hits
from onnxcam.eval.wsol import pixel_histograms, pxap, scoremap_thresholds

# ---- bootstrap, by hand --------------------------------------------------------------------------


def test_resample_counts_draw_n_items_per_row_and_are_seeded():
    counts = resample_counts(7, n_resamples=50, seed=3)
    assert counts.shape == (50, 7)
    assert (counts.sum(axis=1) == 7).all() and (counts >= 0).all()
    np.testing.assert_array_equal(counts, resample_counts(7, n_resamples=50, seed=3))


def test_bootstrap_mean_with_given_counts():
    # Two images, one hit: drawing both once, the first twice, the second twice.
    counts = np.array([[1, 1], [2, 0], [0, 2]])
    np.testing.assert_allclose(bootstrap_mean(np.array([0.0, 100.0]), counts), [50.0, 0.0, 100.0])


def test_bootstrap_max_accuracy_takes_the_best_threshold_in_each_resample():
    # hits (3 images x 2 thresholds): image 0 only at t0, image 1 only at t1, image 2 at both.
    hits = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    counts = np.array([[1, 1, 1], [3, 0, 0], [0, 3, 0], [2, 1, 0], [1, 2, 0]])
    # per threshold correct counts: [2,2] -> 2/3; [3,0] -> 1; [0,3] -> 1; [2,1] -> 2/3; [1,2] -> 2/3
    np.testing.assert_allclose(bootstrap_max_accuracy(hits, counts), [200 / 3, 100, 100, 200 / 3, 200 / 3])


def test_percentile_interval_of_a_uniform_grid():
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    assert percentile_interval(np.arange(101.0), confidence=0.5) == pytest.approx((25.0, 75.0))


def test_a_constant_sample_has_a_zero_width_interval():
    counts = resample_counts(20, 200, seed=0)
    assert percentile_interval(bootstrap_mean(np.full(20, 100.0), counts)) == pytest.approx((100.0, 100.0))


def test_interval_of_a_proportion_matches_the_normal_approximation():
    # 200 hits out of 400: standard error 2.5 points, 95% half-width 1.96 * 2.5 = 4.9.
    values = np.repeat([0.0, 100.0], 200)
    low, high = percentile_interval(bootstrap_mean(values, resample_counts(400, 2000, seed=1)))
    assert (high - low) / 2 == pytest.approx(4.9, rel=0.1)
    assert (low + high) / 2 == pytest.approx(50.0, abs=0.6)


def test_bootstrap_pxap_of_the_identity_resample_is_pxap():
    rng = np.random.default_rng(0)
    thresholds = scoremap_thresholds(0.05)
    maps = [rng.random((8, 8)) for _ in range(3)]
    masks = [rng.random((8, 8)) > 0.5 for _ in range(3)]
    hists = [pixel_histograms(m, k, thresholds) for m, k in zip(maps, masks)]
    true_hists = np.array([t for t, _ in hists])
    false_hists = np.array([f for _, f in hists])
    counts = np.array([[1, 1, 1], [2, 1, 0]])
    samples = bootstrap_pxap(true_hists, false_hists, thresholds, counts)
    assert samples[0] == pytest.approx(pxap(maps, masks, thresholds).value)
    assert samples[1] == pytest.approx(pxap([maps[0], maps[0], maps[1]], [masks[0], masks[0], masks[1]], thresholds).value)


def test_levels_pack_the_three_v2_ious_and_the_largest_box():
    largest = np.array([[0.6, 0.4, 0.5]])
    every = np.array([[0.75, 0.5, 0.29]])
    codes = pack_levels(largest, every)
    np.testing.assert_array_equal(codes, [[3 + 4, 2, 0 + 4]])
    np.testing.assert_array_equal(unpack_hits(codes, "MaxBoxAcc"), [[True, False, True]])
    np.testing.assert_array_equal(unpack_hits(codes, "MaxBoxAccV2_IoU30"), [[True, True, False]])
    np.testing.assert_array_equal(unpack_hits(codes, "MaxBoxAccV2_IoU50"), [[True, True, False]])
    np.testing.assert_array_equal(unpack_hits(codes, "MaxBoxAccV2_IoU70"), [[True, False, False]])
    with pytest.raises(ValueError, match="unknown box metric"):
        unpack_hits(codes, "MaxBoxAccV3")


# ---- scoring a chunk ---------------------------------------------------------------------------


def chunk_variants(n: int, seed: int = 0):
    """Three weightings' raw (n, 12, 12) maps and 96 x 96 maps; ``abs`` repeats ``relu`` on even
    images, ``abs-weights`` on every image, as when a signed map is nowhere negative."""
    from onnxcam.runtime.normalization import minmax_normalize
    from onnxcam.runtime.resize import resize_maps

    rng = np.random.default_rng(seed)
    relu = rng.random((n, 12, 12)).astype(np.float32)
    absolute = np.where((np.arange(n) % 2 == 0)[:, None, None], relu, rng.random((n, 12, 12))).astype(np.float32)
    raws = {"relu": relu, "abs": absolute, "abs-weights": relu.copy()}
    return {w: (raw, list(minmax_normalize(resize_maps(raw, (96, 96))))) for w, raw in raws.items()}


def test_distinct_maps_are_scored_once_with_the_numbers_of_separate_scoring(tmp_path):
    from onnxcam.eval.chunks import ChunkTruth, distinct_maps, score_chunk, score_variant
    from onnxcam.eval.evalset import synthetic_eval_set

    data = synthetic_eval_set(6, image_size=96, num_classes=12)
    truth = ChunkTruth(list(data.boxes), [(96, 96)] * 6, [np.asarray(m) for m in data.masks])
    variants = chunk_variants(6)
    distinct, positions = distinct_maps(variants)
    assert distinct == [("relu", i) for i in range(6)] + [("abs", 1), ("abs", 3), ("abs", 5)]
    assert positions["abs"].tolist() == [0, 6, 2, 7, 4, 8] and positions["abs-weights"].tolist() == list(range(6))

    with np.load(score_chunk(tmp_path / "chunk.npz", 0, variants, truth, 0.05)) as chunk:
        for weighting, (raw, maps) in variants.items():
            alone = score_variant(raw, maps, truth, 0.05)
            for key, value in alone.items():
                stored = chunk[f"{weighting}__{key}"]
                assert stored.dtype == value.dtype
                np.testing.assert_array_equal(stored, value)


def test_truth_rows_follow_the_indices_given():
    from onnxcam.eval.chunks import ChunkTruth

    truth = ChunkTruth([np.array([[i, i, i + 1, i + 1]]) for i in range(3)], [(10, 10), (20, 20), (30, 30)], None)
    rows = truth.rows([2, 0, 2])
    assert [b[0, 0] for b in rows.gt_boxes] == [2, 0, 2] and rows.sizes == [(30, 30), (10, 10), (30, 30)]
    assert rows.masks is None


# ---- a run end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_model(tmp_path_factory):
    """A CAM-ready synthetic_resnet (seeded random init: the numbers need not be good, only right)."""
    torch = pytest.importorskip("torch")
    from onnxcam.export.synthetic_models import build_synthetic_model, checkpoint_dict, export_synthetic_model
    from onnxcam.eval.datasets.synthetic import CLASS_NAMES

    folder = tmp_path_factory.mktemp("synthetic_model")
    torch.manual_seed(0)
    model = build_synthetic_model("synthetic_resnet")
    torch.save(checkpoint_dict("synthetic_resnet", model, 96, CLASS_NAMES), folder / "model.pt")
    return export_synthetic_model(folder / "model.pt", folder / "synthetic_resnet.onnx")


def test_eval_run_end_to_end_resumes_and_matches_onnxcam_score(synthetic_model, tmp_path):
    from onnxcam.eval.datasets import WSOLMetadata
    from onnxcam.apps.report import COLUMNS, load_run, write_report
    from onnxcam.eval.evalset import synthetic_eval_set
    from onnxcam.eval.run import EvaluationRun
    from onnxcam.eval.scoring import score_boxes

    data = synthetic_eval_set(12, image_size=96, num_classes=12)
    options = dict(methods=["cam", "gradcam"], step=0.05, chunk_size=5, workers=0, progress=False)
    folder = EvaluationRun(synthetic_model, data, tmp_path, **options).run()
    assert sorted(p.name for p in (folder / "chunks" / "gradcam").iterdir()) == ["000000.npz", "000005.npz", "000010.npz"]

    # Resume: a lost chunk is recomputed, identically; finished ones are left alone.
    lost = folder / "chunks" / "gradcam" / "000005.npz"
    before = dict(np.load(lost))
    kept = folder / "chunks" / "gradcam" / "000010.npz"
    kept_mtime = kept.stat().st_mtime_ns
    lost.unlink()
    EvaluationRun(synthetic_model, data, tmp_path, **options).run()
    after = dict(np.load(lost))
    assert kept.stat().st_mtime_ns == kept_mtime
    for key in before:
        np.testing.assert_allclose(after[key], before[key], atol=1e-6)

    # Other options on the same folder are refused rather than mixed in.
    with pytest.raises(ValueError, match="other options"):
        EvaluationRun(synthetic_model, data, tmp_path, **{**options, "step": 0.1})

    metrics = write_report(tmp_path, n_resamples=200, progress=False)
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert list(table.columns) == COLUMNS
    assert set(table["method"]) == {"cam", "gradcam"}
    assert set(table["weighting"]) == {"relu", "abs", "abs-weights"}
    assert {"MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAccV2_IoU50", "gt_known_loc_0.15", "top1_loc_0.20", "PxAP"} <= set(table["metric"])
    assert (table["n"] == 12).all() and (table["ci_low"] <= table["ci_high"]).all()
    assert table["value"].between(0, 100).all()
    for name in ("report.md", "report.html", "diagnostics.csv", "curves_synthetic_synthetic_resnet.png"):
        assert (tmp_path / name).is_file()
    assert "MaxBoxAccV2" in (tmp_path / "report.md").read_text()

    # The run's box metrics are those `onnxcam score` computes from the same raw maps.
    run = load_run(folder)
    variant = run.variants["gradcam", "abs"]
    ids = [str(i) for i in range(len(data))]
    metadata = WSOLMetadata(
        image_ids=ids,
        image_sizes={i: (96, 96) for i in ids},
        boxes={i: data.class_boxes(k, int(run.explained[k])) for k, i in enumerate(ids)},
    )
    scores = score_boxes(dict(zip(ids, variant["raw"])), metadata, "wsol", 0.05)
    ours = metrics[(metrics["method"] == "gradcam") & (metrics["weighting"] == "abs")].set_index("metric")["value"]
    for name in ("MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU70"):
        assert ours[name] == pytest.approx(scores[name])


def test_input_gradient_methods_run_on_a_file_with_input_gradients(synthetic_model, tmp_path):
    from onnxcam.apps.report import load_run
    from onnxcam.eval.evalset import synthetic_eval_set
    from onnxcam.eval.run import EvaluationRun
    from onnxcam.export.synthetic_models import export_synthetic_model

    with_gradients = export_synthetic_model(
        synthetic_model.with_name("model.pt"), tmp_path / "with_gradients.onnx", ["plain", "guided"]
    )
    data = synthetic_eval_set(4, image_size=96, num_classes=12)
    options = dict(step=0.1, chunk_size=4, workers=0, progress=False)
    methods = ["gradcam", "saliency", "guided-gradcam"]
    both = EvaluationRun(with_gradients, data, tmp_path / "with", methods=methods, **options)
    assert {method for method, _ in load_run(both.run()).variants} == set(methods)
    # Grad-CAM ran on the graph cut to its outputs, without the input-gradient backward passes.
    assert all("input_gradients/plain" not in names for names in both.session._pruned if "gradients/layer3" in names)

    alone = EvaluationRun(synthetic_model, data, tmp_path / "without", methods=methods, **options)
    state = json.loads((alone.run() / "run.json").read_text())
    assert state["methods"]["saliency"]["skipped"] and "input_gradients" in state["methods"]["saliency"]["reason"]


def test_a_method_over_budget_runs_on_a_prefix(synthetic_model, tmp_path):
    from onnxcam.eval.evalset import synthetic_eval_set
    from onnxcam.eval.run import EvaluationRun

    data = synthetic_eval_set(10, image_size=96, num_classes=12)
    run = EvaluationRun(
        synthetic_model, data, tmp_path, methods=["gradcam"], step=0.1, chunk_size=5, workers=0,
        progress=False, method_budget_s=1e-6,
    )
    folder = run.run()
    state = json.loads((folder / "run.json").read_text())
    assert state["methods"]["gradcam"]["n"] == 5
    assert [p.name for p in (folder / "chunks" / "gradcam").iterdir()] == ["000000.npz"]
    # With workers, chunks past the prefix may be scored while the first one sizes the method:
    # the report leaves them out.
    from onnxcam.apps.report import load_run

    shutil.copy(folder / "chunks" / "gradcam" / "000000.npz", folder / "chunks" / "gradcam" / "000005.npz")
    assert len(load_run(folder).variants["gradcam", "relu"]["levels"]) == 5


def test_a_run_killed_mid_way_resumes_to_the_same_results(synthetic_model, tmp_path):
    """Kill ``onnxcam eval`` once its first result files exist; the rerun completes the rest and
    gives what an uninterrupted run gives, with no half-written result file."""
    import signal
    import subprocess
    import sys
    import time

    def command(out):
        return [
            sys.executable, "-m", "onnxcam", "eval", str(synthetic_model), "--dataset", "synthetic",
            "--images", "40", "--method", "gradcam", "--method", "gradcam++", "--chunk", "4",
            "--step", "0.05", "--workers", "0", "--metrics", "none", "--no-report", "--quiet", "--out", str(out),
        ]

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(command(interrupted), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(interrupted.glob("runs/*/*/chunks/*/*.npz")):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no result file appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = sorted(p.relative_to(interrupted) for p in interrupted.glob("runs/*/*/chunks/*/*.npz"))
    assert sum(p.parent.name == "gradcam++" for p in done_before) < 10, "the run was to be killed mid-way"

    subprocess.run(command(interrupted), check=True, capture_output=True, timeout=300)
    complete = tmp_path / "complete"
    subprocess.run(command(complete), check=True, capture_output=True, timeout=300)

    files = sorted(p.relative_to(interrupted) for p in interrupted.glob("runs/*/*/chunks/*/*.npz"))
    assert files == sorted(p.relative_to(complete) for p in complete.glob("runs/*/*/chunks/*/*.npz"))
    for method in ("gradcam", "gradcam++"):
        assert sum(p.parent.name == method for p in files) == 10  # 40 images in chunks of 4
    # SIGKILL gives a writer no chance to remove its temporary file; what matters is that no
    # result file is half-written (every one loads and matches below) and that leftovers from the
    # kill are never taken for results.
    assert all(p.name.startswith(".") for p in interrupted.rglob("*.tmp"))
    for relative in files:
        resumed, fresh = np.load(interrupted / relative), np.load(complete / relative)
        for key in fresh.files:
            np.testing.assert_allclose(resumed[key], fresh[key], atol=1e-6)


# ---- on-disk sets: streamed, unreadable images --------------------------------------------------


@pytest.fixture()
def written_set(tmp_path):
    """8 synthetic images written as a WSOL-eval folder (PNG)."""
    from onnxcam.eval.datasets.synthetic import make_synthetic_dataset
    from onnxcam.eval.datasets.writers import write_dataset

    return write_dataset(make_synthetic_dataset(8, 3, 96, 12).objects(), tmp_path / "wsol", "wsol", "png")


def test_an_on_disk_set_sends_paths_to_its_workers_not_pixels(synthetic_model, written_set, tmp_path):
    import pickle

    from onnxcam.eval.datasets.eval_sets import wsol_eval_set
    from onnxcam.eval.evalset import ImageFiles
    from onnxcam.eval.run import EvaluationRun

    data = wsol_eval_set(written_set / "metadata" / "boxes", written_set)
    assert isinstance(data.images, ImageFiles) and data.sizes == [(96, 96)] * 8
    run = EvaluationRun(synthetic_model, data, tmp_path, methods=["gradcam"], chunk_size=4, workers=0, progress=False)
    task = run._task("gradcam", 4, np.zeros(8, dtype=np.int64))
    assert task.images.paths == data.images.paths[4:8]
    assert len(pickle.dumps(task)) < 4096  # ids, paths, boxes: 4 images of 96 x 96 x 3 would be 110 kB


def test_an_unreadable_image_stops_the_run_by_name_or_is_left_out_and_counted(synthetic_model, written_set, tmp_path):
    from onnxcam.apps.report import load_run
    from onnxcam.eval.datasets.eval_sets import wsol_eval_set
    from onnxcam.eval.evalset import UnreadableImageError
    from onnxcam.eval.run import EvaluationRun

    data = wsol_eval_set(written_set / "metadata" / "boxes", written_set)
    broken = Path(data.images.paths[2])
    broken.write_bytes(b"not a picture")
    Path(data.images.paths[5]).unlink()
    options = dict(methods=["gradcam"], step=0.1, chunk_size=4, workers=0, progress=False)
    with pytest.raises(UnreadableImageError, match=rf"2 of the 8 images.*{data.ids[2]}.*{broken.name}"):
        EvaluationRun(synthetic_model, data, tmp_path / "strict", **options)

    folder = EvaluationRun(synthetic_model, data, tmp_path / "lenient", skip_missing=True, **options).run()
    state = json.loads((folder / "run.json").read_text())
    assert [image["id"] for image in state["skipped_images"]] == [data.ids[2], data.ids[5]]
    assert state["config"]["skip_missing"] is True
    run = load_run(folder)
    assert run.skipped_images == [data.ids[2], data.ids[5]] and len(run.variants["gradcam", "relu"]["levels"]) == 6
    # Resuming must find the very same images unreadable: the results would not line up otherwise.
    broken.unlink()
    with pytest.raises(ValueError, match="no longer line up"):
        EvaluationRun(synthetic_model, data, tmp_path / "lenient", skip_missing=True, **options)


# ---- map metrics: threshold-free localization, faithfulness, ROAD, sanity (issue 16) ------------


def test_cli_metric_groups_are_the_evaluations():
    from onnxcam.apps.eval_commands import METRIC_GROUPS, metric_groups
    from onnxcam.eval.chunk_metrics import METRIC_GROUPS as EVAL_GROUPS

    assert METRIC_GROUPS == EVAL_GROUPS
    assert metric_groups("none") == () and metric_groups("sanity, localization") == ("sanity", "localization")
    with pytest.raises(ValueError, match="faithfulnes'"):
        metric_groups("faithfulnes")


def test_a_run_with_metrics_stores_them_per_chunk_resumes_and_reports(synthetic_model, tmp_path):
    from onnxcam.apps.report import load_run, write_report
    from onnxcam.eval import map_localization as ml
    from onnxcam.eval.chunk_metrics import pass_scores
    from onnxcam.eval.engine import chunk_session
    from onnxcam.eval.evalset import synthetic_eval_set
    from onnxcam.eval.run import EvaluationRun

    data = synthetic_eval_set(6, image_size=96, num_classes=12)
    groups = ("localization", "faithfulness", "road", "sanity")
    # A metrics budget of nothing: faithfulness and ROAD run on one chunk, the boxes on all.
    options = dict(methods=["gradcam"], step=0.1, chunk_size=3, workers=0, progress=False, metrics=groups, metrics_budget_s=1e-9)
    folder = EvaluationRun(synthetic_model, data, tmp_path, **options).run()
    state = json.loads((folder / "run.json").read_text())
    assert state["methods"]["gradcam"]["n"] == 6
    assert state["methods"]["gradcam"]["faithfulness_n"] == state["methods"]["gradcam"]["road_n"] == 3
    first, second = folder / "chunks" / "gradcam" / "000000.npz", folder / "chunks" / "gradcam" / "000003.npz"
    with np.load(first) as chunk:
        stored = dict(chunk)
    with np.load(second) as chunk:
        assert "relu__pointing_game" in chunk.files and "relu__deletion" not in chunk.files

    # The stored numbers are the metric functions' on the same maps.
    session = chunk_session(str(synthetic_model))
    batch, _ = session.prepare([data.images[i] for i in range(3)])
    labels = load_run(folder).explained[:3]
    result = session.explain(batch, "gradcam", "abs", labels)
    masks = np.stack([np.asarray(data.masks[i]) for i in range(3)])
    np.testing.assert_allclose(stored["abs__pointing_game"], ml.pointing_game(result.maps, masks))
    np.testing.assert_allclose(stored["abs__pixel_auc"], ml.pixel_auc(result.maps, masks))
    expected = pass_scores("faithfulness", session, batch, result.maps, labels) | pass_scores("road", session, batch, result.maps, labels)
    for key, value in expected.items():
        # ROAD's imputation noise is drawn for the chunk's maps together (here abs alone): 1e-5 apart.
        np.testing.assert_allclose(stored[f"abs__{key}"], value, rtol=1e-5, atol=5e-5 if key == "road_combined" else 1e-6)

    # Resume: a chunk file without the metrics (as before they existed) is computed again, the same.
    np.savez(first, **{k: v for k, v in stored.items() if "deletion" not in k and "pointing" not in k})
    sanity = folder / "sanity" / "sanity.npz"
    sanity_mtime = sanity.stat().st_mtime_ns
    EvaluationRun(synthetic_model, data, tmp_path, **options).run()
    with np.load(first) as chunk:
        for key, value in stored.items():
            if not key.startswith("seconds__"):  # how long it took differs, of course
                np.testing.assert_allclose(chunk[key], value, rtol=1e-5, atol=1e-6)
    assert sanity.stat().st_mtime_ns == sanity_mtime  # once per model
    steps = json.loads((folder / "run.json").read_text())["sanity"]["steps"]
    assert len(list((folder / "sanity" / "models").glob("*.onnx"))) == len(steps)

    metrics = write_report(tmp_path, n_resamples=100, progress=False)
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert (table["ci_low"] <= table["value"] + 1e-9).all() and (table["value"] <= table["ci_high"] + 1e-9).all()
    by_metric = table[table["weighting"] == "abs"].set_index("metric")
    assert by_metric.loc["pointing_game", "n"] == 6 and by_metric.loc["deletion", "n"] == 3
    assert by_metric.loc["road_combined", "n"] == 3
    assert by_metric.loc["deletion", "value"] == pytest.approx(100 * expected["deletion"].mean(), rel=1e-4)
    assert by_metric.loc["average_drop", "value"] == pytest.approx(expected["average_drop"].mean(), rel=1e-4)  # percent already
    assert len(metrics) == len(table)
    assert {f"randomized_spearman_{steps[-1]:02d}", "random_logit_spearman", "random_logit_ssim"} <= set(table["metric"])
    assert "none" in set(table[table["metric"] == "random_logit_spearman"]["weighting"])
    report = (tmp_path / "report.md").read_text()
    assert report.index("answer_synthetic_synthetic_resnet.png") < report.index("## Models")  # the answer first
    for title in ("## Localization without thresholds", "## Faithfulness", "## Sanity checks"):
        assert title in report
    for name in ("answer_synthetic_synthetic_resnet.png", "sanity_synthetic_synthetic_resnet.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert "<b>" in (tmp_path / "report.html").read_text() or " *" in report


def test_marked_tables_and_findings_are_computed_from_the_rows():
    from onnxcam.apps.report_metrics import findings, marked_table

    def row(method, weighting, metric, value, half):
        return {"dataset": "s", "model": "m", "layer": "l", "method": method, "weighting": weighting, "metric": metric,
                "value": value, "ci_low": value - half, "ci_high": value + half, "n": 50}

    metrics = pd.DataFrame([
        row("gradcam", "relu", "MaxBoxAccV2", 60.0, 2), row("gradcam", "abs", "MaxBoxAccV2", 70.0, 2),
        row("cam", "relu", "MaxBoxAccV2", 50.0, 5), row("cam", "abs", "MaxBoxAccV2", 48.0, 5),
        row("gradcam", "relu", "deletion", 20.0, 1), row("gradcam", "abs", "deletion", 25.0, 1),
    ])
    header, body = marked_table(metrics, "MaxBoxAccV2")
    assert header == ["dataset", "model", "method", "n", "relu", "abs"]
    assert body[0][5] == "**70.0 [68.0, 72.0]** *" and body[1][4] == "50.0 [45.0, 55.0] *"  # cam: intervals overlap
    _, deletion = marked_table(metrics, "deletion")
    assert deletion[0][4].startswith("**20.0")  # lower deletion is better
    head, items = findings(metrics, "s", "m", "abs")
    assert "abs against relu" in head
    assert items[0] == (
        "MaxBoxAccV2: abs is better for 1 and worse for 1 of the 2 methods (same for 0), median change where they differ +4.0 points; "
        "intervals separate for 1 gains and 0 losses; largest +10.0 (gradcam)"
    )
    assert items[1].startswith("deletion AUC (lower better): abs is better for 0 and worse for 1") and "-5.0" in items[1]


def test_the_sanity_reading_names_the_failures_and_the_abs_difference():
    from onnxcam.apps.report_metrics import sanity_reading

    def row(method, weighting, metric, value):
        return {"dataset": "s", "model": "m", "layer": "l", "method": method, "weighting": weighting, "metric": metric,
                "value": value, "ci_low": value - 0.05, "ci_high": value + 0.05, "n": 16}

    rows = []
    for method, middle in (("gradcam", 0.2), ("guided-backprop", 0.7)):
        for weighting, logit in (("relu", 0.1), ("abs", 0.8)):
            rows += [row(method, weighting, "randomized_spearman_02", middle), row(method, weighting, "randomized_spearman_04", 0.1),
                     row(method, weighting, "random_logit_spearman", logit if method == "gradcam" else 0.5)]
    text = sanity_reading(pd.DataFrame(rows), "s", "m")
    assert text.startswith("With 2 of 4 layers randomized, 2 of the 4 method x weighting maps fall below")
    assert "(fail): guided-backprop relu (0.70), guided-backprop abs (0.70)" in text
    assert "for another class (random logit), abs keeps more of the original map than relu for 1 and less for 0 of 2 methods" in text
    assert "largest +0.70, gradcam" in text
