"""Heatmaps fused into the graph equal the numpy path; the export options that add them."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from helpers.method_models import INPUT_SIZE, SmallGapNet, SmallMlpNet, export_small  # noqa: E402

from onnxcam.contract import METADATA_KEY, heatmap_name  # noqa: E402
from onnxcam.export.fused_heatmaps import FUSABLE_METHODS, parse_fused  # noqa: E402
from onnxcam.runtime import CamSession, WEIGHTINGS  # noqa: E402
from onnxcam.runtime.methods import METHODS  # noqa: E402

# The weighted sums (ReciproCAM, which re-runs the head, has tests/export/test_fused_reciprocam.py).
EVERY_PAIR = [(method, weighting) for method in FUSABLE_METHODS if METHODS[method].single_pass for weighting in WEIGHTINGS]


@pytest.fixture(scope="module")
def fused_gap_model(tmp_path_factory):
    torch.manual_seed(4)
    return export_small(SmallGapNet(), tmp_path_factory.mktemp("fused"), "gap_fused", fused=EVERY_PAIR)


@pytest.mark.parametrize("n", [1, 4])
def test_every_fused_map_equals_the_numpy_path(fused_gap_model, n):
    session = CamSession(fused_gap_model, providers="cpu")
    batch = np.random.default_rng(n).standard_normal((n, 3, *INPUT_SIZE)).astype(np.float32)
    for method, weighting in EVERY_PAIR:
        fused = session.explain(batch, method, weighting)
        numpy_path = session.explain(batch, method, weighting, use_fused=False)
        assert fused.maps.shape == (n, *INPUT_SIZE)
        assert np.abs(fused.maps - numpy_path.maps).max() <= 1e-5, (method, weighting)
        assert np.array_equal(fused.raw_maps, numpy_path.raw_maps)


def test_fused_outputs_are_named_and_listed_in_the_metadata(fused_gap_model):
    model = onnx.load(str(fused_gap_model))
    outputs = {o.name for o in model.graph.output}
    assert {heatmap_name(m, w) for m, w in EVERY_PAIR} <= outputs
    added = [node for node in model.graph.node if node.name.startswith("onnxcam/heatmap/")]
    assert added and len({node.name for node in added}) == len(added)
    metadata = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert {(f["method"], f["weighting"], f["layer"]) for f in metadata["fused"]} == {
        (m, w, "features") for m, w in EVERY_PAIR
    }


def test_fused_map_session_run_alone_gives_finished_maps(fused_gap_model):
    """What an edge runtime does: one run, no numpy post-processing."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(fused_gap_model), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal((2, 3, *INPUT_SIZE)).astype(np.float32)
    (maps,) = session.run([heatmap_name("gradcam", "relu")], {"input": batch, "class_index": np.array([-1, 2])})
    assert maps.shape == (2, *INPUT_SIZE)
    assert maps.min() == 0.0 and maps.max() == 1.0


def test_flat_fused_map_is_zeros_not_nan(tmp_path):
    """A zero-weight classifier gives zero gradients: a flat map, zeros in both paths."""
    torch.manual_seed(0)
    model = SmallGapNet()
    with torch.no_grad():
        model.fc.weight.zero_()
    path = export_small(model, tmp_path, "flat", fused=[("gradcam", "relu")])
    batch = np.random.default_rng(1).standard_normal((2, 3, *INPUT_SIZE)).astype(np.float32)
    result = CamSession(path, providers="cpu").explain(batch, "gradcam", class_index=0)
    assert np.array_equal(result.maps, np.zeros_like(result.maps))


def test_unfusable_requests_are_refused(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="cannot be fused"):
        export_small(SmallGapNet(), tmp_path, "bad", fused=[("scorecam", "relu")])
    with pytest.raises(ValueError, match="global-average-pool"):
        export_small(SmallMlpNet(), tmp_path, "bad", fused=[("cam", "relu")])


def test_parse_fused():
    assert parse_fused("gradcam:relu, cam:abs") == [("gradcam", "relu"), ("cam", "abs")]
    with pytest.raises(ValueError, match="method:weighting"):
        parse_fused("gradcam")
