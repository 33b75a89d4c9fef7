"""dy^c/dx, the gradient of the class score with respect to the input, under the backward rules
through ReLU of ``onnxcam.contract.INPUT_GRADIENT_RULES``.

The rules are other decompositions of ``aten.threshold_backward`` (ReLU's backward) and
``aten.hardtanh_backward`` (ReLU6's) in the ``make_fx`` trace: the forward is traced once, and
each rule's ``autograd.grad`` call is traced while that rule is active, so each records its own
backward nodes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from onnxcam.contract import INPUT_GRADIENT_RULES
from onnxcam.export.backward_decompositions import gradient_decompositions
from onnxcam.export.gradient_graph import CamReadyModule

aten = torch.ops.aten
_active_rule = ["plain"]


@contextmanager
def backward_rule(rule: str) -> Iterator[None]:
    """Trace the backward of ReLU / ReLU6 with ``rule`` inside the block."""
    _active_rule.append(rule)
    try:
        yield
    finally:
        _active_rule.pop()


def _pass_where(forward_open: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """The incoming gradient where the rule lets it through, else 0."""
    rule = _active_rule[-1]
    positive = grad_output > 0
    mask = {"plain": forward_open, "guided": forward_open & positive, "deconvnet": positive}[rule]
    return torch.where(mask, grad_output, torch.zeros_like(grad_output))


def threshold_backward(grad_output: torch.Tensor, self: torch.Tensor, threshold) -> torch.Tensor:
    return _pass_where(self > threshold, grad_output)


def hardtanh_backward(grad_output: torch.Tensor, self: torch.Tensor, min_val, max_val) -> torch.Tensor:
    return _pass_where((self > min_val) & (self < max_val), grad_output)


def input_gradient_decompositions() -> dict:
    """``gradient_decompositions()`` with ReLU / ReLU6 backwards that follow the active rule."""
    return {
        **gradient_decompositions(),
        aten.threshold_backward.default: threshold_backward,
        aten.hardtanh_backward.default: hardtanh_backward,
    }


class InputGradientModule(nn.Module):
    """``CamReadyModule``'s outputs followed by d(target)/dx ``(N, C, H, W)`` for each rule.

    The model runs a second time on a leaf copy of the input; the two forwards are identical
    nodes, which ONNX Runtime's common-subexpression elimination merges.
    """

    def __init__(self, cam_module: CamReadyModule, rules: Sequence[str]):
        super().__init__()
        unknown = sorted(set(rules) - set(INPUT_GRADIENT_RULES))
        if unknown:
            raise ValueError(f"unknown input-gradient rules {unknown}; valid: {', '.join(INPUT_GRADIENT_RULES)}")
        self.cam_module = cam_module
        self.rules = list(dict.fromkeys(rules))

    def forward(self, input: torch.Tensor, class_index: torch.Tensor, *target_inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.cam_module(input, class_index, *target_inputs)
        leaf = input.detach().requires_grad_(True)
        with torch.enable_grad():
            model_outputs = self.cam_module.model(leaf)
        seed = self.cam_module.target.seed(model_outputs, class_index, *target_inputs)
        gradients = []
        for rule in self.rules:
            with backward_rule(rule):
                (gradient,) = torch.autograd.grad(
                    seed.differentiated, leaf, grad_outputs=seed.grad_outputs, retain_graph=True
                )
            gradients.append(gradient)
        return (*outputs, *gradients)
