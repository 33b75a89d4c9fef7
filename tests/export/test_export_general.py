"""The torch export route on any layer of any common architecture (issue 3, parts 1, 2 and 4).

Two kinds of evidence, both against torch autograd (``tests/helpers/torch_reference.py``):

- purpose-built modules whose chain of stages holds every op of the issue's list, with a target
  layer after each stage, all in one exported file: the gradient at a stage's output flows through
  every later stage, so a wrong backward shows up at the targets before it and names it;
- every zoo architecture at three depths (last block, middle, early), batch 1 and 7 through one
  file, at small inputs where the architecture allows (96x96; the ViT's position embedding fixes
  224x224).

Exactness (cosine >= 0.9999, mean relative error <= 1e-4 against float64 autograd, per sample,
with the kink rule of ``torch_reference.assert_gradients_match``) is measured with ORT sessions at
ORT_ENABLE_EXTENDED, which keeps the graph's NCHW layout. ORT_ENABLE_ALL, the runtime's default
for speed, swaps in NCHWc convolution kernels that sum in another order, another draw of float32
rounding and so of near-kink ReLU decisions; the default-provider session is held to cosine
>= 0.999 only.

Random-init BatchNorm networks are first calibrated (running statistics from one train-mode batch),
so activations have trained-like scales: untrained MobileNetV3's squeeze-excite and Hardswish
stages otherwise shrink activations to ~1e-9, where no ReLU or Hardswish branch is exercised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from onnxcam.contract import (  # noqa: E402
    CLASS_INDEX,
    INPUT,
    LOGITS,
    METADATA_KEY,
    TOP1_CLASS,
    ModelMetadata,
    activations_name,
    gradients_name,
)
from onnxcam.export import export_cam_model  # noqa: E402
from onnxcam.export.zoo import ARCHITECTURES, zoo_entry  # noqa: E402
from onnxcam.export.zoo.convnext import CNBlock, ConvNeXt, LayerNorm2d  # noqa: E402
from onnxcam.export.zoo.vit import VisionTransformer, tokens_to_grid  # noqa: E402
from helpers.torch_reference import (  # noqa: E402
    assert_gradients_match,
    autograd_layer_gradients,
    calibrate_batchnorm,
    calibrated_zoo_model,
    cosine,
    exact_session,
    float64_copy,
    mean_relative_error,
    nudged_inputs,
    summary_line,
    sweep_size,
)

BATCH_SIZES = (1, 7)


def assert_matches_autograd(
    model: nn.Module,
    path: Path,
    layers: Sequence[str],
    input_size: tuple[int, int],
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int = 1,
) -> None:
    """``path`` passes the full checker and, for every layer and batch size, gives autograd's
    activations and, by :func:`torch_reference.assert_gradients_match`, its float64 gradients at
    EXTENDED (each batch size through the same file), and runs on ORT's default providers at their
    default optimisation level. The explained classes are the graph's own top-1 (``TOP1_CLASS``)."""
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = exact_session(path)
    default = ort.InferenceSession(str(path), providers=ort.get_available_providers())
    model64 = float64_copy(model)
    generator = torch.Generator().manual_seed(seed)
    names = [name for layer in layers for name in (activations_name(layer), gradients_name(layer))]
    for batch_size in BATCH_SIZES:
        batch = torch.randn(batch_size, 3, *input_size, generator=generator)
        feeds = {INPUT: batch.numpy(), CLASS_INDEX: np.full(batch_size, TOP1_CLASS, dtype=np.int64)}
        logits, *outputs = session.run([LOGITS, *names], feeds)
        classes = logits.argmax(1)
        nudges = nudged_inputs(batch.numpy())
        nudged_feeds = {
            INPUT: nudges.reshape(-1, *nudges.shape[2:]), CLASS_INDEX: np.tile(classes, len(nudges))
        }
        nudged_outputs = session.run(names, nudged_feeds)
        default_outputs = default.run(names, feeds)
        for i, layer in enumerate(layers):
            ref_acts, torch_grads, _ = autograd_layer_gradients(model, layer, batch, classes)
            _, truth, _ = autograd_layer_gradients(model64, layer, batch.double(), classes)
            if reshape is not None:
                ref_acts, torch_grads, truth = (
                    reshape(torch.from_numpy(a)).numpy() for a in (ref_acts, torch_grads, truth)
                )
            acts, grads = outputs[2 * i], outputs[2 * i + 1]
            nudged = nudged_outputs[2 * i + 1].reshape(len(nudges), *grads.shape)
            where = (layer, batch_size)
            assert acts.shape == grads.shape, where
            assert mean_relative_error(acts, ref_acts) <= 1e-4, where
            scores = assert_gradients_match(grads, nudged, truth, torch_grads, where)
            print(summary_line((path.stem, *where), scores))
            assert cosine(default_outputs[2 * i + 1], truth) >= 0.999, where


def test_kink_rule_excuses_flips_but_not_wrong_rules() -> None:
    """The acceptance rule on made-up gradients: one unit flipped at the input only (a kink) is
    excused; a 1% error on every sample, the same at the nudged inputs (a wrong rule), is not."""
    truth = np.random.default_rng(0).standard_normal((3, 64, 7, 7))
    flipped = truth.copy()
    flipped[1, 2, 1, 1] += 1.5
    nudged = np.stack([truth, truth, flipped])
    scores = assert_gradients_match(flipped, nudged, truth, truth, "kink")
    assert [s.within_bounds for s in scores] == [True, False, True] and scores[1].excusable
    wrong = truth * 1.01
    with pytest.raises(AssertionError, match=r"samples \[0, 1, 2\] miss the bounds"):
        assert_gradients_match(wrong, np.stack([wrong] * 3), truth, truth, "wrong rule")
    # A kink that torch float32 shows excuses no more than twice torch's own miss.
    far = truth.copy()
    far[1] *= 1.05
    with pytest.raises(AssertionError, match=r"samples \[1\]"):
        assert_gradients_match(far, np.stack([far] * 3), truth, flipped, "beyond the spread")


# -- every op of the list, one stage each --------------------------------------------------


def _conv_bn(conv: nn.Conv2d, activation: nn.Module) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels), activation)


class _Residual(nn.Module):
    """``x + branch(x)``, added in place as torchvision's blocks do."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = _conv_bn(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        out += x
        return out


class _Concat(nn.Module):
    """DenseNet's pattern: ``cat([x, branch(x)], channels)``."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.branch = _conv_bn(nn.Conv2d(channels, growth, 3, padding=1, bias=False), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.branch(x)], 1)


class _SqueezeExcite(nn.Module):
    """``x * sigmoid(fc2(relu(fc1(gap(x)))))``, as EfficientNet's squeeze-excite."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class OpChain(nn.Module):
    """``(N, 3, 64, 64) -> (N, 10)``: one stage per op pattern; ``STAGES`` lists the stages (the
    target layers) in order, each with its output shape for a 64x64 input."""

    STAGES = {
        "strided": (16, 32, 32),  # conv 3x3 stride 2, BN, in-place ReLU
        "dilated": (16, 32, 32),  # conv 3x3 dilation 2, BN, in-place LeakyReLU
        "grouped": (32, 32, 32),  # conv 3x3 groups 4, BN, in-place ReLU6
        "depthwise": (32, 16, 16),  # depthwise conv 5x5 stride 2, BN, Hardswish
        "residual": (32, 16, 16),  # x += conv-BN-SiLU(x)
        "concat": (48, 16, 16),  # cat([x, conv-BN-GELU(x)])
        "squeeze_excite": (48, 16, 16),  # x * sigmoid(...)
        "maxpool": (48, 8, 8),  # max pool 3x3 stride 2 padding 1
        "avgpool": (48, 5, 5),  # avg pool 3x3 stride 2 padding 1, ceil mode, pads not counted
        "convnext_block": (48, 5, 5),  # dw conv 7x7, LayerNorm, Linear, GELU, Linear, += x
        "layernorm2d": (48, 5, 5),  # LayerNorm over channels of a map
        "adaptive_avgpool": (48, 3, 3),  # adaptive average pool 5x5 -> 3x3 (overlapping windows)
        "adaptive_maxpool": (48, 1, 1),  # adaptive max pool 3x3 -> 1x1 (global max pool)
    }

    def __init__(self) -> None:
        super().__init__()
        self.strided = _conv_bn(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.dilated = _conv_bn(
            nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.LeakyReLU(0.1, inplace=True)
        )
        self.grouped = _conv_bn(nn.Conv2d(16, 32, 3, padding=1, groups=4), nn.ReLU6(inplace=True))
        self.depthwise = _conv_bn(
            nn.Conv2d(32, 32, 5, stride=2, padding=2, groups=32), nn.Hardswish()
        )
        self.residual = _Residual(32)
        self.concat = _Concat(32, 16)
        self.squeeze_excite = _SqueezeExcite(48, 12)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avgpool = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.convnext_block = CNBlock(48, layer_scale=0.5, stochastic_depth_prob=0.0)
        self.layernorm2d = LayerNorm2d(48)
        self.adaptive_avgpool = nn.AdaptiveAvgPool2d(3)
        self.adaptive_maxpool = nn.AdaptiveMaxPool2d(1)
        # VGG's head: flatten, linear, ReLU, dropout, linear.
        self.classifier = nn.Sequential(
            nn.Flatten(1), nn.Linear(48, 32), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(32, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.STAGES:
            x = getattr(self, name)(x)
        return self.classifier(x)


def _randomize_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial affine parameters for every norm layer (defaults are the identity)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.2)


@pytest.fixture(scope="module")
def op_chain() -> OpChain:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = OpChain()
    _randomize_norms(model, generator)
    return calibrate_batchnorm(model, torch.randn(16, 3, 64, 64, generator=generator))


def test_every_op_stage_in_one_file(op_chain: OpChain, tmp_path: Path) -> None:
    layers = list(OpChain.STAGES)
    path = export_cam_model(op_chain, torch.zeros(1, 3, 64, 64), layers, tmp_path / "ops.onnx")
    metadata = ModelMetadata.from_json(
        {p.key: p.value for p in onnx.load(str(path)).metadata_props}[METADATA_KEY]
    )
    assert metadata.layer_names == tuple(layers)
    assert {name: metadata.layer(name).shape for name in layers} == OpChain.STAGES
    assert_matches_autograd(op_chain, path, layers, (64, 64))


def test_op_chain_exercises_both_sides_of_every_activation(op_chain: OpChain) -> None:
    """The comparison above means something only if the activations' kinks are crossed: each
    activated stage must have both negative and positive pre-activations."""
    pre_activations = {}
    # Cloned: the in-place activations that follow overwrite the BatchNorm output.
    hooks = [
        getattr(op_chain, name)[1].register_forward_hook(
            lambda _m, _i, out, name=name: pre_activations.__setitem__(name, out.clone())
        )
        for name in ("strided", "dilated", "grouped", "depthwise")
    ]
    try:
        with torch.no_grad():
            op_chain(torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    finally:
        for hook in hooks:
            hook.remove()
    for name, values in pre_activations.items():
        negative = float((values < 0).float().mean())
        assert 0.1 < negative < 0.9, (name, negative)
    # Hardswish has three pieces: below -3, between, above 3.
    depthwise = pre_activations["depthwise"]
    assert (depthwise < -3).any() or (depthwise > 3).any()


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("divisor_override", [None, 3])
def test_avg_pool_backward_decomposition(ceil_mode, count_include_pad, divisor_override) -> None:
    """The decomposition that the export uses for avg_pool2d's backward, against autograd, over
    sizes where ceil-mode windows run past the padded input and border divisors differ."""
    from onnxcam.export.backward_decompositions import avg_pool2d_backward

    generator = torch.Generator().manual_seed(0)
    for (height, width), kernel, stride, padding in [
        ((8, 7), 3, 2, 1), ((9, 5), 2, 2, 0), ((5, 8), 3, 3, 1), ((7, 7), 3, 1, 1), ((6, 9), 2, 3, 1),
    ]:
        x = torch.randn(2, 3, height, width, generator=generator, requires_grad=True)
        args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
        y = torch.nn.functional.avg_pool2d(x, *args)
        grad_output = torch.randn(y.shape, generator=generator)
        (expected,) = torch.autograd.grad(y, x, grad_output)
        got = avg_pool2d_backward(grad_output, x.detach(), [kernel] * 2, [stride] * 2, [padding] * 2,
                                  ceil_mode, count_include_pad, divisor_override)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_global_average_pool_of_a_channels_last_map(tmp_path: Path) -> None:
    """ConvNeXt's head: blocks end channels-last (a permute back), and PyTorch's global average
    pool restrides such a result with ``as_strided_``, whose gradient once exported as an
    untranslatable ``as_strided_scatter``. A two-stage ConvNeXt, LayerNorm2d head included."""
    torch.manual_seed(0)
    model = ConvNeXt(stages=((8, 1), (16, 1)), layer_scale=0.5, num_classes=5).eval()
    _randomize_norms(model, torch.Generator().manual_seed(0))
    layers = ["features.3", "features.1"]
    path = export_cam_model(model, torch.zeros(1, 3, 32, 32), layers, tmp_path / "convnext.onnx")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not any("Scatter" in op for op in ops), ops
    assert_matches_autograd(model, path, layers, (32, 32))


def test_adaptive_max_pool_with_unequal_windows_is_refused(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveMaxPool2d(2), nn.Flatten(1), nn.Linear(16, 3))
    with pytest.raises(NotImplementedError, match="adaptive max pooling from 7 to 2"):
        export_cam_model(model, torch.zeros(1, 3, 9, 9), "0", tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


# -- vision transformers: token activations through a reshape --------------------------------------


@pytest.fixture(scope="module")
def small_vit() -> VisionTransformer:
    """Two blocks, width 16, 2 heads, 8x8 patches on 32x32: 1 + 4x4 tokens."""
    torch.manual_seed(0)
    model = VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=10).eval()
    _randomize_norms(model, torch.Generator().manual_seed(0))
    return model


def test_vit_tokens_through_a_reshape(small_vit: VisionTransformer, tmp_path: Path) -> None:
    # A mapping gives each layer its own reshape; both layers here use the zoo's tokens_to_grid.
    layers = ["encoder.layers.encoder_layer_1.ln_1", "encoder.layers.encoder_layer_0.ln_1"]
    path = export_cam_model(
        small_vit, torch.zeros(1, 3, 32, 32), layers, tmp_path / "vit.onnx",
        reshape=dict.fromkeys(layers, tokens_to_grid),
    )
    metadata = ModelMetadata.from_json(
        {p.key: p.value for p in onnx.load(str(path)).metadata_props}[METADATA_KEY]
    )
    assert [metadata.layer(name).shape for name in layers] == [(16, 4, 4)] * 2
    assert not any(metadata.layer(name).has_cam_weights for name in layers)
    assert_matches_autograd(small_vit, path, layers, (32, 32), reshape=tokens_to_grid)


def test_tokens_to_grid_drops_the_class_token() -> None:
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # 1 + 2x2 tokens, C=3
    grid = tokens_to_grid(tokens)
    assert grid.shape == (2, 3, 2, 2)
    # Grid cell (i, j) is patch token 1 + 2i + j, channel c.
    assert torch.equal(grid[1, 2, 1, 0], tokens[1, 1 + 2 * 1 + 0, 2])
    with pytest.raises(ValueError, match="not 1 class token"):
        tokens_to_grid(torch.zeros(1, 6, 3))


def test_token_layer_without_reshape_is_refused(small_vit: VisionTransformer, tmp_path: Path) -> None:
    layer = "encoder.layers.encoder_layer_1.ln_1"
    with pytest.raises(ValueError, match=r"\(2, 17, 16\).*pass reshape="):
        export_cam_model(small_vit, torch.zeros(1, 3, 32, 32), layer, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="not target layers"):
        export_cam_model(
            small_vit, torch.zeros(1, 3, 32, 32), layer, tmp_path / "m.onnx",
            reshape={"encoder.ln": tokens_to_grid},
        )
    assert not list(tmp_path.iterdir()), "nothing may be written on failure"


# -- every zoo architecture at three depths ---------------------------------------------------------

# Default run: one classic CNN (ResNet-18) and the richest modern op mix (MobileNetV3: depthwise,
# squeeze-excite, Hardswish/Hardsigmoid); the others add export time more than new patterns.
_DEFAULT_ARCHS = {"resnet18", "mobilenet_v3_large"}


@pytest.mark.parametrize(
    "arch",
    [
        a if a in _DEFAULT_ARCHS
        else pytest.param(a, marks=pytest.mark.slow)
        for a in ARCHITECTURES
    ],
)
def test_zoo_architecture_at_three_depths(arch: str, tmp_path: Path) -> None:
    entry = zoo_entry(arch)
    model = calibrated_zoo_model(arch)
    size = sweep_size(arch)
    layers = [entry.last_layer, entry.middle_layer, entry.early_layer]
    path = export_cam_model(
        model, torch.zeros(1, 3, size, size), layers, tmp_path / f"{arch}.onnx",
        arch=arch, reshape=entry.reshape,
    )
    assert_matches_autograd(model, path, layers, (size, size), reshape=entry.reshape)
