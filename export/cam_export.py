"""``export_cam_model``: a torch classifier + target layers -> a CAM-ready ONNX file."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx
import onnx_ir
import torch
from torch import nn

import onnxcam
from onnxcam.atomic_write import write_atomically
from onnxcam.contract import (
    CLASS_INDEX,
    INPUT,
    LOGITS,
    METADATA_KEY,
    TARGET_CLASS,
    TARGET_SCORE,
    LayerInfo,
    ModelMetadata,
    Preprocessing,
    activations_name,
    cam_weights_name,
    gradients_name,
    input_gradients_name,
)
from onnxcam.export.caller_model import keeps_caller_model
from onnxcam.export.backward_decompositions import (
    MAX_POOL_GRADIENTS,
    gradient_decompositions,
    max_pool2d_backward_by_mask,
)
from onnxcam.export.gradient_graph import (
    CamReadyModule,
    LayerCapture,
    Reshape,
    find_cam_classifier,
    trace_gradient_graph,
)
from onnxcam.export.gradient_rewrites import simplify_gradient_ops
from onnxcam.export.per_layer import option_per_layer
from onnxcam.export.target_layers import resolve_layers
from onnxcam.export.targets import ClassLogit, Outputs, Target
from onnxcam.graph import set_metadata_prop

MAX_BATCH = 4096


class _GraphWrapper(nn.Module):
    """Gives ``torch.export`` a module with named inputs around the traced graph."""

    def __init__(self, graph: torch.fx.GraphModule):
        super().__init__()
        self.graph_module = graph

    def forward(self, input: torch.Tensor, class_index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.graph_module(input, class_index)


class _TargetInputGraphWrapper(_GraphWrapper):
    """:class:`_GraphWrapper` for a target that adds one input (a mask, a box)."""

    def forward(
        self, input: torch.Tensor, class_index: torch.Tensor, target_input: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        return self.graph_module(input, class_index, target_input)


def _probe_layers(
    model: nn.Module,
    layers: dict[str, nn.Module],
    example: torch.Tensor,
    reshapes: Mapping[str, Reshape],
    target: Target,
) -> tuple[dict[str, tuple[int, int, int]], dict[str, nn.Linear | None], Outputs]:
    """Run the model once eagerly: (reshaped) activation shapes, CAM heads (for the logit target
    only), the model's outputs (checked to fit ``target``)."""
    with torch.no_grad(), LayerCapture(layers) as capture:
        outputs = model(example)
    capture.check_called_once()
    target.check(outputs)
    logits = target.logits(outputs)
    shapes, heads = {}, {}
    for name, acts in capture.captured.items():
        if name in reshapes:
            acts = reshapes[name](acts)
        if acts.ndim != 4 or acts.shape[0] != example.shape[0]:
            hint = (
                "its reshape must return (N, C, h, w)"
                if name in reshapes
                else "pass reshape= (tokens -> grid) for a layer that outputs tokens"
            )
            raise ValueError(
                f"layer {name!r} outputs shape {tuple(acts.shape)}; a CAM layer needs "
                f"(N, C, h, w): {hint}"
            )
        shapes[name] = tuple(int(v) for v in acts.shape[1:])
        heads[name] = find_cam_classifier(model, acts, logits) if target.kind == "logit" else None
    return shapes, heads, outputs


def _exporter_versions() -> dict[str, str]:
    return {"onnxcam": onnxcam.__version__, "torch": torch.__version__, "onnx": onnx.__version__}


@keeps_caller_model
def export_cam_model(
    model: nn.Module,
    example_input: torch.Tensor,
    target_layers: str | Sequence[str],
    path: str | os.PathLike,
    *,
    preprocessing: Preprocessing | None = None,
    class_labels: Sequence[str] | None = None,
    arch: str | None = None,
    reshape: Reshape | Mapping[str, Reshape] | None = None,
    opset_version: int | None = None,
    input_gradients: Sequence[str] = (),
    fused: Sequence[tuple[str, str]] = (),
    max_pool_gradient: str = "scatter",
    target: Target | None = None,
    input_layout: str = "nchw",
) -> Path:
    """Write the CAM-ready ONNX model of ``model`` for ``target_layers`` to ``path``.

    Args:
        model: a classifier ``(N, C, H, W) -> (N, K)`` logits, or for another ``target`` a model
            whose outputs it reads (segmentation ``(N, K, H, W)``, a detector's boxes and
            scores); it is exported in eval mode and left as it was (mode, ``requires_grad``,
            hooks, weights).
        example_input: ``(N, C, H, W)`` float32; fixes C, H and W (the batch stays dynamic).
        target_layers: module names as in ``model.named_modules()``, e.g. ``"layer4"``,
            ``"features.28"``, ``"layer3.1.conv2"``.
        path: the ``.onnx`` file to write; it appears only once complete.
        preprocessing: how uint8 images become inputs, stored in the metadata (default: ImageNet
            mean/std at the example's size).
        class_labels: optional names of the K classes, stored in the metadata.
        arch: optional architecture name, stored in the metadata.
        reshape: maps a layer's output to ``(N, C, h, w)`` where it is not a map already, e.g.
            ViT tokens ``(N, 1 + h*w, C)`` -> ``(N, C, h, w)``
            (:func:`onnxcam.export.zoo.vit.tokens_to_grid`), as pytorch-grad-cam's
            ``reshape_transform``. One callable applies to every target layer; a mapping gives
            one per layer name. It is traced into the graph and applied, after differentiation,
            to both the activations and their gradients. It must keep the batch axis symbolic
            (index or ``unflatten`` it, never ``int(x.shape[0])``).
        input_gradients: backward rules (``"plain"``, ``"guided"``, ``"deconvnet"``) for which
            to add dy^c/dx as ``input_gradients/<rule>`` (saliency, guided backpropagation).
        fused: ``(method, weighting)`` pairs whose finished heatmaps, for the first target layer,
            become outputs ``heatmap/<method>/<weighting>`` (see ``onnxcam.export.fused_heatmaps``).
        max_pool_gradient: ``"scatter"`` (default) or ``"mask"``: compute max pooling's gradient
            from an equality mask instead of ``ScatterElements``, for runtimes and converters that
            lack it (NNAPI, CoreML, fp16); disjoint windows only, others keep the scatter
            (``onnxcam.export.backward_decompositions.max_pool2d_backward_by_mask``).
        target: what the gradients differentiate (``onnxcam.export.targets``): ``ClassLogit()``
            (default), ``ClassProbability()``, ``SegmentationRegion()`` (adds the input
            ``target_mask``), ``DetectionBoxScore()`` (adds ``target_box``) or a ``UserTarget``.
            Recorded in the metadata; CAM weights are exported for the logit only.
        input_layout: ``"nchw"`` or ``"nhwc"`` for a model that takes channels-last input
            ``(N, H, W, C)`` (``example_input`` then has that shape); recorded as
            ``preprocessing.layout``, so ``CamSession.explain`` takes batches in that layout and
            preprocesses photos into it.

    Returns:
        ``path`` as a Path.

    Raises:
        LayerNotFoundError: a target layer is not a module name (the message lists the nearest).
        ValueError: the example or a layer's output has the wrong shape.
        TargetError: the model's outputs do not fit ``target`` (a segmentation target on a
            classifier, a user target that does not return one scalar per sample).
    """
    if isinstance(target_layers, str):
        target_layers = [target_layers]
    if input_layout.lower() not in ("nchw", "nhwc"):
        raise ValueError(f"input_layout must be 'nchw' or 'nhwc'; got {input_layout!r}")
    channels_last = input_layout.lower() == "nhwc"
    if example_input.ndim != 4 or example_input.dtype != torch.float32:
        raise ValueError(
            f"example_input must be float32 {'(N, H, W, C)' if channels_last else '(N, C, H, W)'}; "
            f"got {example_input.dtype} {tuple(example_input.shape)}"
        )
    model = model.eval()
    layers = resolve_layers(model, target_layers)
    # Two rows, so that torch.export does not specialise the batch size to 1.
    example = example_input[:1].detach().expand(2, -1, -1, -1).contiguous()
    reshapes = option_per_layer(reshape, list(layers), "reshape")
    target = target or ClassLogit()
    shapes, heads, model_outputs = _probe_layers(model, layers, example, reshapes, target)
    num_classes = target.num_classes(model_outputs)
    height, width = (int(v) for v in (example.shape[1:3] if channels_last else example.shape[2:]))
    target_info = target.info(model_outputs, (height, width))
    example_target_inputs = target.example_inputs(model_outputs, (height, width))
    if class_labels is not None and len(class_labels) != num_classes:
        raise ValueError(f"{len(class_labels)} class labels for a model with {num_classes} classes")

    example_index = torch.tensor([-1, 0], dtype=torch.int64)
    module = CamReadyModule(model, layers, heads, reshapes, target)
    decompositions = None
    if input_gradients:
        from onnxcam.export.input_gradients import InputGradientModule, input_gradient_decompositions

        module = InputGradientModule(module, input_gradients)
        decompositions = input_gradient_decompositions()
    if max_pool_gradient not in MAX_POOL_GRADIENTS:
        raise ValueError(f"max_pool_gradient must be one of {MAX_POOL_GRADIENTS}; got {max_pool_gradient!r}")
    if max_pool_gradient == "mask":
        decompositions = {
            **(decompositions or gradient_decompositions()),
            torch.ops.aten.max_pool2d_with_indices_backward.default: max_pool2d_backward_by_mask,
        }
    graph = trace_gradient_graph(module, example, example_index, decompositions, example_target_inputs)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    arguments = (example, example_index, *example_target_inputs)
    wrapper = (_TargetInputGraphWrapper if example_target_inputs else _GraphWrapper)(graph)
    exported = torch.export.export(wrapper, arguments, dynamic_shapes=tuple({0: batch} for _ in arguments))
    output_names = [LOGITS, *target.extra_outputs(model_outputs)]
    for name in layers:
        output_names += [activations_name(name), gradients_name(name)]
        if heads[name] is not None:
            output_names.append(cam_weights_name(name))
    if target_info.kind != "logit":
        output_names += [TARGET_SCORE, TARGET_CLASS]
    output_names += [input_gradients_name(rule) for rule in dict.fromkeys(input_gradients)]
    program = torch.onnx.export(
        exported,
        arguments,
        input_names=[INPUT, CLASS_INDEX, *target_info.input_names],
        output_names=output_names,
        opset_version=opset_version,
        external_data=False,
        dynamo=True,
        verbose=False,
    )
    metadata = ModelMetadata(
        layers=tuple(
            LayerInfo(name=name, shape=shapes[name], has_cam_weights=heads[name] is not None)
            for name in layers
        ),
        num_classes=num_classes,
        preprocessing=dataclasses.replace(
            preprocessing or Preprocessing(input_size=(height, width)), layout=input_layout.upper()
        ),
        arch=arch,
        class_labels=tuple(class_labels) if class_labels is not None else None,
        exporter=_exporter_versions(),
        input_gradients=tuple(dict.fromkeys(input_gradients)),
        target=target_info,
    )
    if metadata.preprocessing.input_size != (height, width):
        raise ValueError(
            f"preprocessing.input_size {metadata.preprocessing.input_size} differs from the "
            f"example input's size {(height, width)}"
        )
    proto = onnx_ir.to_proto(program.model)
    simplify_gradient_ops(proto)
    if fused:
        from onnxcam.export.fused_heatmaps import add_fused_heatmaps

        metadata = add_fused_heatmaps(proto, metadata, fused)
    set_metadata_prop(proto, METADATA_KEY, metadata.to_json())
    return write_atomically(path, lambda temporary: onnx.save(proto, temporary))
