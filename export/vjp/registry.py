"""The rule registry: one vector-Jacobian rule per ONNX op type, its typed signature, and the error
a rule (or the caller) raises for what cannot be differentiated."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import onnx
from onnx import TensorProto

if TYPE_CHECKING:
    from onnxcam.export.vjp.builder import BackwardBuilder

__all__ = ["FLOAT_TYPES", "RULES", "Grads", "Needs", "Rule", "UnsupportedOpError", "rule"]

FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16})
"""ONNX element types that carry a gradient (integer and boolean tensors carry none)."""

Grads = list[str | None]
"""Gradient tensor names, one per input or output of a node; None where there is none."""
Needs = Sequence[bool]
"""Per input of a node: whether the caller needs its gradient."""


class UnsupportedOpError(ValueError):
    """Nodes in the differentiated region that onnxcam cannot differentiate.

    ``nodes`` holds ``(op_type, node_name)`` pairs; the message names every one of them.
    """

    def __init__(self, nodes: Sequence[tuple[str, str]], reason: str):
        self.nodes = tuple(nodes)
        listed = ", ".join(f"{op_type} node {name!r}" for op_type, name in self.nodes)
        super().__init__(f"cannot differentiate {listed}: {reason}")


class Rule(Protocol):
    """``rule(b, node, grads, needs) -> input grads``.

    ``grads``: the gradients of ``node``'s outputs (None where an output gets none, e.g. an unused
    ``Split`` output); ``needs[i]``: whether input i needs its gradient. Returns one entry per input
    (None where not needed or not differentiable), emitting the nodes through ``b``.
    """

    def __call__(
        self, b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs
    ) -> Grads: ...


RULES: dict[str, Rule] = {}
"""Op type (default domain) -> its rule; filled by the op-family modules of this package."""


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    """Register the decorated function as the rule of ``op_types``."""

    def register(function: Rule) -> Rule:
        for op_type in op_types:
            RULES[op_type] = function
        return function

    return register
