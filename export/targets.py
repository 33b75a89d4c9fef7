"""What the exported gradients differentiate: the *target*, traced into the graph.

A target turns the model's outputs (and the graph inputs it adds) into one scalar per sample,
whose gradient with respect to the target layers the CAM-ready model returns, as
pytorch-grad-cam's targets do in eager PyTorch:

- :class:`ClassLogit` (the default): the logit of ``class_index``, top-1 for ``-1``;
- :class:`ClassProbability`: the softmax probability of that class
  (pytorch-grad-cam's ``ClassifierOutputSoftmaxTarget``);
- :class:`SegmentationRegion`: class ``class_index``'s output ``(N, K, H, W)`` summed over the
  input ``target_mask`` ``(N, H, W)`` (its ``SemanticSegmentationTarget``);
- :class:`DetectionBoxScore`: the score plus the IoU of the detection of ``class_index`` that best
  matches the input ``target_box`` ``(N, 4)`` (its ``FasterRCNNBoxScoreTarget``);
- :class:`UserTarget`: any torch function of the outputs returning one scalar per sample.

Every target but the logit adds the outputs ``target/score`` (N,) and ``target/class_index``
(N,) int64 (the class explained), so that the runtime reports the class and the methods that
re-run the model score the same target.

>>> export_cam_model(net, example, "encoder.2", "seg.onnx", target=SegmentationRegion())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from onnxcam.contract import (
    DETECTION_BOXES,
    TARGET_BOX,
    TARGET_MASK,
    TargetInfo,
    TargetInput,
)

Outputs = torch.Tensor | tuple[torch.Tensor, ...]
"""What the model's ``forward`` returns: one tensor, or a tuple of them (a detector's)."""


class TargetError(ValueError):
    """A target does not fit the model's outputs; the message says which shape it expected."""


@dataclass(frozen=True)
class Seed:
    """What ``torch.autograd.grad`` differentiates: ``differentiated`` with ``grad_outputs`` of
    its shape, the resolved class of each sample ``(N,)``, and the target's value ``(N,)`` (None
    for the logit, which keeps the graph it always had)."""

    differentiated: torch.Tensor
    grad_outputs: torch.Tensor
    class_index: torch.Tensor
    score: torch.Tensor | None


def one_hot_rows(index: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """(N,) class indices -> (N, K) one-hot rows.

    Written as a comparison with ``arange`` rather than ``gather``/``scatter``: the gradient seed
    then exports as Equal + Cast, which every runtime and fp16 handle (the seed's product with a
    classifier weight becomes a Gather of its rows: ``onnxcam.export.gradient_rewrites``).
    """
    classes = torch.arange(num_classes, device=index.device)
    return (classes[None, :] == index[:, None]).to(dtype)


def resolve_class_index(scores: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
    """``class_index`` with every negative entry (TOP1_CLASS, as the contract reads any negative
    index) replaced by that row's top class of ``scores`` (N, K). (N,)"""
    return torch.where(class_index < 0, scores.argmax(dim=1), class_index)


def _pick(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (N, K), index (N,) -> (N,) values[n, index[n]], as a one-hot product (no gather)."""
    return (values * one_hot_rows(index, values.shape[1], values.dtype)).sum(dim=1)


def _describe(outputs: Outputs) -> str:
    if isinstance(outputs, torch.Tensor):
        return f"one tensor of shape {tuple(outputs.shape)}"
    return "a tuple of " + ", ".join(str(tuple(o.shape)) for o in outputs)


def _single(outputs: Outputs, target: str, expected: str) -> torch.Tensor:
    """The model's one output tensor; TargetError naming ``expected`` otherwise."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, (tuple, list)) and len(outputs) == 1 and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise TargetError(f"{target} needs a model that returns {expected}; this one returns {_describe(outputs)}")


class Target:
    """A differentiable scalar per sample of the model's outputs.

    Subclasses set ``kind`` and implement :meth:`check` (refuse outputs of the wrong shape),
    :meth:`score` and, where they read more than the model's input, :meth:`inputs` and
    :meth:`example_inputs`.
    """

    kind: ClassVar[str]

    def check(self, outputs: Outputs) -> None:
        """Raise TargetError when ``outputs`` (of an example batch) do not fit the target."""

    def logits(self, outputs: Outputs) -> torch.Tensor:
        """What the graph returns as ``logits``: the model's own (class-score) output."""
        return _single(outputs, type(self).__name__, "one tensor")

    def extra_outputs(self, outputs: Outputs) -> dict[str, torch.Tensor]:
        """Other model outputs the graph returns, by contract name."""
        return {}

    def num_classes(self, outputs: Outputs) -> int:
        """K, the range of ``class_index``."""
        logits = self.logits(outputs)
        return int(logits.shape[1]) if logits.ndim >= 2 else 1

    def inputs(self, outputs: Outputs, input_size: tuple[int, int]) -> tuple[TargetInput, ...]:
        """The graph inputs the target adds (shapes without the batch axis)."""
        return ()

    def example_inputs(self, outputs: Outputs, input_size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Values of :meth:`inputs` for the example batch, to trace with."""
        return ()

    def options(self) -> dict[str, float]:
        return {}

    def label(self) -> str:
        return ""

    def info(self, outputs: Outputs, input_size: tuple[int, int]) -> TargetInfo:
        """The contract's record of this target."""
        return TargetInfo(self.kind, self.inputs(outputs, input_size), self.options(), self.label())

    def score(self, outputs: Outputs, class_index: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(score (N,), resolved class (N,) int64)`` for ``class_index`` (N,), -1 = top class."""
        raise NotImplementedError

    def seed(self, outputs: Outputs, class_index: torch.Tensor, *inputs: torch.Tensor) -> Seed:
        """What to differentiate: the score, seeded with ones."""
        score, index = self.score(outputs, class_index, *inputs)
        return Seed(score, torch.ones_like(score), index, score)


class ClassLogit(Target):
    """The logit of ``class_index`` of a classifier ``(N, K)`` (top-1 for -1): onnxcam's original
    and default target. Seeded with one-hot rows on the logits, the graph is the one exported
    before targets existed, with no outputs added."""

    kind = "logit"

    def check(self, outputs: Outputs) -> None:
        logits = _single(outputs, "ClassLogit", "logits (N, K)")
        if logits.ndim != 2:
            raise TargetError(
                f"the model returns logits of shape {tuple(logits.shape)}; expected (N, K) "
                "(for (N, K, H, W) per-pixel outputs use target=SegmentationRegion())"
            )

    def score(self, outputs, class_index, *inputs):
        logits = self.logits(outputs)
        index = resolve_class_index(logits, class_index)
        return _pick(logits, index), index

    def seed(self, outputs, class_index, *inputs):
        logits = self.logits(outputs)
        index = resolve_class_index(logits, class_index)
        return Seed(logits, one_hot_rows(index, logits.shape[1], logits.dtype), index, None)


class ClassProbability(ClassLogit):
    r"""The softmax probability of ``class_index`` (top-1 for -1):
    :math:`p^c = e^{y^c} / \sum_k e^{y^k}`, as pytorch-grad-cam's ``ClassifierOutputSoftmaxTarget``."""

    kind = "probability"

    def score(self, outputs, class_index, *inputs):
        logits = self.logits(outputs)
        index = resolve_class_index(logits, class_index)
        return _pick(torch.softmax(logits, dim=1), index), index

    seed = Target.seed


class SegmentationRegion(Target):
    r"""Class ``c``'s output summed over a region, for a model with ``(N, K, H, W)`` outputs:
    :math:`y = \sum_{ij} S^c_{ij} m_{ij}`, as pytorch-grad-cam's ``SemanticSegmentationTarget``.

    The region is the graph input ``target_mask`` float32 ``(N, H, W)`` at the output's resolution
    (all ones: the whole image). ``class_index = -1`` explains the class with the largest output
    summed over the mask. ``logits`` holds the model's output ``(N, K, H, W)``.
    """

    kind = "segmentation"

    def check(self, outputs: Outputs) -> None:
        output = _single(outputs, "SegmentationRegion", "per-pixel class scores (N, K, H, W)")
        if output.ndim != 4:
            raise TargetError(
                f"SegmentationRegion needs per-pixel class scores (N, K, H, W); the model returns "
                f"shape {tuple(output.shape)}" + (": use ClassLogit for a classifier" if output.ndim == 2 else "")
            )

    def inputs(self, outputs, input_size):
        return (TargetInput(TARGET_MASK, tuple(int(v) for v in self.logits(outputs).shape[2:])),)

    def example_inputs(self, outputs, input_size):
        output = self.logits(outputs)
        return (torch.ones(output.shape[0], *output.shape[2:], dtype=output.dtype),)

    def score(self, outputs, class_index, *inputs):
        (mask,) = inputs
        sums = (self.logits(outputs) * mask[:, None]).sum(dim=(2, 3))  # (N, K)
        index = resolve_class_index(sums, class_index)
        return _pick(sums, index), index


@dataclass(frozen=True)
class DetectionBoxScore(Target):
    r"""The score of the detection of class ``c`` that best matches ``target_box``, plus that IoU,
    as pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``: :math:`y = s^c_d + \mathrm{IoU}(b_d, B)`
    for the detection ``d`` of label ``c`` with the largest IoU with the box ``B``, and
    :math:`y = 0` when that IoU is not above ``iou_threshold`` (the map is then zero, and the
    runtime says so).

    The model returns ``(boxes (N, D, 4), scores (N, D, K))``: one candidate detection per row,
    boxes as continuous ``x0, y0, x1, y1`` input coordinates (torchvision's convention), class
    scores (probabilities). A detection's label is its top class, its score that class's score;
    detections scoring ``score_threshold`` or less are ignored (torchvision's ``box_score_thresh``).
    The graph input ``target_box`` float32 ``(N, 4)`` is in inclusive input pixels (the eval
    layer's boxes), so ``x1 + 1, y1 + 1`` end it. ``class_index = -1`` explains the label of the
    best-matching detection of any class. ``logits`` holds the scores, ``detections/boxes`` the
    boxes.
    """

    iou_threshold: float = 0.5
    score_threshold: float = 0.05
    kind: ClassVar[str] = "detection"

    def check(self, outputs: Outputs) -> None:
        shapes = _describe(outputs)
        if not (isinstance(outputs, (tuple, list)) and len(outputs) == 2):
            raise TargetError(f"DetectionBoxScore needs a model returning (boxes (N, D, 4), scores (N, D, K)); this one returns {shapes}")
        boxes, scores = outputs
        if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[:2] != boxes.shape[:2]:
            raise TargetError(f"DetectionBoxScore needs (boxes (N, D, 4), scores (N, D, K)); got {shapes}")

    def logits(self, outputs):
        return outputs[1]

    def extra_outputs(self, outputs):
        return {DETECTION_BOXES: outputs[0]}

    def num_classes(self, outputs):
        return int(outputs[1].shape[2])

    def inputs(self, outputs, input_size):
        return (TargetInput(TARGET_BOX, (4,)),)

    def example_inputs(self, outputs, input_size):
        height, width = input_size
        box = torch.tensor([0.0, 0.0, width - 1.0, height - 1.0])
        return (box.expand(outputs[0].shape[0], 4).contiguous(),)

    def options(self):
        return {"iou_threshold": float(self.iou_threshold), "score_threshold": float(self.score_threshold)}

    def score(self, outputs, class_index, *inputs):
        (box,) = inputs
        boxes, scores = outputs
        ious = box_iou(box + box.new_tensor([0.0, 0.0, 1.0, 1.0]), boxes)  # (N, D)
        best_score, label = scores.max(dim=2)  # (N, D)
        candidate = best_score > self.score_threshold
        # -1: the label of the best-matching detection of any class, as the torchvision target.
        any_class = torch.where(candidate, ious, torch.full_like(ious, -1.0)).argmax(dim=1)
        index = torch.where(class_index < 0, _pick(label, any_class), class_index)
        candidate = candidate & (label == index[:, None])
        best = torch.where(candidate, ious, torch.full_like(ious, -1.0)).argmax(dim=1)
        best_iou = _pick(ious, best)
        class_scores = (scores * one_hot_rows(index, scores.shape[2], scores.dtype)[:, None]).sum(dim=2)
        value = _pick(class_scores, best) + best_iou
        return torch.where(best_iou > self.iou_threshold, value, torch.zeros_like(value)), index


def box_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of each sample's ``box`` (N, 4) with its ``boxes`` (N, D, 4) -> (N, D); continuous
    ``x0, y0, x1, y1`` coordinates (area ``(x1 - x0) * (y1 - y0)``), as ``torchvision.ops.box_iou``."""
    box = box[:, None]
    width = (torch.minimum(box[..., 2], boxes[..., 2]) - torch.maximum(box[..., 0], boxes[..., 0])).clamp(min=0)
    height = (torch.minimum(box[..., 3], boxes[..., 3]) - torch.maximum(box[..., 1], boxes[..., 1])).clamp(min=0)
    inter = width * height
    area = (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])
    areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return inter / (area + areas - inter)


class UserTarget(Target):
    """Any torch function of the model's outputs that returns one scalar per sample ``(N,)``,
    traced into the graph (``class_index`` is passed through unchanged as the explained class).

    ``logits`` holds the model's output (its first, for a tuple).

    >>> target = UserTarget(lambda out: out[:, 3] - out[:, 5], label="3 minus 5")  # doctest: +SKIP
    """

    kind = "user"

    def __init__(self, function: Callable[[Outputs], torch.Tensor], label: str = "user"):
        self.function = function
        self._label = label

    def label(self) -> str:
        return self._label

    def logits(self, outputs):
        return outputs if isinstance(outputs, torch.Tensor) else outputs[0]

    def check(self, outputs: Outputs) -> None:
        batch = int(self.logits(outputs).shape[0])
        value = self.function(outputs)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (batch,) or not value.is_floating_point():
            got = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
            raise TargetError(
                f"target {self._label!r} returned {got} for a batch of {batch}; a target must return "
                f"one floating-point scalar per sample, shape ({batch},)"
            )

    def score(self, outputs, class_index, *inputs):
        return self.function(outputs), class_index


TARGETS: dict[str, type[Target]] = {
    cls.kind: cls for cls in (ClassLogit, ClassProbability, SegmentationRegion, DetectionBoxScore)
}
"""The built-in targets by their contract kind (``--target`` on the command line)."""


def target_by_name(name: str) -> Target:
    """The built-in target called ``name`` with default options; ValueError lists the valid ones."""
    try:
        return TARGETS[name]()
    except KeyError:
        raise ValueError(f"unknown target {name!r}; valid: {', '.join(TARGETS)}") from None
