"""The torch function that a CAM-ready model computes, and its trace into a plain graph.

``CamReadyModule`` runs the classifier, captures the target layers' outputs with forward hooks,
and differentiates the chosen class score with ``torch.autograd.grad``. Neither ``torch.export``
nor the legacy exporter can capture ``autograd.grad`` inside ``forward``, so
:func:`trace_gradient_graph` first traces it with ``make_fx``, which records the backward ops as
ordinary aten ops, into a graph that ``torch.export`` accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode

from onnxcam.export.backward_decompositions import gradient_decompositions
from onnxcam.export.targets import ClassLogit, Target

Reshape = Callable[[torch.Tensor], torch.Tensor]
"""A layer's output -> ``(N, C, h, w)`` (e.g. ViT tokens ``(N, 1 + h*w, C)`` -> a grid)."""


class LayerCapture:
    """Forward hooks that keep each target layer's output for differentiation.

    The network goes on with a clone of the captured tensor, so in-place operations after the
    layer (``out += identity``, ``ReLU(inplace=True)``) neither change the captured activations
    nor break autograd. An output that does not require grad (frozen weights upstream) becomes a
    leaf that does; outputs further down then depend on it and require grad themselves.
    """

    def __init__(self, layers: Mapping[str, nn.Module]):
        self.layers = dict(layers)
        self.captured: dict[str, torch.Tensor] = {}
        self._calls: dict[str, int] = {}
        self._handles: list = []

    def __enter__(self) -> LayerCapture:
        self.captured.clear()
        self._calls = dict.fromkeys(self.layers, 0)
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_hook(self._hook_for(name)))
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook_for(self, name: str):
        def hook(module: nn.Module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"layer {name!r} ({type(module).__name__}) returns {type(output).__name__}, "
                    "not a tensor: choose a module whose output is the feature map"
                )
            self._calls[name] += 1
            if not output.requires_grad:
                output = output.detach().requires_grad_(True)
            self.captured[name] = output
            return output.clone()

        return hook

    def check_called_once(self) -> None:
        for name, calls in self._calls.items():
            if calls != 1:
                raise ValueError(
                    f"layer {name!r} ran {calls} times in one forward pass (a module used at "
                    "several places, such as a shared ReLU); choose a module that runs once, "
                    "e.g. its parent block"
                )


def find_cam_classifier(
    model: nn.Module, activations: torch.Tensor, logits: torch.Tensor
) -> nn.Linear | None:
    """The linear layer that makes ``logits`` from the global average of ``activations``, if any.

    CAM is defined only for a global-average-pool + linear head. Rather than guess from module
    names, this checks the defining identity on real numbers:
    ``logits == linear(mean_hw(activations))``.

    activations: (N, C, h, w); logits: (N, K).
    """
    pooled = activations.detach().mean(dim=(2, 3))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for linear in reversed(linears):
        if linear.in_features != pooled.shape[1] or linear.out_features != logits.shape[1]:
            continue
        with torch.no_grad():
            predicted = F.linear(pooled, linear.weight, linear.bias)
        scale = logits.detach().abs().max().clamp_min(1e-6)
        if torch.allclose(predicted, logits.detach(), rtol=1e-4, atol=1e-4 * float(scale)):
            return linear
    return None


class CamReadyModule(nn.Module):
    """``(input (N,C,H,W), class_index (N,), *target inputs) -> (logits, *extra outputs,
    *[activations, gradients, cam_weights?], *[target score, target class]?)``.

    ``target`` (default :class:`~onnxcam.export.targets.ClassLogit`) is what is differentiated;
    the extra outputs are the model outputs it names besides ``logits`` (a detector's boxes) and,
    for every target but the logit, the target's value and resolved class come last. For each
    target layer, in order: its activations, d(target)/dA, and, when ``cam_heads`` holds a linear
    layer for it, the classifier rows ``w^c`` (N, C_L). A layer with an entry in ``reshapes`` is
    differentiated as the model computes it (e.g. tokens), and the reshape is applied afterwards
    to both its activations and their gradients: a reshape only moves entries, so the moved
    gradient is the gradient of the moved activations.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Mapping[str, nn.Module],
        cam_heads: Mapping[str, nn.Linear | None],
        reshapes: Mapping[str, Reshape] | None = None,
        target: Target | None = None,
    ):
        super().__init__()
        self.model = model
        self.layers = dict(layers)
        self.cam_heads = dict(cam_heads)
        self.reshapes = dict(reshapes or {})
        self.target = target or ClassLogit()

    def forward(self, input: torch.Tensor, class_index: torch.Tensor, *target_inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.enable_grad(), LayerCapture(self.layers) as capture:
            model_outputs = self.model(input)
        capture.check_called_once()
        seed = self.target.seed(model_outputs, class_index, *target_inputs)
        activations = [capture.captured[name] for name in self.layers]
        gradients = torch.autograd.grad(seed.differentiated, activations, grad_outputs=seed.grad_outputs)
        logits = self.target.logits(model_outputs)
        outputs = [logits.detach(), *(o.detach() for o in self.target.extra_outputs(model_outputs).values())]
        for name, acts, grads in zip(self.layers, activations, gradients):
            acts = acts.detach()
            reshape = self.reshapes.get(name)
            if reshape is not None:
                acts, grads = reshape(acts), reshape(grads)
            outputs += [acts, grads]
            head = self.cam_heads.get(name)
            if head is not None:
                outputs.append(seed.grad_outputs @ head.weight)
        if seed.score is not None:
            outputs += [seed.score.detach(), seed.class_index]
        return tuple(outputs)


class _GlobalAveragePoolAsMean(TorchFunctionMode):
    """Traces ``adaptive_avg_pool2d`` to 1x1 (global average pooling) as a plain ``mean``.

    PyTorch computes that pool as ``mean(dim=(-1, -2), keepdim=True)`` and then, when the input is
    channels-last (ConvNeXt's blocks end with a permute back from channels-last), restrides the
    result in place with ``as_strided_``. That restride happens inside the op's C++ composite
    kernel, below the decomposition table, and autograd differentiates it as an ``as_strided``
    view of a zero buffer written with ``copy_``, which ``torch.export`` functionalises into
    ``prims.as_strided_scatter``, an op ``torch.onnx`` cannot translate. The mean alone has the
    same values; only the (irrelevant) strides of the (N, C, 1, 1) result differ.
    """

    _FUNCTIONS = (F.adaptive_avg_pool2d, torch._C._nn.adaptive_avg_pool2d)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._FUNCTIONS:
            input, output_size = _pool_arguments(*args, **kwargs)
            sizes = [output_size] * 2 if isinstance(output_size, int) else list(output_size)
            if input.ndim in (3, 4) and len(sizes) == 2 and all(s == 1 for s in sizes):
                return input.mean(dim=(-1, -2), keepdim=True)
        return func(*args, **kwargs)


def _pool_arguments(input: torch.Tensor, output_size) -> tuple:
    """``adaptive_avg_pool2d``'s arguments, positional or by keyword, as (input, output_size)."""
    return input, output_size


def trace_gradient_graph(
    module: nn.Module,
    example_input: torch.Tensor,
    example_class_index: torch.Tensor,
    decompositions: Mapping | None = None,
    example_target_inputs: tuple[torch.Tensor, ...] = (),
) -> torch.fx.GraphModule:
    """Trace ``module`` (backward included) into an aten graph with a symbolic batch size.

    Attention is traced with the math backend of ``scaled_dot_product_attention`` (matmul,
    softmax, matmul): the fused CPU kernel that PyTorch picks otherwise records a fused backward
    op that ``torch.onnx`` cannot translate, while the math ops differentiate into plain ones.

    Global average pooling is traced as a plain mean (:class:`_GlobalAveragePoolAsMean`): PyTorch's
    own kernel restrides a channels-last result with ``as_strided_``, whose gradient exports as
    an untranslatable ``as_strided_scatter``.

    Only the batch axis is symbolic (the inputs are fake tensors made so): with every axis
    symbolic, as ``make_fx`` makes them by default, shape reasoning over channel and spatial sizes
    dominated the trace (DenseNet's concatenations: 45 s instead of 3 s for a small one).
    """
    inputs = _batch_symbolic_fakes(example_input, example_class_index, *example_target_inputs)
    with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]), _GlobalAveragePoolAsMean():
        return make_fx(
            module,
            tracing_mode="symbolic",
            # ``decompositions`` lets input-gradient rules replace ReLU's backward.
            decomposition_table=dict(decompositions or gradient_decompositions()),
            _allow_non_fake_inputs=True,
        )(*inputs)


def _batch_symbolic_fakes(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Fake copies of ``tensors`` sharing one shape environment, dynamic in axis 0 only."""
    mode = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)
    return [
        mode.from_tensor(
            tensor,
            symbolic_context=StatelessSymbolicContext(
                dynamic_sizes=[DimDynamic.DYNAMIC] + [DimDynamic.STATIC] * (tensor.ndim - 1)
            ),
        )
        for tensor in tensors
    ]
