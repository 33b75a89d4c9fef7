"""Vector-Jacobian products of ONNX operators, written as ONNX operators (no torch).

:func:`onnxcam.export.augment.augment_classifier` walks a classifier's graph backwards from the
logits. For every node on a path from a target tensor to the logits it calls the rule registered in
:data:`RULES` for the node's op type (see :class:`Rule` for the signature): the rule receives the
gradients of the node's outputs and returns the gradients of the inputs the caller asked for,
emitting plain ONNX nodes through a :class:`BackwardBuilder`, which names every node
``onnxcam/grad/<op type>/<n>`` so a user can find the backward of any forward node in Netron.

The rules live in one module per op family (``shape``, ``elementwise``, ``activations``,
``softmax``, ``matmul_gemm``, ``conv_pool``, ``normalization``, ``reduce``, ``resample``); a new
rule is one function decorated with ``@rule("OpType")`` in its family's module. They mirror PyTorch's autograd,
which the tests compare with (ties, masks at 0 and window routing are documented per family).
"""

from onnxcam.export.vjp import (  # noqa: F401  (each module registers its rules)
    activations,
    conv_pool,
    elementwise,
    matmul_gemm,
    normalization,
    reduce,
    resample,
    shape,
    softmax,
)
from onnxcam.export.vjp.builder import BackwardBuilder, Window
from onnxcam.export.vjp.registry import FLOAT_TYPES, RULES, Grads, Needs, Rule, UnsupportedOpError, rule

__all__ = ["FLOAT_TYPES", "RULES", "BackwardBuilder", "Grads", "Needs", "Rule", "UnsupportedOpError", "Window", "rule"]
