"""Model behaviour (onnxcam.eval.behaviour): receptive fields against hand-computed values and the
input-gradient footprints of torch autograd, nearest neighbours and t-SNE on synthetic_resnet, class
visualization against the same ascent in torch autograd, and the errors for bad input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers.behaviour_models import synthetic_resnet_plain  # noqa: F401  (fixture)
from onnxcam.contract import CLASS_INDEX, INPUT, activations_name
from onnxcam.eval.behaviour import (
    ReceptiveFieldError,
    activation_grid,
    chance_label_agreement,
    class_visualization,
    field_crop,
    input_to_rgb,
    max_activating_patches,
    nearest_neighbours,
    neighbour_label_agreement,
    receptive_field,
    spatial_mean,
    tsne_embedding,
)
from onnxcam.runtime import CamSession

# ---------------------------------------------------------------- receptive fields, hand-computed


def _model(nodes: list, initializers: dict[str, np.ndarray], size: int = 32) -> onnx.ModelProto:
    """A graph from ``input`` (1, 3, size, size) to ``activations/x`` (the layer "x")."""
    graph = helper.make_graph(
        nodes, "field",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(activations_name("x"), TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _conv(x: str, out: str, kernel: int, **attributes) -> object:
    return helper.make_node("Conv", [x, "w"], [out], kernel_shape=[kernel, kernel], **attributes)


WEIGHTS = {"w": np.zeros((3, 3, 3, 3), np.float32), "w1": np.zeros((3, 3, 1, 1), np.float32)}


def test_conv_pool_dilated_chain_by_hand():
    # conv k3 s2 p1: jump 2, start -1, size 3; max-pool k2 s2: jump 4, size 5;
    # conv k3 dilation 2 pad 2 (span 5): jump 4, start -1 - 2 * 4 = -9, size 5 + 4 * 4 = 21.
    model = _model([
        _conv(INPUT, "a", 3, strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("MaxPool", ["b"], ["c"], kernel_shape=[2, 2], strides=[2, 2]),
        _conv("c", activations_name("x"), 3, dilations=[2, 2], pads=[2, 2, 2, 2]),
    ], WEIGHTS)
    field = receptive_field(model, "x")
    assert (field.size, field.jump, field.start, field.layer_size) == ((21, 21), (4, 4), (-9, -9), (8, 8))
    assert field.exact and not field.whole_image
    assert field.box(0, 0) == (0, 0, 11, 11)
    assert field.box(3, 5) == (11, 3, 31, 23)


def test_branches_join_as_the_union_and_padding_ops_shift_the_field():
    # Pad 1 then an unpadded 3x3 conv is a padded conv (start -1, size 3); the 1x1 branch sees one
    # pixel; the residual Add sees both: start -1, size 3.
    pads = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    model = _model([
        helper.make_node("Pad", [INPUT, "pads"], ["p"]),
        _conv("p", "a", 3),
        helper.make_node("Conv", [INPUT, "w1"], ["b"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["a", "b"], [activations_name("x")]),
    ], {**WEIGHTS, "pads": pads})
    field = receptive_field(model, "x")
    assert (field.size, field.jump, field.start) == ((3, 3), (1, 1), (-1, -1))


def test_same_auto_padding():
    # SAME_UPPER, k3 s2 on 32: total padding (16 - 1) * 2 + 3 - 32 = 1, none before.
    model = _model([_conv(INPUT, activations_name("x"), 3, strides=[2, 2], auto_pad="SAME_UPPER")], WEIGHTS)
    field = receptive_field(model, "x")
    assert (field.size, field.jump, field.start, field.layer_size) == ((3, 3), (2, 2), (0, 0), (16, 16))


def test_squeeze_excite_makes_every_unit_see_the_whole_image():
    model = _model([
        _conv(INPUT, "a", 3, pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["a"], ["g"], name="se/pool"),
        helper.make_node("Conv", ["g", "w1"], ["s"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["s"], ["gate"]),
        helper.make_node("Mul", ["a", "gate"], [activations_name("x")]),
    ], WEIGHTS)
    field = receptive_field(model, "x")
    assert field.whole_image and field.exact and field.size is None
    assert "se/pool" in field.note and "GlobalAveragePool" in field.note
    assert field.box(0, 0) == (0, 0, 31, 31)
    assert "whole 32x32 image" in field.describe()


def test_an_op_it_cannot_follow_is_said_to_be_inexact():
    scales = np.array([1, 1, 2, 2], np.float32)
    model = _model([
        helper.make_node("Resize", [INPUT, "", "scales"], ["r"], name="upsample"),
        _conv("r", activations_name("x"), 3),
    ], {**WEIGHTS, "scales": scales})
    field = receptive_field(model, "x")
    assert field.whole_image and not field.exact and "upsample" in field.note


def test_unknown_layer_names_the_exported_ones(synthetic_resnet_plain):
    with pytest.raises(ReceptiveFieldError, match="'layer9'.*exported layers: layer3"):
        receptive_field(synthetic_resnet_plain, "layer9")


# ---------------------------------------------- receptive fields against input-gradient footprints

torch = pytest.importorskip("torch")


def _gradient_footprint(model, layer: str, image, y: int, x: int) -> np.ndarray:
    """Input pixels ``(H, W)`` whose gradient of unit ``(y, x)`` of ``layer`` is non-zero: the
    channels at that position summed with random positive weights (no cancellation)."""
    captured = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, out: captured.setdefault("a", out))
    leaf = image.clone().requires_grad_()
    try:
        with torch.enable_grad():
            model(leaf)
    finally:
        handle.remove()
    activations = captured["a"]
    weights = torch.rand(activations.shape[1], generator=torch.Generator().manual_seed(3)) + 0.5
    (gradient,) = torch.autograd.grad((activations[0, :, y, x] * weights).sum(), leaf)
    return (gradient[0].abs().sum(0) > 0).numpy()


@pytest.mark.parametrize("arch", ["resnet18", "vgg16", "mobilenet_v2"])
def test_field_holds_the_gradient_footprint_and_reaches_its_border(exported_zoo_model, arch):
    exported = exported_zoo_model(arch)
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    for layer in (exported.entry.last_layer, exported.entry.middle_layer):
        field = receptive_field(exported.path, layer)
        assert field.exact, field.note
        y, x = field.layer_size[0] // 2, field.layer_size[1] // 2
        footprint = _gradient_footprint(exported.model, layer, image, y, x)
        rows, cols = np.flatnonzero(footprint.any(1)), np.flatnonzero(footprint.any(0))
        assert (cols[0], rows[0], cols[-1], rows[-1]) == field.box(y, x), (arch, layer, field.describe())
        corners = [field.box(y, x) for y in (0, field.layer_size[0] - 1) for x in (0, field.layer_size[1] - 1)]
        assert field.whole_image == all(box == (0, 0, 223, 223) for box in corners)


# ---------------------------------------------------------------- neighbours, t-SNE, patches


def test_neighbours_by_cosine_and_agreement_by_hand():
    features = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [0.1, 3.0], [0.0, 0.0]])
    found = nearest_neighbours(features, 2, queries=[0, 2])
    assert found.indices.tolist() == [[1, 3], [3, 1]]
    assert np.allclose(found.distances[0], [1 - 2 / np.hypot(2, 0.1), 1 - 0.1 / np.hypot(0.1, 3)], atol=1e-6)
    labels = np.array([0, 0, 1, 0, 1])
    assert neighbour_label_agreement(labels, found) == 0.5
    assert chance_label_agreement(labels, [0, 2]) == pytest.approx((2 / 4 + 1 / 4) / 2)
    with pytest.raises(ValueError, match="k = 5 neighbours needs 1 <= k <= N - 1 = 4"):
        nearest_neighbours(features, 5)


@pytest.fixture(scope="module")
def synthetic_features(synthetic_resnet_plain):
    from onnxcam.eval.datasets.synthetic import SYNTHETIC_TEST_SEED, make_synthetic_dataset
    from onnxcam.runtime.inputs import preprocess_images

    session = CamSession(synthetic_resnet_plain, prune_graph=True)
    data = make_synthetic_dataset(240, SYNTHETIC_TEST_SEED, 96, 12)
    batch = preprocess_images(list(data.images), session.metadata.preprocessing)
    (activations,) = session.run([activations_name("layer3")], {INPUT: batch, CLASS_INDEX: np.full(len(batch), -1)})
    return activations, data.labels, batch


def test_neighbours_share_labels_far_above_chance_on_synthetic_resnet(synthetic_features):
    activations, labels, _ = synthetic_features
    found = nearest_neighbours(spatial_mean(activations), 5)
    agreement, chance = neighbour_label_agreement(labels, found), chance_label_agreement(labels)
    # Measured: 0.85 on these 240 held-out images, against 0.08 by chance (12 classes).
    assert chance < 0.1
    assert agreement >= 0.7


def test_tsne_is_deterministic_for_a_seed(synthetic_features):
    features = spatial_mean(synthetic_features[0][:150])
    first, second = tsne_embedding(features, seed=4), tsne_embedding(features, seed=4)
    assert np.array_equal(first.points, second.points)
    assert first.trustworthiness == second.trustworthiness
    assert 0.8 <= first.trustworthiness <= 1.0
    assert first.points.shape == (150, 2) and np.isfinite(first.points).all()


def test_tsne_caps_perplexity_for_few_images():
    features = np.random.default_rng(0).standard_normal((6, 8))
    embedding = tsne_embedding(features)
    assert embedding.perplexity == pytest.approx(5 / 3) and embedding.trust_neighbours == 2
    with pytest.raises(ValueError, match="at least 4 images"):
        tsne_embedding(features[:3])


def test_max_activating_patches_and_their_crops(synthetic_resnet_plain, synthetic_features):
    activations, _, batch = synthetic_features
    field = receptive_field(synthetic_resnet_plain, "layer3")
    hits = max_activating_patches(activations, [0, 127], 4, field)
    assert list(hits) == [0, 127]
    for channel, found in hits.items():
        peaks = activations[:, channel].max(axis=(1, 2))
        assert [hit.activation for hit in found] == pytest.approx(np.sort(peaks)[::-1][:4].tolist())
        for hit in found:
            assert activations[hit.image, channel, hit.y, hit.x] == hit.activation
            assert hit.box == field.box(hit.y, hit.x)
    image = input_to_rgb(batch[:1], CamSession(synthetic_resnet_plain).metadata.preprocessing)[0]
    crop = field_crop(image, field, 0, 0)
    assert crop.shape == (103, 103, 3)
    assert np.array_equal(crop[51:, 51:], image[: 103 - 51, : 103 - 51])  # unit (0, 0) starts 51 px outside
    assert (crop[:51] == 127).all()
    with pytest.raises(ValueError, match="channel 128 is out of range: layer3 has 128 channels"):
        max_activating_patches(activations, [3, 128], 4, field)


def test_activation_grid_normalises_each_map():
    maps = np.stack([np.full((3, 4), 5.0), np.arange(12.0).reshape(3, 4), -np.arange(12.0).reshape(3, 4)])
    grid = activation_grid(maps, columns=2, pad=1, pad_value=0.5)
    assert grid.shape == (7, 9)
    assert (grid[:3, :4] == 0).all()  # a flat map is zeros, never NaN
    assert grid[0, 5] == 0 and grid[2, 8] == 1 and grid[4, 0] == 1 and grid[3, :].tolist() == [0.5] * 9


# ---------------------------------------------------------------- class visualization


def _torch_ascent(model, start, classes, steps, learning_rate, l2, low, high):
    """The same ascent in torch autograd: ``I += lr * (dS_c/dI - 2 lambda I)``, clipped."""
    images = torch.from_numpy(start.copy())
    rows = torch.arange(len(classes))
    scores = []
    for _ in range(steps):
        leaf = images.clone().requires_grad_()
        with torch.enable_grad():
            score = model(leaf)[rows, torch.as_tensor(classes)]
            (gradient,) = torch.autograd.grad(score.sum(), leaf)
        scores.append(score.detach().numpy())
        images = torch.clamp(images + learning_rate * (gradient - 2 * l2 * images), low, high)
    return images.numpy(), np.array(scores)


def test_first_ten_steps_equal_torch_autograd(synthetic_resnet_plain):
    from onnxcam.eval.behaviour.class_visualization import input_range
    from onnxcam.export.synthetic_models import load_synthetic_checkpoint
    from helpers.behaviour_models import SYNTHETIC_RESNET

    session = CamSession(synthetic_resnet_plain, prune_graph=True)
    classes = [2, 5, 11]
    start = (0.3 * np.random.default_rng(1).standard_normal((3, 3, 96, 96))).astype(np.float32)
    result = class_visualization(
        session, classes, steps=10, learning_rate=10.0, l2=1e-3, jitter=0, blur_every=0, start=start
    )
    low, high = (torch.from_numpy(bound) for bound in input_range(session.metadata.preprocessing))
    model = load_synthetic_checkpoint(SYNTHETIC_RESNET).model
    expected, scores = _torch_ascent(model, start, classes, 10, 10.0, 1e-3, low, high)
    relative = np.linalg.norm(result.images - expected) / np.linalg.norm(expected)
    assert relative <= 1e-4, relative
    assert np.allclose(result.scores[:10], scores, rtol=1e-4, atol=1e-4)


def test_class_scores_rise_and_images_stay_finite(synthetic_resnet_plain):
    session = CamSession(synthetic_resnet_plain, prune_graph=True)
    result = class_visualization(session, [0, 4, 9], steps=40, seed=2)
    assert result.scores.shape == (41, 3)
    assert (result.scores[-1] > result.scores[0] + 1.0).all(), result.scores[[0, -1]]
    assert np.isfinite(result.images).all()
    assert input_to_rgb(result.images, session.metadata.preprocessing).shape == (3, 96, 96, 3)


def test_class_visualization_refuses_bad_input(synthetic_resnet_plain, tiny_cam_model):
    with pytest.raises(ValueError, match="tiny.onnx has no input gradients.*--input-gradients plain"):
        class_visualization(CamSession(tiny_cam_model), [0], steps=1)
    session = CamSession(synthetic_resnet_plain)
    with pytest.raises(ValueError, match="class index 12 is out of range for a model with 12 classes"):
        class_visualization(session, [3, 12], steps=1)
