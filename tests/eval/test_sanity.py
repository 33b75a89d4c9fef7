"""Sanity checks: randomized copies against torch autograd with the same redrawn weights; map
similarity against scipy's Spearman and scikit-image's SSIM."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch")

from helpers.method_models import INPUT_SIZE, SmallMlpNet, export_small  # noqa: E402
from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS  # noqa: E402
from onnxcam.eval import map_similarity, randomize_layers  # noqa: E402
from onnxcam.eval.sanity import random_other_classes, randomizable_layers, randomization_similarity  # noqa: E402
from onnxcam.runtime import CamSession  # noqa: E402

OUTPUTS = [LOGITS, "activations/features", "gradients/features", "activations/stem", "gradients/stem"]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    torch.manual_seed(1)
    model = SmallMlpNet().eval()
    folder = tmp_path_factory.mktemp("sanity")
    return model, export_small(model, folder, "mlp"), folder


def _arrays(path) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in onnx.load(str(path)).graph.initializer}


def _parameter_homes(model, arrays) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Where each torch parameter lives in the ONNX file: (initializer, axis permutation)."""
    homes = {}
    for name, parameter in model.named_parameters():
        value = parameter.detach().numpy()
        for init, array in arrays.items():
            if array.size != value.size:
                continue
            perm = next(
                (p for p in itertools.permutations(range(value.ndim)) if np.array_equal(np.transpose(value, p).ravel(), array.ravel())),
                None,
            )
            if perm is not None:
                homes[name] = (init, perm)
                break
        assert name in homes, f"parameter {name} not found among the initializers"
    return homes


def _torch_outputs(model, batch, class_index) -> dict[str, np.ndarray]:
    """Logits, activations and dy_c/dA of the stem and features modules, by autograd."""
    captured = {}
    hooks = [getattr(model, layer).register_forward_hook(lambda m, i, o, layer=layer: captured.__setitem__(layer, o)) for layer in ("stem", "features")]
    logits = model(torch.from_numpy(batch))
    for hook in hooks:
        hook.remove()
    score = logits[torch.arange(len(batch)), torch.from_numpy(class_index)].sum()
    grads = torch.autograd.grad(score, [captured["stem"], captured["features"]])
    return {
        LOGITS: logits.detach().numpy(),
        "activations/stem": captured["stem"].detach().numpy(),
        "activations/features": captured["features"].detach().numpy(),
        "gradients/stem": grads[0].numpy(),
        "gradients/features": grads[1].numpy(),
    }


def _onnx_outputs(path, batch, class_index) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip(OUTPUTS, session.run(OUTPUTS, {INPUT: batch, CLASS_INDEX: class_index})))


def test_randomized_copies_match_autograd_of_the_redrawn_torch_model(mlp):
    """Every step's file computes what torch computes with the weights read back from it: the
    backward part follows the forward (the Gemm's folded W^T and the backward's W redrawn alike)."""
    model, path, folder = mlp
    paths = randomize_layers(path, folder / "top-down", seed=3)
    original = _arrays(path)
    homes = _parameter_homes(model, original)
    layers = randomizable_layers(onnx.load(str(path)))
    assert len(paths) == len(layers) == 4  # stem conv, features conv, two linear layers
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((3, 3, *INPUT_SIZE)).astype(np.float32)
    class_index = np.array([0, 3, 5])
    changed_before: set[str] = set()
    for step, randomized in enumerate(paths, start=1):
        arrays = _arrays(randomized)
        changed = {name for name, (init, _) in homes.items() if not np.array_equal(arrays[init], original[init])}
        assert changed_before < changed  # cumulative: each step adds a layer, keeps the earlier ones
        changed_before = changed
        redrawn = SmallMlpNet().eval()
        state = {}
        for name, (init, perm) in homes.items():
            shape = model.state_dict()[name].shape
            value = np.transpose(arrays[init].reshape([shape[k] for k in perm]), np.argsort(perm))
            state[name] = torch.from_numpy(np.array(value))
        redrawn.load_state_dict(state)
        expected = _torch_outputs(redrawn, batch, class_index)
        got = _onnx_outputs(randomized, batch, class_index)
        for name in OUTPUTS:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=f"step {step}: {name}")
    # Top-down: the first step is the last linear layer (the logits), the last step reaches the stem.
    assert {name.split(".")[0] for name in changed_before} == {"stem", "features", "head"}
    first = {name for name, (init, _) in homes.items() if not np.array_equal(_arrays(paths[0])[init], original[init])}
    assert first == {"head.3.weight", "head.3.bias"}


def test_redraws_keep_each_initializers_mean_and_std_and_the_contract(mlp):
    model, path, folder = mlp
    paths = randomize_layers(path, folder / "independent", order="independent", seed=0)
    original, arrays = _arrays(path), _arrays(paths[-1])
    changed = [name for name in original if not np.array_equal(original[name], arrays[name])]
    stem_weight = model.stem[0].weight.detach().numpy()
    assert changed and all(original[name].size in (stem_weight.size, 8) for name in changed)  # stem conv only
    weight = max(changed, key=lambda name: original[name].size)  # 216 values: the moments are close
    assert arrays[weight].mean() == pytest.approx(original[weight].mean(), abs=3 * original[weight].std() / np.sqrt(216))
    assert arrays[weight].std() == pytest.approx(original[weight].std(), rel=0.15)
    assert onnx.load(str(paths[-1])).metadata_props == onnx.load(str(path)).metadata_props
    assert CamSession(paths[0]).explain(np.zeros((1, 3, *INPUT_SIZE), np.float32)).maps.shape == (1, *INPUT_SIZE)
    again = randomize_layers(path, folder / "again", order="independent", seed=0)
    assert [p.name for p in again] == [p.name for p in paths]
    assert _arrays(again[-1]).keys() == arrays.keys()
    assert all(np.array_equal(_arrays(again[-1])[k], arrays[k]) for k in arrays)
    assert not list((folder / "again").glob(".*.tmp"))  # atomic writes leave no temporary files


def test_writes_are_atomic(mlp, monkeypatch):
    """A failing save leaves no file behind (the copies go through onnxcam.atomic_write)."""
    _, path, folder = mlp

    def broken_save(model, target):
        with open(target, "wb") as file:
            file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        randomize_layers(path, folder / "broken")
    assert not list((folder / "broken").iterdir())


def test_bad_arguments(mlp, tmp_path):
    _, path, _ = mlp
    with pytest.raises(ValueError, match="order 'bottom-up'"):
        randomize_layers(path, tmp_path, order="bottom-up")
    with pytest.raises(ValueError, match="shapes"):
        map_similarity(np.zeros((1, 8, 8)), np.zeros((1, 8, 9)))
    with pytest.raises(ValueError, match="at least 7x7"):
        map_similarity(np.zeros((1, 5, 5)), np.zeros((1, 5, 5)))
    with pytest.raises(ValueError, match="num_classes"):
        random_other_classes(np.array([0, 4]), 4)


def test_map_similarity_equals_scipy_and_scikit_image():
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.random((3, 20, 24))
    b = np.clip(a + 0.3 * rng.standard_normal(a.shape), 0, 1)
    b[2] = np.round(b[2] * 3) / 3  # ties
    spearman, ssim = map_similarity(a, b)
    for i in range(3):
        assert spearman[i] == pytest.approx(spearmanr(a[i].ravel(), b[i].ravel()).statistic, abs=1e-12)
        assert ssim[i] == pytest.approx(structural_similarity(a[i], b[i], data_range=1.0), abs=1e-10)
    same = map_similarity(a, a)
    np.testing.assert_allclose(same[0], 1)
    np.testing.assert_allclose(same[1], 1)
    constant = map_similarity(np.zeros((1, 8, 8)), a[:1, :8, :8])
    assert constant[0].tolist() == [0.0] and np.isfinite(constant[1]).all()
    # |map|: a sign flip does not change the rank correlation.
    assert map_similarity(-a, a)[0] == pytest.approx(np.ones(3))


def test_random_other_classes():
    class_index = np.arange(10) % 4
    other = random_other_classes(class_index, 4, seed=1)
    assert (other != class_index).all() and ((0 <= other) & (other < 4)).all()
    assert np.array_equal(other, random_other_classes(class_index, 4, seed=1))


def test_gradcam_fails_to_survive_randomization(mlp):
    """The check's point on a real method: Grad-CAM maps of the fully randomized model are far
    from the original ones, those of the unchanged model identical."""
    _, path, folder = mlp
    paths = randomize_layers(path, folder / "curve")
    batch = np.random.default_rng(1).standard_normal((4, 3, *INPUT_SIZE)).astype(np.float32)
    original = CamSession(path).explain(batch, "gradcam", "abs")
    spearman, ssim = randomization_similarity(
        CamSession, original.maps, [path, paths[-1]], batch, original.class_index, "gradcam", "abs"
    )
    assert spearman.shape == ssim.shape == (2, 4)
    np.testing.assert_allclose(spearman[0], 1)
    assert spearman[1].mean() < 0.9


def test_weights_behind_shape_only_ops_are_found():
    """The exporter may feed a Linear's W to the Gemm through a Transpose node (resnet18 does):
    the layer's weight is the initializer behind it; a MatMul of two activations has none."""
    from onnx import TensorProto, helper

    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "W")
    bias = numpy_helper.from_array(np.ones(2, np.float32), "b")
    nodes = [
        helper.make_node("Transpose", ["W"], ["W_t"], name="transpose"),
        helper.make_node("Gemm", [INPUT, "W_t", "b"], ["hidden"], name="gemm"),
        helper.make_node("MatMul", ["hidden", "hidden_t"], [LOGITS], name="self_product"),
        helper.make_node("Transpose", ["hidden"], ["hidden_t"], name="transpose_hidden"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, [2, 2])],
        [weight, bias],
    )
    nodes[2], nodes[3] = nodes[3], nodes[2]  # topological order
    del graph.node[:]
    graph.node.extend(nodes)
    assert randomizable_layers(helper.make_model(graph)) == [("gemm", ["W", "b"])]
