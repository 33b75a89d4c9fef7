"""ReciproCAM and ViT-ReciproCAM against the paper's definition computed directly in torch: the
layer's output masked to each position, run through the torch head, the class's score read."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers.method_models import INPUT_SIZE, SmallGapNet, SmallMlpNet, export_small  # noqa: E402

from onnxcam.runtime import CamSession  # noqa: E402
from onnxcam.runtime.methods import ReciproCAM, ViTReciproCAM  # noqa: E402
from onnxcam.runtime.methods.reciprocam import MASKS, gaussian_masks, onehot_masks  # noqa: E402

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reciprocam_models")
    torch.manual_seed(5)
    gap, mlp = SmallGapNet(), SmallMlpNet()
    return {"gap": (gap, export_small(gap, folder, "gap")), "mlp": (mlp, export_small(mlp, folder, "mlp"))}


def _scores(logits: torch.Tensor, c: int, score: str) -> np.ndarray:
    """(P, K) logits -> (P,) score of class c."""
    return (logits[:, c] if score == "logit" else torch.softmax(logits.double(), 1)[:, c]).numpy()


def cnn_reference(model, layer: str, x: np.ndarray, classes, mask: str, score: str) -> np.ndarray:
    """(N, h, w): for each position, the head after ``layer`` on its output times the mask."""
    modules = list(model.named_children())
    cut = [name for name, _ in modules].index(layer) + 1
    with torch.no_grad():
        acts = torch.from_numpy(x)
        for _, module in modules[:cut]:
            acts = module(acts)
        h, w = acts.shape[2:]
        masks = torch.from_numpy(MASKS[mask](h, w))
        maps = np.empty((len(x), h, w))
        for i, c in enumerate(classes):
            out = acts[i : i + 1] * masks[:, None]  # (P, C, h, w): copy p masked to position p
            for name, module in modules[cut:]:
                out = module(torch.flatten(out, 1) if name == "fc" else out)
            maps[i] = _scores(out, int(c), score).reshape(h, w)
    return maps


def vit_reference(model, x: np.ndarray, classes, mask: str, score: str) -> np.ndarray:
    """(N, h, w): the last block's ln_1 output and its skip input, patch tokens masked, through
    the rest of the transformer; the class token is kept."""
    block = model.encoder.layers[-1]
    captured = {}
    hook = block.register_forward_pre_hook(lambda _m, args: captured.update(x=args[0]))
    with torch.no_grad():
        model(torch.from_numpy(x))
        hook.remove()
        tokens = captured["x"]
        side = int(round((tokens.shape[1] - 1) ** 0.5))
        masks = torch.from_numpy(MASKS[mask](side, side)).flatten(1)
        weights = torch.cat([torch.ones(len(masks), 1), masks], 1)[..., None]  # (P, 1 + hw, 1)
        maps = np.empty((len(x), side, side))
        for i, c in enumerate(classes):
            skip = tokens[i : i + 1] * weights
            normed = block.ln_1(tokens[i : i + 1]) * weights
            y = block.self_attention(normed, normed, normed, need_weights=False)[0] + skip
            y = y + block.mlp(block.ln_2(y))
            logits = model.heads(model.encoder.ln(y)[:, 0])
            maps[i] = _scores(logits, int(c), score).reshape(side, side)
    return maps


def test_masks_follow_the_paper():
    assert onehot_masks(2, 3).sum(axis=(1, 2)).tolist() == [1.0] * 6
    gaussian = gaussian_masks(3, 3)
    np.testing.assert_allclose(gaussian[4], [[1 / 16, 1 / 8, 1 / 16], [1 / 8, 1 / 4, 1 / 8], [1 / 16, 1 / 8, 1 / 16]])
    np.testing.assert_allclose(gaussian[0], [[1 / 4, 1 / 8, 0], [1 / 8, 1 / 16, 0], [0, 0, 0]])


@pytest.mark.parametrize(
    "model, layer, mask, score",
    [
        ("gap", "features", "onehot", "probability"),  # global-average-pool shortcut
        ("gap", "features", "gaussian", "logit"),
        ("gap", "stem", "gaussian", "probability"),  # masked maps through a conv body
        ("mlp", "features", "onehot", "logit"),  # max-pool + MLP head
    ],
)
def test_reciprocam_is_the_masked_head_score(small_models, model, layer, mask, score):
    net, path = small_models[model]
    batch = np.random.default_rng(1).standard_normal((3, 3, *INPUT_SIZE)).astype(np.float32)
    result = CamSession(path, providers="cpu").explain(
        batch, ReciproCAM(score=score, mask=mask), "none", class_index=[0, 3, 5], layer=layer
    )
    expected = cnn_reference(net.eval(), layer, batch, [0, 3, 5], mask, score)
    assert result.raw_maps.shape == expected.shape
    assert np.abs(result.raw_maps - expected).max() <= TOLERANCE
    assert result.maps.shape == (3, *INPUT_SIZE)


@pytest.mark.parametrize("mask", ["gaussian", "onehot"])
def test_vit_reciprocam_is_the_masked_token_head_score(small_vit, mask):
    model, path = small_vit
    batch = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    result = CamSession(path, providers="cpu").explain(batch, ViTReciproCAM(mask=mask), "relu")
    expected = vit_reference(model, batch, result.class_index, mask, "probability")
    assert result.raw_maps.shape == expected.shape == (2, 4, 4)
    assert np.abs(result.raw_maps - expected).max() <= TOLERANCE


@pytest.mark.parametrize("method", ["reciprocam", "vit-reciprocam"])
def test_probability_maps_are_the_same_under_every_weighting(small_models, small_vit, method):
    path, size = (small_models["gap"][1], INPUT_SIZE) if method == "reciprocam" else (small_vit[1], (32, 32))
    session = CamSession(path, providers="cpu")
    batch = np.random.default_rng(3).standard_normal((2, 3, *size)).astype(np.float32)
    results = session.explain_weightings(batch, method, ("relu", "abs", "none"))
    assert (results["none"].raw_maps >= 0).all()
    for weighting in ("relu", "abs", "none"):
        np.testing.assert_array_equal(results[weighting].maps, session.explain(batch, method, "none").maps)


def test_bad_options_are_refused_clearly(small_models, small_vit):
    session = CamSession(small_models["gap"][1], providers="cpu")
    batch = np.zeros((1, 3, *INPUT_SIZE), np.float32)
    with pytest.raises(ValueError, match="no channel weights for 'abs-weights'"):
        session.explain(batch, "reciprocam", "abs-weights")
    with pytest.raises(ValueError, match="mask must be one of onehot, gaussian"):
        ReciproCAM(mask="square")
    with pytest.raises(ValueError, match="score must be one of probability, logit"):
        ReciproCAM(score="softmax")
    with pytest.raises(ValueError, match="not a token layer.*'reciprocam'"):
        session.explain(batch, "vit-reciprocam")
    vit = CamSession(small_vit[1], providers="cpu")
    with pytest.raises(ValueError, match="cannot be cut after it.*'vit-reciprocam'"):
        vit.explain(np.zeros((1, 3, 32, 32), np.float32), "reciprocam")
