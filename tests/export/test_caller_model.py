"""An export leaves the caller's model as it was: mode, requires_grad, hooks, weights."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from onnxcam.export import export_cam_model  # noqa: E402
from onnxcam.export.caller_model import caller_model_kept  # noqa: E402


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


def snapshot(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def assert_same(before, after):
    assert before[:3] == after[:3]
    assert before[3].keys() == after[3].keys()
    assert all(torch.equal(before[3][k], after[3][k]) for k in before[3])


def test_export_leaves_the_callers_model_as_it_was(tmp_path, capfd):
    model = small_model().train()
    model[0].weight.requires_grad_(False)
    calls = []
    model[2].register_forward_hook(lambda *args: calls.append(1))
    before = snapshot(model)
    export_cam_model(model, torch.zeros(1, 3, 16, 16), "2", tmp_path / "m.onnx")
    assert_same(before, snapshot(model))
    assert model.training and model[1].training
    assert "torchvision is not installed" not in capfd.readouterr().err


def test_in_place_changes_inside_the_block_are_undone():
    model = small_model().train()
    before = snapshot(model)
    with caller_model_kept(model):
        model.eval()
        model[0].weight.requires_grad_(False)
        with torch.no_grad():
            model[0].weight.mul_(2)
        model(torch.ones(2, 3, 8, 8))
        model[0].register_forward_hook(lambda *args: None)
    assert_same(before, snapshot(model))
