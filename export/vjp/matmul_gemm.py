"""Linear layers: ``Gemm`` (every transpose flag as one Gemm) and ``MatMul`` (batched, broadcast)."""

from __future__ import annotations

import onnx

from onnxcam.export.vjp.builder import BackwardBuilder
from onnxcam.export.vjp.registry import Grads, Needs, rule
from onnxcam.graph import attribute, optional_input


@rule("Gemm")
def _gemm(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    a, w = node.input[:2]
    c = optional_input(node, 2)
    g = grads[0]
    alpha, beta = attribute(node, "alpha", 1.0), attribute(node, "beta", 1.0)
    trans_a, trans_w = attribute(node, "transA", 0), attribute(node, "transB", 0)
    grad_a = grad_w = grad_c = None
    # Y = alpha A' W' + beta C with A' = A^T if transA (W' likewise); each case is one Gemm.
    if needs[0]:
        grad_a = (
            b.op("Gemm", w, g, alpha=alpha, transA=trans_w, transB=1)
            if trans_a
            else b.op("Gemm", g, w, alpha=alpha, transB=1 - trans_w)
        )
    if needs[1]:
        grad_w = (
            b.op("Gemm", g, a, alpha=alpha, transA=1, transB=trans_a)
            if trans_w
            else b.op("Gemm", a, g, alpha=alpha, transA=1 - trans_a)
        )
    if c and needs[2]:
        grad_c = b.unbroadcast(b.op("Mul", g, b.const(beta)), c, node.output[0])
    return [grad_a, grad_w, grad_c]


def _swap_last(b: BackwardBuilder, name: str) -> str:
    rank = b.rank(name)
    if rank < 2:
        raise b.unsupported("MatMul with a 1-D operand is not differentiated")
    return b.op("Transpose", name, perm=[*range(rank - 2), rank - 1, rank - 2])


@rule("MatMul")
def _matmul(b: BackwardBuilder, node: onnx.NodeProto, grads: Grads, needs: Needs) -> Grads:
    a, w = node.input
    y, g = node.output[0], grads[0]
    return [
        b.unbroadcast(b.op("MatMul", g, _swap_last(b, w)), a, y) if needs[0] else None,
        b.unbroadcast(b.op("MatMul", _swap_last(b, a), g), w, y) if needs[1] else None,
    ]
