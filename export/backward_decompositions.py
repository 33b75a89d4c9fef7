"""Decompositions of the backward ops that the ONNX exporter cannot translate on its own.

Tracing ``torch.autograd.grad`` leaves ``aten.convolution_backward``, ``aten.avg_pool2d_backward``
and ``aten._adaptive_avg_pool2d_backward`` in the graph, and ``torch.onnx`` has no translation for
them (nor for ``aten.adaptive_max_pool2d``, forward or backward). The gradient with respect to
a convolution's (or an average pool's) input is a transposed convolution with the same weights
(or with a box kernel), which ONNX has as ``ConvTranspose``; adaptive average pooling is
separable, so its gradient is two matrix products; adaptive max pooling with equal windows is a
plain max pool. Weights are constants of the exported graph, so their gradients are never asked
for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch._decomp import core_aten_decompositions

aten = torch.ops.aten


def _transposed_output_padding(
    input_size: Sequence[int],
    output_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> list[int]:
    """The ``output_padding`` that makes a transposed convolution give back ``input_size``.

    A strided convolution maps several input sizes to the same output size; the transposed
    convolution needs to be told which one it came from.
    """
    return [
        int(i) - ((int(o) - 1) * s - 2 * p + d * (k - 1) + 1)
        for i, o, k, s, p, d in zip(input_size, output_size, kernel_size, stride, padding, dilation)
    ]


def convolution_backward(
    grad_output: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias_sizes: Sequence[int] | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    transposed: bool,
    output_padding: Sequence[int],
    groups: int,
    output_mask: Sequence[bool],
) -> tuple[torch.Tensor | None, None, None]:
    """dL/dinput of a (non-transposed) convolution; dL/dweight and dL/dbias are never needed."""
    if transposed:
        raise NotImplementedError("gradients through transposed convolutions are not supported")
    if output_mask[1] or output_mask[2]:
        raise NotImplementedError("weight gradients are not exported: weights are constants")
    if not output_mask[0]:
        return None, None, None
    padding_out = _transposed_output_padding(
        input.shape[2:], grad_output.shape[2:], weight.shape[2:], stride, padding, dilation
    )
    grad_input = aten.convolution(
        grad_output, weight, None, stride, padding, dilation, True, padding_out, groups
    )
    return grad_input, None, None


def _pair(values: Sequence[int]) -> list[int]:
    return list(values) * 2 if len(values) == 1 else list(values)


def avg_pool_divisors(
    in_size: int, out_size: int, kernel: int, stride: int, padding: int, count_include_pad: bool
) -> np.ndarray:
    """(out_size,) divisor of each average-pooling window along one axis, as PyTorch's kernel.

    Window o spans ``[o*stride - padding, min(o*stride - padding + kernel, in_size + padding))``;
    with ``count_include_pad`` its divisor is that span (padding included), else the part inside
    ``[0, in_size)``. In ``ceil_mode`` the last window can be cut short either way. The 2-D divisor
    is the outer product of the two axes' (both factors are per-axis lengths).
    """
    start = np.arange(out_size) * stride - padding
    end = np.minimum(start + kernel, in_size + padding)
    if count_include_pad:
        return (end - start).astype(np.float32)
    return (np.minimum(end, in_size) - np.maximum(start, 0)).astype(np.float32)


def avg_pool2d_backward(
    grad_output: torch.Tensor,
    input: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
) -> torch.Tensor:
    """dL/dinput of ``avg_pool2d``: each output gradient, divided by its window's divisor, is
    spread evenly over its window (a depthwise transposed convolution with a box kernel).

    In ``ceil_mode`` the last window may reach past the padded input, so the transposed
    convolution can come out longer than the input: the extra rows fall on padding and are cut.
    """
    kernel = _pair(kernel_size)
    stride = _pair(stride) if len(stride) else kernel
    padding = _pair(padding)
    height, width = (int(v) for v in input.shape[2:])
    out_height, out_width = (int(v) for v in grad_output.shape[2:])
    if divisor_override:
        divisor: torch.Tensor | int = divisor_override
    else:
        # The divisor varies near the border (and at a ceil-mode window); built in numpy so that
        # it enters the traced graph as one constant.
        rows = avg_pool_divisors(height, out_height, kernel[0], stride[0], padding[0], count_include_pad)
        cols = avg_pool_divisors(width, out_width, kernel[1], stride[1], padding[1], count_include_pad)
        divisor = torch.from_numpy(np.outer(rows, cols)).to(grad_output.dtype)
    channels = int(input.shape[1])
    box = torch.ones(channels, 1, *kernel, dtype=grad_output.dtype)
    padding_out = _transposed_output_padding(
        (height, width), grad_output.shape[2:], kernel, stride, padding, (1, 1)
    )
    grad_input = aten.convolution(
        grad_output / divisor, box, None, stride, padding, [1, 1], True,
        [max(p, 0) for p in padding_out], channels,
    )
    return grad_input[:, :, :height, :width]


def adaptive_pooling_matrix(out_size: int, in_size: int) -> torch.Tensor:
    """(out_size, in_size) averaging matrix of adaptive average pooling along one axis.

    Window i covers ``[floor(i * in / out), ceil((i + 1) * in / out))``, as in PyTorch. Built in
    numpy so that it enters the traced graph as one constant, not as traced slice assignments.
    """
    matrix = np.zeros((out_size, in_size), dtype=np.float32)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -((-(i + 1) * in_size) // out_size)
        matrix[i, start:end] = 1.0 / (end - start)
    return torch.from_numpy(matrix)


def adaptive_avg_pool2d_backward(grad_output: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    """dL/dinput of ``adaptive_avg_pool2d``: ``P_h^T @ grad_output @ P_w``."""
    rows = adaptive_pooling_matrix(int(grad_output.shape[2]), int(input.shape[2]))
    cols = adaptive_pooling_matrix(int(grad_output.shape[3]), int(input.shape[3]))
    dtype = grad_output.dtype
    return rows.T.to(dtype) @ grad_output @ cols.to(dtype)


def _uniform_window(in_size: int, out_size: int) -> int:
    """The window (= stride) of adaptive pooling from ``in_size`` to ``out_size`` when all windows
    are equal and disjoint; ``NotImplementedError`` otherwise."""
    if in_size % out_size:
        raise NotImplementedError(
            f"adaptive max pooling from {in_size} to {out_size} has windows of unequal size; "
            "only output sizes that divide the input size are supported (or use adaptive average "
            "pooling, which has no such limit)"
        )
    return in_size // out_size


def adaptive_max_pool2d(
    input: torch.Tensor, output_size: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``adaptive_max_pool2d`` as the plain max pool it is when the windows divide the input
    (``torch.onnx`` has no translation of the adaptive op). Indices are flat over H*W in both."""
    kernel = [_uniform_window(int(i), int(o)) for i, o in zip(input.shape[2:], output_size)]
    return aten.max_pool2d_with_indices(input, kernel, kernel)


def adaptive_max_pool2d_backward(
    grad_output: torch.Tensor, input: torch.Tensor, indices: torch.Tensor
) -> torch.Tensor:
    """dL/dinput of a uniform-window ``adaptive_max_pool2d``: that of its plain max pool."""
    kernel = [
        _uniform_window(int(i), int(o)) for i, o in zip(input.shape[2:], grad_output.shape[2:])
    ]
    return aten.max_pool2d_with_indices_backward(
        grad_output, input, kernel, kernel, [0, 0], [1, 1], False, indices
    )


def max_pool2d_backward_by_mask(
    grad_output: torch.Tensor,
    input: torch.Tensor,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
    indices: torch.Tensor,
) -> torch.Tensor:
    """dL/dinput of a max pool with disjoint windows, from a mask instead of a scatter.

    ``torch.onnx`` writes max pooling's backward as ``ScatterElements`` into the argmax indices,
    which NNAPI, CoreML, fp16 converters and some runtimes lack. For disjoint windows (stride =
    kernel, no padding or dilation) each output gradient goes to the first position of its window
    (row-major) that holds the window's maximum, as PyTorch's indices point: positions equal to
    the maximum, minus those preceded in their window by an equal one (a count of earlier equal
    positions is one matrix product with a strictly upper-triangular matrix). Rows and columns
    past the last whole window get zero. Other pools return NotImplemented, which leaves
    ``make_fx`` to trace the op as it is (the scatter).
    """
    kernel = _pair(kernel_size)
    steps = _pair(stride) if len(stride) else kernel
    if steps != kernel or any(_pair(padding)) or any(d != 1 for d in _pair(dilation)) or ceil_mode:
        return NotImplemented
    (kh, kw), (h, w) = kernel, (int(v) for v in grad_output.shape[2:])
    height, width = (int(v) for v in input.shape[2:])
    windows = _image_to_windows(input[:, :, : h * kh, : w * kw], kh, kw)
    equal = (windows == windows.amax(dim=4, keepdim=True)).to(grad_output.dtype)
    earlier = torch.ones(kh * kw, kh * kw, dtype=grad_output.dtype).triu(1)  # [i, j] = 1 if i < j
    first = equal * ((equal @ earlier) == 0).to(grad_output.dtype)
    spread = _windows_to_image(first * grad_output.unsqueeze(4), kh, kw)
    return aten.constant_pad_nd(spread, [0, width - w * kw, 0, height - h * kh], 0.0)


def _image_to_windows(image: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """(N, C, h*kh, w*kw) -> (N, C, h, w, kh*kw): each disjoint window's values, row-major."""
    h, w = int(image.shape[2]) // kh, int(image.shape[3]) // kw
    return image.unflatten(2, (h, kh)).unflatten(4, (w, kw)).permute(0, 1, 2, 4, 3, 5).flatten(4)


def _windows_to_image(values: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """(N, C, h, w, kh*kw) -> (N, C, h*kh, w*kw), the inverse of :func:`_image_to_windows`."""
    return values.unflatten(4, (kh, kw)).permute(0, 1, 2, 4, 3, 5).flatten(4, 5).flatten(2, 3)


MAX_POOL_GRADIENTS = ("scatter", "mask")
"""How the exported graph computes max pooling's gradient: ``scatter`` (torch.onnx's translation,
``ScatterElements``; the default) or ``mask`` (:func:`max_pool2d_backward_by_mask`, disjoint
windows only, other pools keep the scatter)."""


def gradient_decompositions() -> dict:
    """The decomposition table for tracing a gradient graph that ``torch.onnx`` can translate."""
    return {
        **core_aten_decompositions(),
        aten.convolution_backward.default: convolution_backward,
        aten.avg_pool2d_backward.default: avg_pool2d_backward,
        aten._adaptive_avg_pool2d_backward.default: adaptive_avg_pool2d_backward,
        aten.adaptive_max_pool2d.default: adaptive_max_pool2d,
        aten.adaptive_max_pool2d_backward.default: adaptive_max_pool2d_backward,
    }
