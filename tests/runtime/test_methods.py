"""The method catalogue against pytorch-grad-cam, on the same weights and input."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from helpers.method_models import INPUT_SIZE, SmallGapNet, SmallMlpNet, export_small  # noqa: E402
from helpers.torchvision_standin import import_pytorch_grad_cam  # noqa: E402

from onnxcam.runtime import CamSession  # noqa: E402
from helpers.torch_reference import minmax  # noqa: E402
from onnxcam.contract import CLASS_INDEX, INPUT, LayerInfo, input_gradients_name  # noqa: E402
from onnxcam.graph import GraphBuilder  # noqa: E402
from onnxcam.runtime.methods import METHODS, AblationCAM, CamMethod, LayerOutputs, MethodContext, Occlusion, ScoreCAM  # noqa: E402
from onnxcam.runtime.weighting import WEIGHTINGS, graph_weighted_activation_sum  # noqa: E402
from onnxcam.runtime.methods.eigencam import first_principal_projection  # noqa: E402

pgc = import_pytorch_grad_cam()
TOLERANCE = 1e-4


def reference_maps(cam_class, model, layer_names, batch, classes, **kwargs) -> np.ndarray:
    """pytorch-grad-cam's normalised maps (N, H, W) for explicit target classes."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    modules = dict(model.named_modules())
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    # The context manager removes the reference's hooks, which would outlive the test otherwise.
    with cam_class(model=model, target_layers=[modules[name] for name in layer_names]) as cam:
        return cam(input_tensor=torch.from_numpy(batch), targets=targets, **kwargs)


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small_models")
    torch.manual_seed(3)
    gap, mlp = SmallGapNet(), SmallMlpNet()
    return {
        "gap": (gap, export_small(gap, folder, "gap", input_gradients=["plain", "guided", "deconvnet"])),
        "mlp": (mlp, export_small(mlp, folder, "mlp")),
    }


def small_batch(n: int = 3, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, *INPUT_SIZE)).astype(np.float32)


GRADIENT_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
}


@pytest.mark.parametrize("method", sorted(GRADIENT_METHODS))
def test_gradient_methods_match_pytorch_grad_cam_on_resnet18(exported_zoo_model, method):
    exported = exported_zoo_model("resnet18")
    layer = exported.entry.last_layer
    batch = np.random.default_rng(11).standard_normal((2, 3, 224, 224)).astype(np.float32)
    result = CamSession(exported.path, providers="cpu").explain(batch, method, "relu", layer=layer)
    expected = reference_maps(
        getattr(pgc, GRADIENT_METHODS[method]), exported.model, [layer], batch, result.class_index
    )
    assert result.maps.shape == expected.shape == (2, 224, 224)
    assert np.abs(result.maps - expected).max() <= TOLERANCE


def test_layercam_fuses_layers_like_pytorch_grad_cam(exported_zoo_model):
    exported = exported_zoo_model("resnet18")
    layers = [exported.entry.middle_layer, exported.entry.last_layer]
    batch = np.random.default_rng(12).standard_normal((2, 3, 224, 224)).astype(np.float32)
    result = CamSession(exported.path, providers="cpu").explain(batch, "layercam", layer=layers)
    expected = reference_maps(pgc.LayerCAM, exported.model, layers, batch, result.class_index)
    assert result.layer == ",".join(layers)
    assert np.abs(result.maps - expected).max() <= TOLERANCE


def test_eigencam_is_the_first_principal_component_with_a_fixed_sign(small_models):
    """pytorch-grad-cam leaves the SVD's arbitrary sign; onnxcam makes the projection correlate
    with the channel sum (docs/methods.md). Up to that sign the maps are the same."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    model, path = small_models["gap"]
    batch = small_batch()
    result = CamSession(path, providers="cpu").explain(batch, "eigencam", "none")
    acts = {}
    handle = model.features.register_forward_hook(lambda m, i, o: acts.update(a=o.detach().numpy()))
    with torch.no_grad():
        model(torch.from_numpy(batch))
    handle.remove()
    expected = get_2d_projection(acts["a"])
    for ours, theirs in zip(result.raw_maps, expected):
        sign = np.sign((ours * theirs).sum())
        assert np.abs(ours - sign * theirs).max() <= 1e-4 * np.abs(theirs).max()
    total = acts["a"].sum(axis=1)
    for ours, summed in zip(result.raw_maps, total):
        assert ((ours - ours.mean()) * summed).sum() >= 0


def test_eigencam_projection_pinned_on_a_rank_one_example():
    """A = u v^T (+ a constant): the centred first principal projection is u - mean(u), up to |v|."""
    u = np.array([0.0, 1.0, 2.0, 5.0])
    v = np.array([1.0, 2.0, 2.0])  # |v| = 3
    acts = (v[:, None] * u[None, :]).reshape(1, 3, 2, 2)
    projection = first_principal_projection(acts)[0].ravel()
    assert np.allclose(projection, 3.0 * (u - u.mean()))


@pytest.mark.parametrize("model_name", ["gap", "mlp"])
def test_ablationcam_head_graph_matches_pytorch_grad_cam(small_models, model_name):
    model, path = small_models[model_name]
    batch = small_batch()
    result = CamSession(path, providers="cpu").explain(batch, "ablationcam")
    expected = reference_maps(pgc.AblationCAM, model, ["features"], batch, result.class_index)
    assert np.abs(result.maps - expected).max() <= TOLERANCE


def test_ablationcam_at_a_middle_layer_runs_the_rest_of_the_network(small_models):
    model, path = small_models["gap"]
    batch = small_batch(2)
    result = CamSession(path, providers="cpu").explain(batch, AblationCAM(), layer="stem")
    expected = reference_maps(pgc.AblationCAM, model, ["stem"], batch, result.class_index)
    assert np.abs(result.maps - expected).max() <= TOLERANCE


@pytest.mark.parametrize("model_name", ["gap", "mlp"])
def test_scorecam_matches_pytorch_grad_cam(small_models, model_name):
    model, path = small_models[model_name]
    batch = small_batch()
    result = CamSession(path, providers="cpu").explain(batch, ScoreCAM(batch_size=5))
    expected = reference_maps(pgc.ScoreCAM, model, ["features"], batch, result.class_index)
    assert np.abs(result.maps - expected).max() <= TOLERANCE


def test_scorecam_on_a_vit_matches_pytorch_grad_cam(small_vit):
    """The extra forward passes run on a ViT export whose token reshapes take the batch size
    from ``class_index``'s shape (the forward graph then keeps that input)."""
    from onnxcam.export.zoo.vit import tokens_to_grid

    model, path = small_vit
    batch = np.random.default_rng(5).standard_normal((2, 3, 32, 32)).astype(np.float32)
    session = CamSession(path, providers="cpu")
    with torch.no_grad():
        np.testing.assert_allclose(session.forward_logits(batch), model(torch.from_numpy(batch)).numpy(), atol=1e-4)
    result = session.explain(batch, ScoreCAM(batch_size=8))
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = model.get_submodule("encoder.layers.encoder_layer_1.ln_1")
    with pgc.ScoreCAM(model=model, target_layers=[layer], reshape_transform=tokens_to_grid) as cam:
        cam.batch_size = 8
        targets = [ClassifierOutputTarget(int(c)) for c in result.class_index]
        expected = cam(input_tensor=torch.from_numpy(batch), targets=targets)
    assert np.abs(result.maps - expected).max() <= TOLERANCE


def test_aug_smooth_matches_pytorch_grad_cam(small_models):
    """pytorch-grad-cam averages the six de-augmented maps without renormalising; onnxcam
    renormalises the average, so the reference is renormalised here."""
    model, path = small_models["gap"]
    batch = small_batch()
    result = CamSession(path, providers="cpu").explain(batch, "gradcam", aug_smooth=True)
    expected = reference_maps(pgc.GradCAM, model, ["features"], batch, result.class_index, aug_smooth=True)
    low = expected.min(axis=(1, 2), keepdims=True)
    expected = (expected - low) / (expected.max(axis=(1, 2), keepdims=True) - low)
    assert np.abs(result.maps - expected).max() <= TOLERANCE


def test_every_method_is_registered_by_name():
    expected = {
        "cam", "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "ablationcam",
        "scorecam", "saliency", "guided-backprop", "deconvnet", "guided-gradcam", "occlusion",
        "reciprocam", "vit-reciprocam", "acol",
    }
    assert set(METHODS) == expected


def captum_reduced(attributions, weighting: str = "abs") -> np.ndarray:
    from onnxcam.runtime.methods.input_gradients import reduce_channels

    return reduce_channels(attributions.detach().numpy().astype(np.float64), weighting)



@pytest.mark.parametrize(
    ("method", "captum_class"),
    [("saliency", "Saliency"), ("guided-backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")],
)
def test_input_gradient_methods_match_captum(small_models, method, captum_class):
    captum_attr = pytest.importorskip("captum.attr")
    model, path = small_models["gap"]
    batch = small_batch()
    result = CamSession(path, providers="cpu").explain(batch, method, "abs")
    explainer = getattr(captum_attr, captum_class)(model)
    kwargs = {"abs": False} if method == "saliency" else {}
    attributions = explainer.attribute(
        torch.from_numpy(batch), target=torch.from_numpy(result.class_index), **kwargs
    )
    assert np.abs(result.maps - minmax(captum_reduced(attributions))).max() <= TOLERANCE


def test_guided_gradcam_matches_captum_with_bilinear_upsampling(small_models):
    captum_attr = pytest.importorskip("captum.attr")
    model, path = small_models["gap"]
    batch = small_batch()
    result = CamSession(path, providers="cpu").explain(batch, "guided-gradcam", "abs")
    explainer = captum_attr.GuidedGradCam(model, model.features)
    attributions = explainer.attribute(
        torch.from_numpy(batch), target=torch.from_numpy(result.class_index), interpolate_mode="bilinear"
    )
    assert np.abs(result.maps - minmax(captum_reduced(attributions))).max() <= TOLERANCE


def test_occlusion_matches_captum(small_models):
    captum_attr = pytest.importorskip("captum.attr")
    model, path = small_models["mlp"]
    batch = small_batch(2)
    result = CamSession(path, providers="cpu").explain(batch, Occlusion(window=12, stride=6), "none")
    attributions = captum_attr.Occlusion(model).attribute(
        torch.from_numpy(batch),
        sliding_window_shapes=(3, 12, 12),
        strides=(3, 6, 6),
        baselines=0.0,
        target=torch.from_numpy(result.class_index),
    )
    expected = attributions.detach().numpy()[:, 0].astype(np.float64)
    assert np.abs(result.maps - minmax(expected)).max() <= TOLERANCE


def test_prune_graph_runs_each_method_on_its_own_cut_with_the_same_maps(small_models):
    _, path = small_models["gap"]  # three input-gradient rules besides the layer's outputs
    batch = small_batch()
    full, pruned = CamSession(path, providers="cpu"), CamSession(path, providers="cpu", prune_graph=True)
    for method in ("cam", "gradcam", "saliency", "guided-backprop", "scorecam", "ablationcam"):
        expected = full.explain(batch, method, "abs").raw_maps
        np.testing.assert_allclose(pruned.explain(batch, method, "abs").raw_maps, expected, rtol=1e-5, atol=1e-6)
    # One session per set of outputs, whose graph ends at them (saliency's holds no other rule).
    assert len(pruned._pruned) >= 5
    for names, session in pruned._pruned.items():
        assert [output.name for output in session.get_outputs()] == list(names)


def test_input_gradient_method_refused_without_the_export(small_models):
    _, path = small_models["mlp"]
    with pytest.raises(ValueError, match="input_gradients=\\['guided'\\]"):
        CamSession(path, providers="cpu").explain(small_batch(1), "guided-backprop")


def test_layer_output_names_are_what_each_method_reads(small_models):
    gap = CamSession(small_models["gap"][1], providers="cpu")
    assert gap.layer_output_names("gradcam") == ["activations/features", "gradients/features"]
    assert gap.layer_output_names("cam") == ["activations/features", "cam_weights/features"]
    assert gap.layer_output_names("eigencam", "stem") == ["activations/stem"]
    assert gap.layer_output_names(ScoreCAM()) == ["activations/features"]
    with pytest.raises(ValueError, match="global-average-pool"):
        gap.layer_output_names("cam", "stem")
    with pytest.raises(ValueError, match="exported layers"):
        gap.layer_output_names("gradcam", "fc")


class NoPasses:
    """Stands in for ModelPasses: any extra pass of the model fails."""

    def __getattr__(self, name: str):
        raise AssertionError(f"an extra model pass ({name})")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_single_pass_declares_what_the_method_does(small_models, name):
    """A method with ``single_pass`` makes its maps from one run's outputs; the others run more."""
    _, path = small_models["gap"]
    session, method, batch = CamSession(path, providers="cpu"), METHODS[name](), small_batch(2)
    layer = session.metadata.layers[0]
    rule = method.input_gradient_rule
    try:
        names = ["logits", *session.layer_output_names(method), *([input_gradients_name(rule)] if rule else [])]
    except ValueError as error:  # a method for other models (ACoL's own class maps)
        pytest.skip(str(error))
    fetched = dict(zip(names, session.run(names, {INPUT: batch, CLASS_INDEX: np.full(2, -1)})))
    outputs = LayerOutputs(
        activations=fetched[layer.activations],
        gradients=fetched.get(layer.gradients),
        cam_weights=fetched.get(layer.cam_weights),
        input_gradients=fetched.get(input_gradients_name(rule)) if rule else None,
    )
    context = MethodContext(batch, fetched["logits"].argmax(axis=1), fetched["logits"], layer, NoPasses())
    try:
        method.raw_maps_by_weighting(outputs, method.weightings[:1], context)
        extra_passes = False
    except AssertionError:
        extra_passes = True
    assert method.single_pass is not extra_passes


FUSABLE = sorted(name for name, method in METHODS.items() if method.fusable())
GRAPH_WEIGHTED = sorted(name for name, method in METHODS.items() if method.graph_weights is not CamMethod.graph_weights)


def test_the_fusable_methods_are_the_single_pass_weighted_sums_and_reciprocam():
    assert FUSABLE == ["cam", "gradcam", "gradcam++", "hirescam", "layercam", "reciprocam", "xgradcam"]
    assert GRAPH_WEIGHTED == [name for name in FUSABLE if name != "reciprocam"]
    assert all(METHODS[name].single_pass for name in GRAPH_WEIGHTED)


@pytest.mark.parametrize("name", GRAPH_WEIGHTED)
def test_graph_weights_give_the_numpy_maps_in_every_weighting(name):
    """Each method's in-graph form (``graph_weights`` + the graph weighting) against its numpy form."""
    rng = np.random.default_rng(5)
    acts = np.abs(rng.standard_normal((2, 4, 3, 5))).astype(np.float32)
    grads = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    grads[0, 0] = 0.0  # Grad-CAM++'s alpha is 0 where the gradient is
    cam_weights = rng.standard_normal((2, 4)).astype(np.float32)
    layer = LayerInfo("L", (4, 3, 5), has_cam_weights=True)
    method, b = METHODS[name](), GraphBuilder(18, scope="test")
    weights = method.graph_weights(b, layer)
    maps = [graph_weighted_activation_sum(b, weights, layer.activations, w) for w in WEIGHTINGS]
    graph = onnx.helper.make_graph(
        [], "weights",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in (layer.activations, layer.gradients, layer.cam_weights)],
        [onnx.helper.make_empty_tensor_value_info(m) for m in maps],
    )
    b.add_to(graph)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    in_graph = session.run(maps, {layer.activations: acts, layer.gradients: grads, layer.cam_weights: cam_weights})
    expected = method.raw_maps_by_weighting(LayerOutputs(acts, gradients=grads, cam_weights=cam_weights), WEIGHTINGS)
    for weighting, got in zip(WEIGHTINGS, in_graph):
        np.testing.assert_allclose(got[:, 0], expected[weighting], rtol=1e-4, atol=1e-5, err_msg=weighting)
