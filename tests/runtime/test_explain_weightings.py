"""``CamSession.explain_weightings``: several weightings from one run and one computation of the
method's weights, each result exactly what ``explain`` returns for that weighting alone."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers.method_models import INPUT_SIZE, SmallGapNet, export_small  # noqa: E402

from onnxcam.runtime import CamSession  # noqa: E402
from onnxcam.runtime.methods import METHODS, Occlusion, ScoreCAM  # noqa: E402
from onnxcam.runtime.methods.passes import ModelPasses  # noqa: E402

EVAL_WEIGHTINGS = ("relu", "abs", "abs-weights", "none")


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> CamSession:
    torch.manual_seed(5)
    path = export_small(
        SmallGapNet(), tmp_path_factory.mktemp("weightings"), "gap",
        input_gradients=["plain", "guided", "deconvnet"], fused=[("gradcam", "relu"), ("gradcam", "abs")],
    )
    return CamSession(path)


def small_batch(n: int = 3, seed: int = 11) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, *INPUT_SIZE)).astype(np.float32)


def assert_same_result(together, alone) -> None:
    assert together.weighting == alone.weighting and together.method == alone.method
    assert together.layer == alone.layer
    np.testing.assert_array_equal(together.class_index, alone.class_index)
    np.testing.assert_array_equal(together.logits, alone.logits)
    np.testing.assert_array_equal(together.raw_maps, alone.raw_maps)
    if isinstance(alone.maps, list):
        assert len(together.maps) == len(alone.maps)
        for a, b in zip(together.maps, alone.maps):
            np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_array_equal(together.maps, alone.maps)


# vit-reciprocam needs a token layer: tests/runtime/test_reciprocam.py checks it the same way;
# acol an ACoL model's own maps (one weighting): tests/export/test_synthetic_acol.py.
@pytest.mark.parametrize("method", [name for name in METHODS if name not in ("vit-reciprocam", "acol")])
def test_every_method_matches_separate_explain_calls(session, method):
    weightings = [w for w in EVAL_WEIGHTINGS if w in METHODS[method].weightings]
    batch = small_batch()
    classes = np.array([0, 3, 5])
    results = session.explain_weightings(batch, method, weightings, classes)
    assert list(results) == weightings
    for weighting in weightings:
        assert_same_result(results[weighting], session.explain(batch, method, weighting, classes))


@pytest.mark.parametrize(
    "options",
    [
        {"layer": ["features", "stem"]},
        {"aug_smooth": True},
        {"use_fused": False},
        {"layer": "stem", "class_index": None},
    ],
    ids=["fused-layers", "aug-smooth", "numpy-path", "top1-stem"],
)
def test_options_match_separate_explain_calls(session, options):
    options = {"class_index": 2, **options}
    class_index = options.pop("class_index")
    batch = small_batch(2, seed=3)
    results = session.explain_weightings(batch, "gradcam", EVAL_WEIGHTINGS, class_index, **options)
    for weighting in EVAL_WEIGHTINGS:
        assert_same_result(results[weighting], session.explain(batch, "gradcam", weighting, class_index, **options))


def test_decoded_images_match_separate_explain_calls(session):
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (30, 41, 3), dtype=np.uint8), rng.integers(0, 256, (64, 50, 3), dtype=np.uint8)]
    results = session.explain_weightings(photos, "hirescam", ("relu", "abs"), [1, 4])
    for weighting in ("relu", "abs"):
        assert_same_result(results[weighting], session.explain(photos, "hirescam", weighting, [1, 4]))


@pytest.mark.parametrize("method", [ScoreCAM(batch_size=8), Occlusion(window=16, stride=16), "ablationcam"], ids=str)
def test_extra_passes_run_once_for_all_weightings(session, method, monkeypatch):
    calls = {"logits": 0, "ablated_scores": 0}
    for name in calls:
        original = getattr(ModelPasses, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(ModelPasses, name, counted)
    batch = small_batch(2)
    session.explain(batch, method, "relu")
    once = dict(calls)
    session.explain_weightings(batch, method, ("relu", "abs", "abs-weights"))
    assert {name: calls[name] - once[name] for name in calls} == once


def test_refuses_a_weighting_the_method_does_not_take(session):
    with pytest.raises(ValueError, match="eigencam"):
        session.explain_weightings(small_batch(1), "eigencam", ("relu", "abs-weights"))
    with pytest.raises(ValueError, match="empty"):
        session.explain_weightings(small_batch(1), "gradcam", ())
