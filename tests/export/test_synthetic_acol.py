"""ACoL on the synthetic backbone: the erasing rule in training, the exported ``acol_maps`` against
torch, and ``explain(method="acol")`` from one forward pass."""

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from onnxcam.contract import ACOL_MAPS  # noqa: E402
from onnxcam.export.synthetic_acol import DEFAULT_DELTA, SyntheticACoL, fused_maps  # noqa: E402
from onnxcam.export.synthetic_models import (  # noqa: E402
    build_synthetic_model,
    checkpoint_dict,
    export_synthetic_model,
)


def normalised(maps: np.ndarray) -> np.ndarray:
    """Min-max of each (h, w) map, written out in numpy."""
    low = maps.min(axis=(-2, -1), keepdims=True)
    return (maps - low) / (maps.max(axis=(-2, -1), keepdims=True) - low)


@pytest.mark.parametrize("delta", [DEFAULT_DELTA, 0.3])
def test_branch_b_reads_the_features_erased_exactly_where_branch_a_exceeds_delta_in_training(delta):
    torch.manual_seed(0)
    model = SyntheticACoL(12, delta=delta).train()
    seen = {}
    model.layer3.register_forward_hook(lambda m, i, o: seen.__setitem__("features", o.detach().clone()))
    model.classifier_A.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o.detach().clone()))
    model.classifier_B.register_forward_hook(lambda m, i, o: seen.__setitem__("b_input", i[0].detach().clone()))
    labels = torch.tensor([3, 0, 11, 3])
    loss, logits = model.loss(torch.randn(4, 3, 96, 96), labels)
    loss.backward()  # both branches and the backbone learn from the paper's loss
    assert model.classifier_B[0].weight.grad.abs().sum() > 0 and model.conv1.weight.grad.abs().sum() > 0
    features, a, b_input = (seen[k].numpy() for k in ("features", "a", "b_input"))
    attention = normalised(a[np.arange(4), labels.numpy()])  # (N, h, w): the ground truth's map
    erased = attention >= delta
    assert erased.any(axis=(1, 2)).all() and (~erased).any(axis=(1, 2)).all()
    np.testing.assert_array_equal(b_input, np.where(erased[:, None], 0.0, features))
    assert torch.allclose(logits, torch.from_numpy(a).mean(dim=(2, 3)))


def test_outside_training_branch_a_top1_class_is_erased_and_maps_are_the_fused_max():
    torch.manual_seed(1)
    model = SyntheticACoL(12).eval()
    with torch.no_grad():
        out = model.acol(torch.randn(3, 3, 96, 96))
    top1 = out.logits_a.argmax(dim=1).numpy()
    attention = normalised(out.maps_a.numpy()[np.arange(3), top1])
    np.testing.assert_array_equal(out.mask.numpy()[:, 0], (attention < DEFAULT_DELTA).astype(np.float32))
    expected = np.maximum(normalised(out.maps_a.numpy()), normalised(out.maps_b.numpy()))
    np.testing.assert_allclose(fused_maps(out.maps_a, out.maps_b).numpy(), expected, atol=1e-6)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A synthetic_acol checkpoint with non-trivial batch-norm statistics, exported CAM-ready."""
    torch.manual_seed(2)
    model = build_synthetic_model("synthetic_acol").train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 96, 96))
    model.eval()
    folder = tmp_path_factory.mktemp("acol")
    names = tuple(f"class{k}" for k in range(12))
    torch.save(checkpoint_dict("synthetic_acol", model, 96, names), folder / "acol.pt")
    return model, export_synthetic_model(folder / "acol.pt", folder / "acol.onnx")


def test_exported_acol_maps_equal_the_torch_fused_maps(exported):
    import onnxruntime as ort

    model, path = exported
    x = torch.randn(4, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    session = ort.InferenceSession(str(path))
    logits, maps = session.run(["logits", ACOL_MAPS], {"input": x.numpy(), "class_index": np.full(4, -1)})
    with torch.no_grad():
        out = model.acol(x)
    assert maps.shape == (4, 12, 12, 12)
    np.testing.assert_allclose(maps, out.fused.numpy(), atol=1e-5)
    np.testing.assert_allclose(logits, out.logits_a.numpy(), atol=1e-4)


def test_explain_acol_reads_the_maps_of_the_explained_class(exported):
    from onnxcam.runtime import CamSession

    model, path = exported
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    session = CamSession(path)
    with torch.no_grad():
        fused = model.acol(x).fused.numpy()
    top = session.explain(x.numpy(), method="acol")
    chosen = session.explain(x.numpy(), method="acol", class_index=[5, 7])
    assert top.maps.shape == (2, 96, 96) and 0 <= top.maps.min() and top.maps.max() <= 1
    np.testing.assert_allclose(top.raw_maps, fused[[0, 1], top.class_index], atol=1e-5)
    np.testing.assert_allclose(chosen.raw_maps, fused[[0, 1], [5, 7]], atol=1e-5)
    assert session.explain(x.numpy(), method="gradcam").maps.shape == (2, 96, 96)
    with pytest.raises(ValueError, match="weighting"):
        session.explain(x.numpy(), method="acol", weighting="abs")
    session.metadata = dataclasses.replace(session.metadata, native_maps=())
    with pytest.raises(ValueError, match="acol_maps"):
        session.explain(x.numpy(), method="acol")
