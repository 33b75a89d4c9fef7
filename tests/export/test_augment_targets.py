"""``augment_classifier(..., target=...)``: the probability and segmentation targets written
into an ONNX graph without torch, against float64 torch autograd on the same models (the target
tests' segmenter and classifier), batch 1 and 4, by the kink rule; refusals named."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from helpers.target_models import SIZE, build_models, reference_gradients, segmentation_mask  # noqa: E402
from helpers.torch_reference import (  # noqa: E402
    assert_gradients_match,
    exact_session,
    float64_copy,
    nudged_inputs,
)

from onnxcam.contract import (  # noqa: E402
    CLASS_INDEX,
    INPUT,
    METADATA_KEY,
    TARGET_CLASS,
    TARGET_MASK,
    TARGET_SCORE,
    ModelMetadata,
    gradients_name,
)
from onnxcam.export.augment import augment_classifier  # noqa: E402


def forward_onnx(model: torch.nn.Module, shape: tuple[int, int, int], path) -> str:
    """The model's forward pass alone, dynamo-exported with a dynamic batch, as users export."""
    torch.onnx.export(
        model.eval(), (torch.randn(2, *shape),), str(path), dynamo=True, input_names=[INPUT],
        dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False,
    )
    return str(path)


def module_tensor(model: onnx.ModelProto, module: str) -> str:
    """The ONNX tensor a torch module writes: the output of the last node in its name scope."""
    scopes = [(node, {p.key: p.value for p in node.metadata_props}) for node in model.graph.node]
    return [node.output[0] for node, meta in scopes if f"'{module}'" in meta.get("pkg.torch.onnx.name_scopes", "")][-1]


@pytest.fixture(scope="module")
def models():
    return build_models()


@pytest.mark.parametrize("kind, name", [("probability", "classifier"), ("segmentation", "segmentation")])
def test_augment_target_gradients_match_autograd(models, kind, name, tmp_path):
    model, layer = models[name]
    plain = forward_onnx(model, (3, SIZE, SIZE), tmp_path / "plain.onnx")
    tensor = module_tensor(onnx.load(plain), layer)
    cam_ready = augment_classifier(plain, tensor, tmp_path / "cam.onnx", target=kind)
    metadata = ModelMetadata.from_json({p.key: p.value for p in cam_ready.metadata_props}[METADATA_KEY])
    assert metadata.target.kind == kind and not metadata.layers[0].has_cam_weights
    session = exact_session(tmp_path / "cam.onnx")
    model64 = float64_copy(model)
    grads_name = gradients_name(tensor)
    for batch_size in (1, 4):
        x = torch.randn(batch_size, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch_size))
        requested = np.array([-1, 2, -1, 0][:batch_size], dtype=np.int64)
        feeds = {INPUT: x.numpy(), CLASS_INDEX: requested}
        mask = None
        if kind == "segmentation":
            mask = segmentation_mask(batch_size, seed=batch_size)
            feeds[TARGET_MASK] = mask
        grads, scores, classes = session.run([grads_name, TARGET_SCORE, TARGET_CLASS], feeds)
        mask_torch = None if mask is None else torch.from_numpy(mask)
        torch_grads, _ = reference_gradients(kind, model, layer, x, mask_torch, requested)
        truth, truth_classes = reference_gradients(
            kind, model64, layer, x.double(), None if mask is None else mask_torch.double(), requested
        )
        assert np.array_equal(classes, truth_classes)
        nudges = nudged_inputs(x.numpy())
        nudged_feeds = {INPUT: nudges.reshape(-1, 3, SIZE, SIZE), CLASS_INDEX: np.tile(classes, len(nudges))}
        if mask is not None:
            nudged_feeds[TARGET_MASK] = np.concatenate([mask] * len(nudges))
        (nudged,) = session.run([grads_name], nudged_feeds)
        assert_gradients_match(grads, nudged.reshape(len(nudges), *grads.shape), truth, torch_grads, (kind, batch_size))


def test_augment_refuses_detection_and_a_segmentation_target_on_a_classifier(models, tmp_path):
    model, layer = models["classifier"]
    plain = forward_onnx(model, (3, SIZE, SIZE), tmp_path / "plain.onnx")
    tensor = module_tensor(onnx.load(plain), layer)
    with pytest.raises(ValueError, match=r"got 'detection' \(a detection target needs torch"):
        augment_classifier(plain, tensor, target="detection")
    with pytest.raises(ValueError, match=r"segmentation target needs per-pixel scores \(N, K, H, W\).*a classifier takes target 'logit' or 'probability'"):
        augment_classifier(plain, tensor, target="segmentation")
