"""augment_classifier: ONNX gradients from differentiating the ONNX graph vs torch autograd.

Each torch model is exported forward-only (``torch.onnx.export(dynamo=True)``), augmented at the
ONNX tensor that a named module writes, and run with batch 1 and batch 7 through the same file; the
gradients must match float64 ``torch.autograd.grad`` with one-hot ``grad_outputs`` at the same
tensor by the rule of ``torch_reference.assert_gradients_match``. Hand-built ONNX graphs cover
what torch never writes (auto_pad, Gemm transposes, old opsets).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from onnxcam.contract import (
    CLASS_INDEX,
    INPUT,
    LOGITS,
    METADATA_KEY,
    TOP1_CLASS,
    ModelMetadata,
    Preprocessing,
    activations_name,
    cam_weights_name,
    gradients_name,
)
from onnxcam.export.augment import TOKENS_TO_GRID, TokenGrid, augment_classifier
from onnxcam.export.vjp import RULES, UnsupportedOpError
from onnxcam.export.zoo import ARCHITECTURES, zoo_entry
from onnxcam.export.zoo.vit import VisionTransformer, tokens_to_grid
from helpers.torch_reference import (
    assert_gradients_match,
    autograd_layer_gradients,
    calibrated_zoo_model,
    cosine,
    exact_session,
    float64_copy,
    mean_relative_error,
    nudged_inputs,
    summary_line,
    sweep_size,
)

BATCHES = (1, 7)


# -- helpers ----------------------------------------------------------------------------------------


def export(model: nn.Module, path, shape: tuple[int, int, int]) -> str:
    """Forward-only dynamo export with a dynamic batch, the way users export classifiers."""
    torch.onnx.export(
        model.eval(),
        (torch.randn(2, *shape),),
        str(path),
        dynamo=True,
        input_names=[INPUT],
        output_names=[LOGITS],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    return str(path)


def module_tensor(model: onnx.ModelProto, module: str) -> str:
    """The ONNX tensor a torch module writes: the output of the last node in its name scope."""
    found = None
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if module in ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]")):
            found = node.output[0]
    assert found is not None, f"no node of module {module!r}"
    return found


def run(model: onnx.ModelProto | str, x: np.ndarray, classes: np.ndarray, outputs: list[str]):
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(outputs, {INPUT: x, CLASS_INDEX: classes.astype(np.int64)})


def cosine_and_error(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    assert np.abs(expected).sum() > 0, "the reference gradient is zero: the test model is degenerate"
    return cosine(actual, expected), mean_relative_error(actual, expected)


def assert_matches(actual: np.ndarray, expected: np.ndarray) -> None:
    """The acceptance bounds: cosine >= 0.9999 and mean relative error <= 1e-4."""
    assert actual.shape == expected.shape
    cosine, error = cosine_and_error(actual, expected)
    assert cosine >= 0.9999 and error <= 1e-4, f"cosine {cosine:.6f}, mean relative error {error:.2e}"


def classes_for(batch: int, num_classes: int, seed: int) -> np.ndarray:
    classes = np.random.default_rng(seed).integers(0, num_classes, batch)
    classes[::3] = TOP1_CLASS  # every third row asks for its own top-1 class
    return classes


def check_against_torch(model, onnx_path: str, modules: list[str], shape, tmp_path, reshape=None):
    """Augment at the modules' tensors and compare with torch, batch 1 and 7 through one file:
    logits and activations to float32 rounding, gradients against float64 autograd by
    :func:`torch_reference.assert_gradients_match` (kinks excused only as float32 itself misses).
    ``reshape``: torch's tokens -> grid for token layers; augment gets :data:`TOKENS_TO_GRID`."""
    exported = onnx.load(onnx_path)
    tensors = [module_tensor(exported, m) for m in modules]
    out = tmp_path / "cam.onnx"
    cam_ready = augment_classifier(onnx_path, tensors, out, reshape=TOKENS_TO_GRID if reshape else None)
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    num_classes = ModelMetadata.from_json(
        {p.key: p.value for p in cam_ready.metadata_props}[METADATA_KEY]
    ).num_classes
    session = exact_session(out)
    model64 = float64_copy(model)
    names = [name for tensor in tensors for name in (activations_name(tensor), gradients_name(tensor))]
    for batch in BATCHES:
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))
        classes = classes_for(batch, num_classes, batch)
        onnx_logits, *outputs = session.run([LOGITS, *names], {INPUT: x.numpy(), CLASS_INDEX: classes})
        explained = np.where(classes < 0, onnx_logits.argmax(1), classes)
        nudges = nudged_inputs(x.numpy())
        nudged_feeds = {INPUT: nudges.reshape(-1, *shape), CLASS_INDEX: np.tile(explained, len(nudges))}
        nudged_outputs = session.run(names, nudged_feeds)
        for i, module in enumerate(modules):
            _, torch_grad, _ = autograd_layer_gradients(model, module, x, explained)
            act, truth, logits = autograd_layer_gradients(model64, module, x.double(), explained)
            if reshape is not None:
                act, torch_grad, truth = (reshape(torch.from_numpy(a)).numpy() for a in (act, torch_grad, truth))
            onnx_act, onnx_grad = outputs[2 * i], outputs[2 * i + 1]
            # Forward values against float64 in mean relative error, as the torch route's tests do:
            # deep float32 forward errors reach 1e-4 of the scale at single entries (resnet50).
            assert mean_relative_error(onnx_logits, logits) <= 1e-4, (module, batch)
            assert mean_relative_error(onnx_act, act) <= 1e-4, (module, batch)
            nudged = nudged_outputs[2 * i + 1].reshape(len(nudges), *onnx_grad.shape)
            scores = assert_gradients_match(onnx_grad, nudged, truth, torch_grad, (module, batch))
            print(summary_line((Path(onnx_path).stem, module, batch), scores))
    return cam_ready, tensors


# -- torch models covering the rules ----------------------------------------------------------------


class Convolutions(nn.Module):
    """Strided, dilated, grouped, depthwise convs (sizes leaving remainders), Pad, unfused BN."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(16))
        self.dilated = nn.Conv2d(16, 16, 3, padding=2, dilation=2)
        self.grouped = nn.Conv2d(16, 32, 4, stride=2, groups=4)  # 17x16 -> 7x7, one row left
        self.depthwise = nn.Conv2d(32, 32, 5, stride=3, padding=1, groups=32)  # 7 -> 2, one left
        self.head = nn.Sequential(nn.Conv2d(32, 24, 1), nn.ReLU())
        self.fc = nn.Linear(24, 10)
        for bn in (self.stem[2],):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(self.dilated(x)) + x
        x = F.pad(x, (1, 0, 2, 0), value=0.5)
        x = self.head(self.depthwise(F.relu(self.grouped(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Activations(nn.Module):
    """Every activation rule after its own 1x1 conv, an SE-style multiply and Erf."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(8, 8, 1) for _ in range(10))
        self.first = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 6)

    def forward(self, x):
        x = self.first(x)
        c = iter(self.convs)
        x = F.relu6(next(c)(x) * 4)
        x = F.leaky_relu(next(c)(x), 0.1)
        x = F.hardswish(next(c)(x) * 4)
        x = x * F.hardsigmoid(next(c)(x) * 4)
        x = F.silu(next(c)(x))
        x = F.gelu(next(c)(x))
        x = F.gelu(next(c)(x), approximate="tanh")
        x = torch.sigmoid(next(c)(x)) - torch.tanh(next(c)(x))
        x = torch.erf(next(c)(x)) / 2.0
        return self.fc(F.avg_pool2d(x, 2).flatten(1))


class Blocks(nn.Module):
    """Residual add, concat, SE gate, Split, Slice, Transpose + channels-last Linear (MatMul),
    LayerNorm, Div, max/avg/adaptive pools in all their modes, Dropout, Softmax output."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.branch = nn.Conv2d(12, 12, 3, padding=1)
        self.dense = nn.Conv2d(24, 8, 3, padding=1)
        self.squeeze = nn.Conv2d(8, 4, 1)
        self.excite = nn.Conv2d(4, 8, 1)
        self.channels_last = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.classifier = nn.Sequential(nn.Linear(8 * 3 * 3, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 7))

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = x + F.relu(self.branch(x))  # residual
        x = torch.cat([x, x * 0.5 - 1.0], dim=1)  # concat (DenseNet-style)
        x = F.max_pool2d(self.dense(x), 3, 2, 1)  # 20 -> 10, overlapping windows
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(F.adaptive_avg_pool2d(x, 1)))))
        x = x * gate  # squeeze-excite
        a, b = torch.chunk(x, 2, dim=1)
        x = torch.cat([b / (a * a + 1.0) + a, a[:, :, 1:-1, :].mean(2, keepdim=True) + b], 1)
        x = self.norm(self.channels_last(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)  # 10 -> 5, last window partial
        x = F.avg_pool2d(x, 3, 1, padding=1, count_include_pad=False)
        x = F.avg_pool2d(x, 2, 2, ceil_mode=True)  # 5 -> 3
        x = F.adaptive_avg_pool2d(F.pad(x, (0, 2, 0, 2)), 3) + F.adaptive_max_pool2d(x, 3)
        return torch.softmax(self.classifier(x.flatten(1)), dim=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each test model exported once per session: (model, path, input shape)."""
    cache = {}

    def get(cls, shape):
        if cls not in cache:
            torch.manual_seed(0)
            model = cls().eval()
            cache[cls] = (model, export(model, tmp_path_factory.mktemp(cls.__name__) / "model.onnx", shape), shape)
        return cache[cls]

    return get


# -- gradients vs torch -----------------------------------------------------------------------------


def test_convolutions_match_torch(exported, tmp_path):
    model, path, shape = exported(Convolutions, (3, 29, 29))
    cam_ready, tensors = check_against_torch(model, path, ["stem", "head"], shape, tmp_path)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Conv", "BatchNormalization", "Pad"} <= ops, ops
    # The last layer feeds GAP -> Linear: CAM weights are the classifier row of the class asked.
    x = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32)
    classes = np.array([2, 9, 0])
    (weights,) = run(cam_ready, x, classes, [cam_weights_name(tensors[1])])
    np.testing.assert_allclose(weights, model.fc.weight.detach().numpy()[classes], rtol=1e-6)
    outputs = {o.name for o in cam_ready.graph.output}
    assert cam_weights_name(tensors[0]) not in outputs


def test_activations_match_torch(exported, tmp_path):
    model, path, shape = exported(Activations, (3, 8, 8))
    check_against_torch(model, path, ["first"], shape, tmp_path)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    expected = {"Clip", "LeakyRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Gelu", "Tanh", "Erf", "Div", "Sub"}
    assert expected <= ops, expected - ops


def test_blocks_match_torch(exported, tmp_path):
    model, path, shape = exported(Blocks, (3, 20, 20))
    check_against_torch(model, path, ["stem", "dense"], shape, tmp_path)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    expected = {"Concat", "Split", "Slice", "Transpose", "MatMul", "LayerNormalization", "MaxPool",
                "AveragePool", "GatherND", "Gather", "Where", "Softmax", "ReduceMean", "Mul", "Add"}
    assert expected <= ops, expected - ops


def test_top1_sentinel_gives_the_argmax_class(exported, tmp_path):
    _, path, shape = exported(Convolutions, (3, 29, 29))
    layer = module_tensor(onnx.load(path), "grouped")
    cam_ready = augment_classifier(path, layer)
    x = np.random.default_rng(1).standard_normal((4, *shape)).astype(np.float32)
    names = [LOGITS, gradients_name(layer)]
    logits, top1_grad = run(cam_ready, x, np.full(4, TOP1_CLASS), names)
    _, explicit_grad = run(cam_ready, x, logits.argmax(1), names)
    np.testing.assert_array_equal(top1_grad, explicit_grad)


def test_contract_inputs_outputs_and_metadata(exported, tmp_path):
    _, path, shape = exported(Convolutions, (3, 29, 29))
    layer = module_tensor(onnx.load(path), "head")
    cam_ready = augment_classifier(path, [layer], preprocessing=Preprocessing(input_size=(29, 29)))
    graph = cam_ready.graph
    assert [i.name for i in graph.input] == [INPUT, CLASS_INDEX]
    assert [o.name for o in graph.output] == [
        LOGITS, activations_name(layer), gradients_name(layer), cam_weights_name(layer)
    ]
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value")
    metadata = ModelMetadata.from_json({p.key: p.value for p in cam_ready.metadata_props}[METADATA_KEY])
    assert metadata.arch == "model" and metadata.num_classes == 10
    assert metadata.layer(layer).shape == (24, 2, 2) and metadata.layer(layer).has_cam_weights
    assert metadata.preprocessing.input_size == (29, 29)
    assert set(metadata.exporter) == {"onnxcam", "onnx"}
    assert cam_ready.opset_import == onnx.load(path).opset_import
    grad_nodes = [n.name for n in graph.node if n.name.startswith("onnxcam/grad/")]
    assert grad_nodes and all(n.count("/") == 3 for n in grad_nodes), grad_nodes[:5]


class BeforeSoftmax(nn.Module):
    """``inner``'s classifier output, the pre-softmax scores of a model that outputs probabilities."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        scores = {}
        hook = self.inner.classifier.register_forward_hook(lambda m, i, o: scores.update(y=o))
        try:
            self.inner(x)
        finally:
            hook.remove()
        return scores["y"]


def test_logits_named_by_the_caller(exported):
    model, path, shape = exported(Blocks, (3, 20, 20))
    forward = onnx.load(path)
    pre_softmax = next(n.input[0] for n in forward.graph.node if n.op_type == "Softmax")
    layer = module_tensor(forward, "dense")
    cam_ready = augment_classifier(path, layer, logits=pre_softmax)
    assert "Softmax" not in {n.op_type for n in cam_ready.graph.node}
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(3))
    classes = np.array([1, TOP1_CLASS, 6])
    onnx_logits, onnx_grad = run(cam_ready, x.numpy(), classes, [LOGITS, gradients_name(layer)])
    explained = np.where(classes < 0, onnx_logits.argmax(1), classes)
    _, grad, logits = autograd_layer_gradients(BeforeSoftmax(model), "inner.dense", x, explained)
    np.testing.assert_allclose(onnx_logits, logits, atol=1e-4 * np.abs(logits).max())
    assert_matches(onnx_grad, grad)


# -- errors -----------------------------------------------------------------------------------------


class WithCumsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.cumsum(self.conv(x), dim=2)
        return self.fc(x.mean((2, 3)))


def test_unsupported_op_raises_before_writing(exported, tmp_path):
    _, path, _ = exported(WithCumsum, (3, 8, 8))
    layer = module_tensor(onnx.load(path), "conv")
    out = tmp_path / "cam.onnx"
    with pytest.raises(UnsupportedOpError, match="CumSum node") as info:
        augment_classifier(path, layer, out)
    (op_type, name), = info.value.nodes
    assert op_type == "CumSum" and name in str(info.value)
    assert isinstance(info.value, ValueError)
    assert list(tmp_path.iterdir()) == []


def test_unknown_layer_lists_close_matches(exported, tmp_path):
    _, path, _ = exported(Convolutions, (3, 29, 29))
    layer = module_tensor(onnx.load(path), "dilated")
    with pytest.raises(ValueError, match=f"close matches: .*'{layer}'"):
        augment_classifier(path, layer + "x", tmp_path / "cam.onnx")
    with pytest.raises(ValueError, match="constant"):
        augment_classifier(path, "fc.weight")
    assert list(tmp_path.iterdir()) == []


# -- hand-built graphs: what torch does not write ---------------------------------------------------


def classifier(nodes, initializers, input_shape, opset=18, logits_shape=None, int64_initializers=None):
    """A hand-built model: ``input`` -> nodes -> ``logits``; ``initializers`` are float32,
    ``int64_initializers`` the shapes, axes and indices some ops take as inputs."""
    constants = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in initializers.items()]
    constants += [numpy_helper.from_array(np.asarray(v, np.int64), k) for k, v in (int64_initializers or {}).items()]
    graph = helper.make_graph(
        nodes,
        "hand",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, logits_shape)],
        constants,
    )
    # IR version 8: what ONNX Runtime 1.18, the oldest supported, loads.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def autograd_image_gradient(forward, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """d logits[i, classes[i]] / d x by torch autograd, for ``forward``: (N, ...) -> (N, K) logits."""
    xt = torch.tensor(x, requires_grad=True)
    logits = forward(xt)
    (gradient,) = torch.autograd.grad(logits, xt, F.one_hot(torch.tensor(classes), logits.shape[1]).float())
    return gradient.numpy()


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad(auto_pad):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 3, 4, 3)).astype(np.float32)
    fc = rng.standard_normal((5, 6)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["act"], auto_pad=auto_pad, strides=[2, 3]),
        helper.make_node("Tanh", ["act"], ["t"]),
        helper.make_node("GlobalAveragePool", ["t"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc"], ["scores"], transB=1),
    ]
    model = classifier(nodes, {"w": w, "fc": fc}, (3, 11, 13))
    cam_ready = augment_classifier(model, "image")
    x = rng.standard_normal((7, 3, 11, 13)).astype(np.float32)
    classes = np.arange(7) % 5
    (grad,) = run(cam_ready, x, classes, [gradients_name("image")])

    def forward(xt):
        if auto_pad == "VALID":
            padded = xt
        else:
            # SAME: output = ceil(in / stride); the odd pixel of padding goes last (UPPER) or first.
            totals = [max((-(-n // s) - 1) * s + k - n, 0) for n, s, k in ((11, 2, 4), (13, 3, 3))]
            small = [t // 2 for t in totals]
            big = [t - s for t, s in zip(totals, small)]
            first, last = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
            padded = F.pad(xt, (first[1], last[1], first[0], last[0]))
        return torch.tanh(F.conv2d(padded, torch.tensor(w), stride=(2, 3))).mean((2, 3)) @ torch.tensor(fc).T

    assert_matches(grad, autograd_image_gradient(forward, x, classes))


@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm_transposes_and_matmul(trans_a, trans_b):
    # Both Gemm operands depend on the input (B through a mean over the batch), so both of the
    # rule's branches run: flat (N, 16) @ Q (16, 3) with alpha, beta, then a MatMul to (N, 3).
    rng = np.random.default_rng(4)
    row = rng.standard_normal((1, 3)).astype(np.float32)
    right = rng.standard_normal((3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["flat_t"], perm=[1, 0]),
        helper.make_node("ReduceMean", ["flat_t", "batch_axis"], ["column"]),
        helper.make_node("Mul", ["column", "row"], ["q"]),
        helper.make_node("Transpose", ["q"], ["q_t"], perm=[1, 0]),
        helper.make_node(
            "Gemm",
            ["flat_t" if trans_a else "flat", "q_t" if trans_b else "q", "bias"],
            ["h"],
            transA=trans_a,
            transB=trans_b,
            alpha=0.7,
            beta=1.3,
        ),
        helper.make_node("MatMul", ["h", "right"], ["scores"]),
    ]
    inits = {"row": row, "right": right, "bias": np.ones(3)}
    model = classifier(nodes, inits, (4, 2, 2), logits_shape=["N", 3], int64_initializers={"batch_axis": [1]})
    cam_ready = augment_classifier(model, "image")
    x = rng.standard_normal((7, 4, 2, 2)).astype(np.float32)
    classes = np.arange(7) % 3
    (grad,) = run(cam_ready, x, classes, [gradients_name("image")])

    def forward(xt):
        flat = xt.flatten(1)
        q = flat.mean(0, keepdim=True).T * torch.tensor(row)
        return (0.7 * flat @ q + 1.3) @ torch.tensor(right)

    assert_matches(grad, autograd_image_gradient(forward, x, classes))


def test_old_opset_is_converted_and_batch_made_dynamic(tmp_path):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((4, 2)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["conv"], ["act"], min=0.0, max=6.0),
        helper.make_node("ReduceMean", ["act"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "fc"], ["scores"]),
    ]
    model = classifier(nodes, {"w": w, "fc": fc}, (3, 6, 6), opset=9)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    out = tmp_path / "cam.onnx"
    cam_ready = augment_classifier(model, ["act"], out)
    assert {o.version for o in cam_ready.opset_import if o.domain in ("", "ai.onnx")} == {13}
    x = rng.standard_normal((5, 3, 6, 6)).astype(np.float32)
    classes = np.array([0, 1, TOP1_CLASS, 1, 0])
    grad, weights = run(str(out), x, classes, [gradients_name("act"), cam_weights_name("act")])
    xt = torch.tensor(x)
    act = torch.clamp(F.conv2d(xt, torch.tensor(w), padding=1), 0, 6).requires_grad_()
    logits = act.mean((2, 3)) @ torch.tensor(fc)
    chosen = torch.where(torch.tensor(classes) < 0, logits.argmax(1), torch.tensor(classes))
    (expected,) = torch.autograd.grad(logits, act, F.one_hot(chosen, 2).float())
    assert_matches(grad, expected.numpy())
    np.testing.assert_allclose(weights, fc.T[chosen.numpy()], rtol=1e-6)
    metadata = json.loads({p.key: p.value for p in cam_ready.metadata_props}[METADATA_KEY])
    assert metadata["preprocessing"]["input_size"] == [6, 6]


def test_every_required_op_has_a_rule():
    required = {
        "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "LeakyRelu",
        "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Erf", "Gelu", "BatchNormalization",
        "GlobalAveragePool", "AveragePool", "MaxPool", "ReduceMean", "Flatten", "Reshape",
        "Transpose", "Concat", "Split", "Slice", "Squeeze", "Unsqueeze", "Dropout", "Identity",
        "Softmax", "Pad", "Abs", "LogSoftmax", "ReduceMax", "Neg", "Exp", "Log", "Sqrt",
        "Reciprocal", "Pow", "Expand",
    }
    assert required <= set(RULES), required - set(RULES)


def test_split_gather_squeeze_slice_reduce_sum():
    # Split with an unused output (its gradient is zeros), Gather with repeated 1-D indices,
    # Unsqueeze/Squeeze, a Slice with a negative start and an end past the axis, ReduceSum.
    nodes = [
        helper.make_node("Split", ["image", "sizes"], ["unused", "kept"], axis=1),
        helper.make_node("Gather", ["kept", "picked"], ["gathered"], axis=1),
        helper.make_node("Unsqueeze", ["gathered", "two"], ["unsqueezed"]),
        helper.make_node("Squeeze", ["unsqueezed", "two"], ["squeezed"]),
        helper.make_node("Slice", ["squeezed", "start", "end", "three"], ["sliced"]),
        helper.make_node("Mul", ["sliced", "sliced"], ["squared"]),
        helper.make_node("ReduceSum", ["squared", "spatial"], ["scores"], keepdims=0),
    ]
    constants = {"sizes": [1, 3], "picked": [2, 0, 2], "two": [2], "start": [-5], "end": [100], "three": [3],
                 "spatial": [2, 3]}
    model = classifier(nodes, {}, (4, 6, 6), logits_shape=["N", 3], int64_initializers=constants)
    cam_ready = augment_classifier(model, "image")
    x = np.random.default_rng(6).standard_normal((7, 4, 6, 6)).astype(np.float32)
    classes = np.arange(7) % 3
    (grad,) = run(cam_ready, x, classes, [gradients_name("image")])
    expected = autograd_image_gradient(lambda xt: (xt[:, 1:][:, [2, 0, 2]][:, :, :, 1:] ** 2).sum((2, 3)), x, classes)
    assert_matches(grad, expected)


# -- the zoo ----------------------------------------------------------------------------------------

def _zoo_params():
    # Default run: ResNet-18 at its last and middle layer; every architecture at three depths is slow.
    for arch in ARCHITECTURES:
        yield pytest.param(arch, marks=[] if arch == "resnet18" else [pytest.mark.slow])


@pytest.mark.parametrize("arch", list(_zoo_params()))
def test_zoo_forward_export_augmented_matches_torch(arch, tmp_path):
    """The forward-only export of every zoo architecture (BatchNorm calibrated, as in the torch
    route's sweep), augmented at its three layers (the ViT's through TOKENS_TO_GRID)."""
    entry = zoo_entry(arch)
    model = calibrated_zoo_model(arch)
    shape = (3, sweep_size(arch), sweep_size(arch))
    path = export(model, tmp_path / f"{arch}.onnx", shape)
    layers = [entry.last_layer, entry.middle_layer]
    if arch != "resnet18":
        layers.append(entry.early_layer)
    cam_ready, tensors = check_against_torch(model, path, layers, shape, tmp_path, reshape=entry.reshape)
    metadata = ModelMetadata.from_json({p.key: p.value for p in cam_ready.metadata_props}[METADATA_KEY])
    assert metadata.arch == arch and metadata.num_classes == 1000
    assert metadata.layer(tensors[0]).has_cam_weights == (arch in _GAP_LINEAR_HEADS)


# Architectures whose last layer feeds global average pooling + one linear layer.
_GAP_LINEAR_HEADS = {"resnet18", "resnet50", "mobilenet_v2", "efficientnet_lite0"}


# -- token layers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_vit_export(tmp_path_factory):
    """Two blocks, width 16, 2 heads, 8x8 patches on 32x32 (1 + 4x4 tokens), exported forward-only."""
    torch.manual_seed(0)
    model = VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=10).eval()
    return model, export(model, tmp_path_factory.mktemp("vit") / "vit.onnx", (3, 32, 32))


def test_token_layers_through_tokens_to_grid(small_vit_export, tmp_path):
    model, path = small_vit_export
    layers = ["encoder.layers.encoder_layer_1.ln_1", "encoder.layers.encoder_layer_0.ln_1"]
    cam_ready, tensors = check_against_torch(model, path, layers, (3, 32, 32), tmp_path, reshape=tokens_to_grid)
    metadata = ModelMetadata.from_json({p.key: p.value for p in cam_ready.metadata_props}[METADATA_KEY])
    # Recorded as export_cam_model records a reshaped layer: the grid's shape, no CAM weights.
    assert [metadata.layer(t).shape for t in tensors] == [(16, 4, 4)] * 2
    assert not any(metadata.layer(t).has_cam_weights for t in tensors)
    shapes = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in cam_ready.graph.output}
    assert shapes[gradients_name(tensors[0])][1:] == [16, 4, 4]


def test_token_layer_needs_a_fitting_reshape(small_vit_export, tmp_path):
    _, path = small_vit_export
    layer = module_tensor(onnx.load(path), "encoder.layers.encoder_layer_1.ln_1")
    with pytest.raises(ValueError, match=r"\(N, C, h, w\).*reshape=TokenGrid"):
        augment_classifier(path, layer, tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="17 tokens: not 2 prefix token"):
        augment_classifier(path, layer, tmp_path / "b.onnx", reshape=TokenGrid(prefix_tokens=2))
    with pytest.raises(ValueError, match="not target layers"):
        augment_classifier(path, layer, tmp_path / "c.onnx", reshape={"other": TOKENS_TO_GRID})
    assert list(tmp_path.iterdir()) == []


def test_token_grid_of_any_layout(small_vit_export):
    """A non-square grid after two prefix tokens lands where torch's slicing puts it."""
    _, path = small_vit_export
    layer = module_tensor(onnx.load(path), "encoder.layers.encoder_layer_1.ln_1")
    square = augment_classifier(path, layer, reshape=TOKENS_TO_GRID)
    # 17 tokens = 1 prefix token + a 2x8 grid.
    wide = augment_classifier(path, layer, reshape=TokenGrid(prefix_tokens=1, grid=(2, 8)))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    classes = np.array([3, 5])
    names = [activations_name(layer), gradients_name(layer)]
    square_outputs = run(square, x, classes, names)
    wide_outputs = run(wide, x, classes, names)
    for grid, other in zip(square_outputs, wide_outputs):
        tokens = grid.reshape(2, 16, 16).transpose(0, 2, 1)  # (N, h*w, C) patch tokens
        np.testing.assert_array_equal(other, tokens.reshape(2, 2, 8, 16).transpose(0, 3, 1, 2))


def test_cli_augment_with_reshape(small_vit_export, tmp_path, capsys):
    from onnxcam.cli import main

    _, path = small_vit_export
    layer = module_tensor(onnx.load(path), "encoder.layers.encoder_layer_1.ln_1")
    out = tmp_path / "vit.cam.onnx"
    assert main(["augment", path, "--layer", layer, "--out", str(out), "--reshape", "tokens_to_grid"]) == 0
    metadata = ModelMetadata.from_json({p.key: p.value for p in onnx.load(str(out)).metadata_props}[METADATA_KEY])
    assert metadata.layer(layer).shape == (16, 4, 4)
    assert str(out) in capsys.readouterr().out


def test_abs_strided_slice_reduce_max_log_softmax_pad():
    # Constant Pad, Abs, a Slice with steps 2 and 3 (start offset, end past the axis), ReduceMax
    # over one axis without keepdims, LogSoftmax logits: each rule against torch autograd.
    rng = np.random.default_rng(7)
    w = rng.standard_normal((12, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Pad", ["image", "pads", "half"], ["padded"]),
        helper.make_node("Abs", ["padded"], ["magnitude"]),
        helper.make_node("Slice", ["magnitude", "starts", "ends", "axes", "steps"], ["strided"]),
        helper.make_node("ReduceMax", ["strided", "last"], ["peak"], keepdims=0),
        helper.make_node("Flatten", ["peak"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["h"]),
        helper.make_node("LogSoftmax", ["h"], ["scores"], axis=1),
    ]
    constants = {"pads": [0, 0, 1, 2, 0, 0, 0, 1], "starts": [1, 0], "ends": [7, 100], "axes": [2, 3],
                 "steps": [2, 3], "last": [3]}
    model = classifier(nodes, {"w": w, "half": np.float32(0.5)}, (4, 6, 6), logits_shape=["N", 5],
                       int64_initializers=constants)
    cam_ready = augment_classifier(model, "image")
    x = rng.standard_normal((7, 4, 6, 6)).astype(np.float32)
    classes = np.arange(7) % 5
    (grad,) = run(cam_ready, x, classes, [gradients_name("image")])

    def forward(xt):
        strided = F.pad(xt, (2, 1, 1, 0), value=0.5).abs()[:, :, 1:7:2, 0::3]
        return torch.log_softmax(strided.amax(3).flatten(1) @ torch.tensor(w), dim=1)

    assert_matches(grad, autograd_image_gradient(forward, x, classes))


def test_reduce_max_splits_ties_evenly():
    # Rows 1 and 3 hold the same values, above every other row: each maximum is tied between them,
    # and torch's amax backward gives each half of the gradient (a first-wins rule would not).
    rng = np.random.default_rng(8)
    w = rng.standard_normal((4 * 5, 3)).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMax", ["image", "rows"], ["peak"], keepdims=1),
        helper.make_node("Flatten", ["peak"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["scores"]),
    ]
    model = classifier(nodes, {"w": w}, (4, 6, 5), logits_shape=["N", 3], int64_initializers={"rows": [2]})
    cam_ready = augment_classifier(model, "image")
    x = rng.standard_normal((3, 4, 6, 5)).astype(np.float32)
    x[:, :, 1] = x[:, :, 3] = x.max(2) + 1.0
    classes = np.array([0, 2, 1])
    (grad,) = run(cam_ready, x, classes, [gradients_name("image")])
    expected = autograd_image_gradient(lambda xt: xt.amax(2, keepdim=True).flatten(1) @ torch.tensor(w), x, classes)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(grad[:, :, 1], grad[:, :, 3])
    assert np.count_nonzero(np.delete(grad, [1, 3], axis=2)) == 0


def test_decomposed_normalization_and_elementwise_functions():
    # A LayerNorm over channels written out op by op (ReduceMean, Sub, Pow, Sqrt, Reciprocal), then
    # softplus as Log(1 + Exp(Neg(.))) and an Expand of per-channel means back over the map.
    rng = np.random.default_rng(9)
    w = rng.standard_normal((4 * 5 * 5, 3)).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["image", "channels"], ["mean"], keepdims=1),
        helper.make_node("Sub", ["image", "mean"], ["centered"]),
        helper.make_node("Pow", ["centered", "two"], ["squared"]),
        helper.make_node("ReduceMean", ["squared", "channels"], ["variance"], keepdims=1),
        helper.make_node("Add", ["variance", "epsilon"], ["shifted"]),
        helper.make_node("Sqrt", ["shifted"], ["root"]),
        helper.make_node("Reciprocal", ["root"], ["inverse"]),
        helper.make_node("Mul", ["centered", "inverse"], ["normalized"]),
        helper.make_node("Neg", ["normalized"], ["negated"]),
        helper.make_node("Exp", ["negated"], ["exponential"]),
        helper.make_node("Add", ["exponential", "one"], ["one_plus"]),
        helper.make_node("Log", ["one_plus"], ["softplus"]),
        helper.make_node("ReduceMean", ["softplus", "spatial"], ["pooled"], keepdims=1),
        helper.make_node("Expand", ["pooled", "map"], ["spread"]),
        helper.make_node("Mul", ["spread", "softplus"], ["gated"]),
        helper.make_node("Flatten", ["gated"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["scores"]),
    ]
    inits = {"w": w, "two": np.float32(2.0), "epsilon": np.float32(1e-3), "one": np.float32(1.0)}
    constants = {"channels": [1], "spatial": [2, 3], "map": [1, 1, 5, 5]}
    model = classifier(nodes, inits, (4, 5, 5), logits_shape=["N", 3], int64_initializers=constants)
    cam_ready = augment_classifier(model, "image")
    x = rng.standard_normal((7, 4, 5, 5)).astype(np.float32)
    classes = np.arange(7) % 3
    (grad,) = run(cam_ready, x, classes, [gradients_name("image")])

    def forward(xt):
        centered = xt - xt.mean(1, keepdim=True)
        normalized = centered * (centered.pow(2).mean(1, keepdim=True) + 1e-3).sqrt().reciprocal()
        softplus = torch.log(torch.exp(-normalized) + 1.0)
        gated = softplus.mean((2, 3), keepdim=True).expand(-1, -1, 5, 5) * softplus
        return gated.flatten(1) @ torch.tensor(w)

    assert_matches(grad, autograd_image_gradient(forward, x, classes))
