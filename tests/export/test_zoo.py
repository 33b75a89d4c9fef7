"""The model zoo: shapes, torchvision-compatible names, real EfficientNet-Lite0 predictions,
checkpoint loading, and tracing with a dynamic batch."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import skimage
import torch
from PIL import Image
from torch.export import Dim
from torch.fx.experimental.proxy_tensor import make_fx

from onnxcam.export.zoo import ARCHITECTURES, build_model, zoo_entry
from onnxcam.export.zoo.efficientnet_lite import (
    efficientnet_lite0,
    shipped_lite0_weights,
    tf_same_padding,
)

ARCHS = sorted(ARCHITECTURES)

# (C, h, w) of last_layer and middle_layer for a 224x224 input.
TARGET_SHAPES = {
    "resnet18": ((512, 7, 7), (256, 14, 14)),
    "resnet50": ((2048, 7, 7), (1024, 14, 14)),
    "vgg16": ((512, 14, 14), (512, 28, 28)),
    "mobilenet_v2": ((1280, 7, 7), (96, 14, 14)),
    "efficientnet_lite0": ((1280, 7, 7), (112, 14, 14)),
    "densenet121": ((1024, 7, 7), (1024, 14, 14)),
    "mobilenet_v3_large": ((960, 7, 7), (112, 14, 14)),
    "convnext_tiny": ((768, 7, 7), (384, 14, 14)),
    "vit_tiny": ((197, 64), (197, 64)),  # tokens: 1 class token + 14x14 patches, width 64
}

# Number of state-dict entries (each BatchNorm has 5: weight, bias, running_mean, running_var,
# num_batches_tracked; convs have no bias except in VGG):
# resnet18: stem 1+5, 8 basic blocks x 12, 3 downsamples x 6, fc 2            = 122
# resnet50: stem 6, 16 bottlenecks x 18, 4 downsamples x 6, fc 2               = 320
# vgg16: 13 convs x 2, 3 linears x 2                                           = 32
# mobilenet_v2: stem 6, t=1 block 12, 16 blocks x 18, head 6, classifier 2    = 314
# efficientnet_lite0: as its shipped checkpoint                                = 296
# densenet121: 121 BatchNorms x 5 (stem, 58 layers x 2, 3 transitions, norm5) + 120 convs
#   + classifier 2                                                            = 727
# mobilenet_v3_large: 62 Conv-BN units x 6, 8 squeeze-excites x 4, classifier 4 = 312 (torchvision's)
# convnext_tiny: stem 4, 18 blocks x 9, 3 downsamplers x 4, classifier 4     = 182
# vit_tiny: class token, conv_proj 2, pos_embedding, 4 blocks x 12, ln 2, head 2 = 56
KEY_COUNTS = {
    "resnet18": 122,
    "resnet50": 320,
    "vgg16": 32,
    "mobilenet_v2": 314,
    "efficientnet_lite0": 296,
    "densenet121": 727,
    "mobilenet_v3_large": 312,
    "convnext_tiny": 182,
    "vit_tiny": 56,
}

# Exact keys (with shapes) of torchvision's models and of the shipped Lite0 checkpoint.
PINNED_KEYS = {
    "resnet18": {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.num_batches_tracked": (),
        "layer1.1.conv2.weight": (64, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer4.1.bn2.running_var": (512,),
        "fc.weight": (1000, 512),
    },
    "resnet50": {
        "layer1.0.downsample.1.running_mean": (256,),
        "layer3.5.conv3.weight": (1024, 256, 1, 1),
        "layer4.0.conv2.weight": (512, 512, 3, 3),
        "layer4.2.bn3.bias": (2048,),
        "fc.weight": (1000, 2048),
    },
    "vgg16": {
        "features.0.weight": (64, 3, 3, 3),
        "features.28.weight": (512, 512, 3, 3),
        "features.28.bias": (512,),
        "classifier.0.weight": (4096, 25088),
        "classifier.3.weight": (4096, 4096),
        "classifier.6.bias": (1000,),
    },
    "mobilenet_v2": {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.0.1.running_mean": (32,),
        "features.1.conv.0.0.weight": (32, 1, 3, 3),
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.1.conv.2.num_batches_tracked": (),
        "features.2.conv.0.0.weight": (96, 16, 1, 1),
        "features.17.conv.3.bias": (320,),
        "features.18.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    },
    "efficientnet_lite0": {
        "_conv_stem.weight": (32, 3, 3, 3),
        "_blocks.0._depthwise_conv.weight": (32, 1, 3, 3),
        "_blocks.3._depthwise_conv.weight": (144, 1, 5, 5),
        "_blocks.15._project_conv.weight": (320, 1152, 1, 1),
        "_conv_head.weight": (1280, 320, 1, 1),
        "_bn1.running_var": (1280,),
        "_fc.weight": (1000, 1280),
    },
    "densenet121": {
        "features.conv0.weight": (64, 3, 7, 7),
        "features.denseblock1.denselayer1.norm1.weight": (64,),
        "features.denseblock4.denselayer16.conv2.weight": (32, 128, 3, 3),
        "features.transition3.conv.weight": (512, 1024, 1, 1),
        "features.norm5.running_var": (1024,),
        "classifier.weight": (1000, 1024),
    },
    "mobilenet_v3_large": {
        "features.0.0.weight": (16, 3, 3, 3),
        "features.1.block.0.0.weight": (16, 1, 3, 3),
        "features.4.block.2.fc1.weight": (24, 72, 1, 1),
        "features.4.block.2.fc2.bias": (72,),
        "features.15.block.3.1.running_mean": (160,),
        "features.16.0.weight": (960, 160, 1, 1),
        "classifier.0.weight": (1280, 960),
        "classifier.3.weight": (1000, 1280),
    },
    "convnext_tiny": {
        "features.0.0.weight": (96, 3, 4, 4),
        "features.1.0.layer_scale": (96, 1, 1),
        "features.1.0.block.0.weight": (96, 1, 7, 7),
        "features.1.0.block.2.weight": (96,),
        "features.5.8.block.3.weight": (1536, 384),
        "features.6.1.weight": (768, 384, 2, 2),
        "classifier.0.weight": (768,),
        "classifier.2.weight": (1000, 768),
    },
    "vit_tiny": {
        "class_token": (1, 1, 64),
        "conv_proj.weight": (64, 3, 16, 16),
        "encoder.pos_embedding": (1, 197, 64),
        "encoder.layers.encoder_layer_3.self_attention.in_proj_weight": (192, 64),
        "encoder.layers.encoder_layer_0.mlp.3.weight": (64, 256),
        "heads.head.weight": (1000, 64),
    },
}

# scikit-image photos and the ImageNet class the shipped Lite0 weights predict (demo_photos.json).
SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
PHOTO_TOP1 = {"chelsea.png": 285, "coffee.png": 967, "motorcycle_left.png": 665}


@functools.cache
def _model(arch: str) -> torch.nn.Module:
    """One eval-mode model per architecture for the whole file (VGG-16 alone takes ~3 s to build)."""
    torch.manual_seed(0)
    return build_model(arch)


def _photo_input(path: Path) -> torch.Tensor:
    """``(1, 3, 224, 224)``: whole image resized bilinear, ``(pixel / 255 - mean) / std``."""
    prep = zoo_entry("efficientnet_lite0").preprocessing
    image = Image.open(path).convert("RGB").resize(prep.input_size[::-1], Image.BILINEAR)
    x = (np.asarray(image, dtype=np.float32) / 255 - np.float32(prep.mean)) / np.float32(prep.std)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]


@pytest.mark.parametrize("arch", ARCHS)
def test_builds_and_names_its_target_layers(arch: str) -> None:
    model, entry = _model(arch), zoo_entry(arch)
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        modules[layer].register_forward_hook(
            lambda _m, _i, out, layer=layer: captured.__setitem__(layer, out)
        )
        for layer in (entry.last_layer, entry.middle_layer)
    ]
    try:
        with torch.no_grad():
            logits = model(torch.randn(2, 3, 224, 224))
    finally:
        for hook in hooks:
            hook.remove()
    assert not model.training
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()
    last, middle = TARGET_SHAPES[arch]
    assert captured[entry.last_layer].shape == (2, *last)
    assert captured[entry.middle_layer].shape == (2, *middle)
    assert entry.preprocessing.input_size == (224, 224) and entry.preprocessing.channel_order == "RGB"


@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_keys_follow_the_reference_names(arch: str) -> None:
    state = _model(arch).state_dict()
    assert len(state) == KEY_COUNTS[arch]
    assert {key: tuple(state[key].shape) for key in PINNED_KEYS[arch]} == PINNED_KEYS[arch]


def test_efficientnet_lite0_keys_are_the_shipped_checkpoints() -> None:
    shipped = torch.load(shipped_lite0_weights(), map_location="cpu", weights_only=True)
    assert list(efficientnet_lite0(pretrained=False).state_dict()) == list(shipped)


def test_preprocessing() -> None:
    lite = zoo_entry("efficientnet_lite0").preprocessing
    # (pixel/255 - mean) / std must equal the TF training's (pixel - 127) / 128.
    pixels = np.array([0.0, 127.0, 255.0])
    assert np.allclose((pixels / 255 - lite.mean[0]) / lite.std[0], (pixels - 127) / 128)
    assert zoo_entry("resnet50").preprocessing.mean == (0.485, 0.456, 0.406)
    labels = zoo_entry("resnet50").class_labels
    assert len(labels) == 1000 and (labels[0], labels[1], labels[999]) == ("tench", "goldfish", "toilet paper")
    assert all(entry.class_labels == labels for entry in ARCHITECTURES.values())
    assert [name for name, entry in ARCHITECTURES.items() if entry.pretrained] == ["efficientnet_lite0"]


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 3, 2, (0, 1)),  # TF puts the odd pixel after: ceil(224/2)=112 outputs need 1 pad
        (225, 3, 2, (1, 1)),
        (112, 5, 2, (1, 2)),
        (14, 5, 1, (2, 2)),  # stride 1: always (k-1)/2 each side
        (7, 3, 1, (1, 1)),
        (5, 1, 2, (0, 0)),
    ],
)
def test_tf_same_padding(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert tf_same_padding(size, kernel, stride) == expected


def test_efficientnet_lite0_at_another_input_size() -> None:
    # 'SAME' padding is computed per call, so odd sizes give ceil(H/32) cells, as in TensorFlow.
    model, captured = _model("efficientnet_lite0"), {}
    hook = model._relu_head.register_forward_hook(lambda _m, _i, out: captured.__setitem__("a", out))
    try:
        with torch.no_grad():
            logits = model(torch.randn(1, 3, 225, 250))
    finally:
        hook.remove()
    assert logits.shape == (1, 1000) and captured["a"].shape == (1, 1280, 8, 8)


@pytest.mark.parametrize(("photo", "top1"), sorted(PHOTO_TOP1.items()))
def test_efficientnet_lite0_predicts_the_skimage_photos(photo: str, top1: int) -> None:
    path = SKIMAGE_DATA / photo
    if not path.exists():
        pytest.skip(f"{photo} is not in this scikit-image install ({SKIMAGE_DATA})")
    with torch.no_grad():
        probs = _model("efficientnet_lite0")(_photo_input(path)).softmax(dim=1)[0]
    assert int(probs.argmax()) == top1
    assert float(probs[top1]) > 0.4  # measured: 0.79, 0.90, 0.49


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "module_prefix"])
def test_build_model_loads_a_checkpoint(tmp_path: Path, wrap: str) -> None:
    torch.manual_seed(1)
    state = build_model("resnet18").state_dict()
    saved = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state},
        "module_prefix": {f"module.{key}": value for key, value in state.items()},
    }[wrap]
    torch.save(saved, tmp_path / "ckpt.pth")
    loaded = build_model("resnet18", weights=tmp_path / "ckpt.pth")
    assert not loaded.training
    assert all(torch.equal(value, loaded.state_dict()[key]) for key, value in state.items())


def test_build_model_rejects_a_mismatched_checkpoint(tmp_path: Path) -> None:
    torch.save(build_model("resnet18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(RuntimeError, match="Missing key"):
        build_model("resnet50", weights=str(tmp_path / "r18.pth"))


def test_unknown_architecture_lists_the_zoo() -> None:
    with pytest.raises(ValueError, match="resnet18.*vgg16|vgg16.*resnet18"):
        zoo_entry("resnet19")
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        build_model("alexnet")


def _slow_except(fast: str) -> list[object]:
    return [arch if arch == fast else pytest.param(arch, marks=pytest.mark.slow) for arch in ARCHS]


# One fast case per tracer keeps the default suite quick: ResNet-18 has torchvision's patterns
# (in-place ReLU, shortcuts fixed at construction), Lite0 the padding computed from the input's
# shape; the other architectures add tracing time, not new patterns.
@pytest.mark.parametrize("arch", _slow_except("resnet18"))
def test_torch_export_with_a_dynamic_batch(arch: str) -> None:
    model = _model(arch)
    program = torch.export.export(
        model, (torch.randn(2, 3, 224, 224),), dynamic_shapes=({0: Dim("batch")},)
    )
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), rtol=1e-4, atol=1e-5)


def _symbolic_trace(model: torch.nn.Module) -> torch.fx.GraphModule:
    return make_fx(model, tracing_mode="symbolic", _allow_non_fake_inputs=True)(
        torch.randn(2, 3, 224, 224)
    )


@pytest.mark.parametrize("arch", _slow_except("efficientnet_lite0"))
def test_make_fx_symbolic(arch: str) -> None:
    model = _model(arch)
    graph = _symbolic_trace(model)
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(graph(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_make_fx_symbolic_then_export_with_a_dynamic_batch(arch: str) -> None:
    # The export route of the design notes: a symbolic make_fx trace, re-exported by torch.export.
    model = _model(arch)
    program = torch.export.export(
        _symbolic_trace(model), (torch.randn(2, 3, 224, 224),), dynamic_shapes=({0: Dim("batch")},)
    )
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), rtol=1e-4, atol=1e-5)
