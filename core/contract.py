"""The CAM-ready model contract, written once: export writes it, runtime reads it.

A CAM-ready ONNX model has

- inputs ``input`` float32 ``(N, C, H, W)`` (N dynamic) and ``class_index`` int64 ``(N,)``.
  A negative class index means "the top-1 class of this same pass": the graph resolves it with an
  ``ArgMax`` over its own logits, so explaining the predicted class costs one forward pass.
  An index of K or more is out of range (the graph gathers row c of the classifier weight, and
  ONNX Runtime refuses the index; ``CamSession`` refuses it first, naming it).
- outputs ``logits`` ``(N, K)`` and, for every target layer ``L``,
  ``activations/L`` ``(N, C_L, h, w)`` and ``gradients/L`` = dy^c/dA ``(N, C_L, h, w)``;
  ``cam_weights/L`` ``(N, C_L)`` (the classifier row of class c) when ``L`` feeds a
  global-average-pool + linear head, which is what CAM needs.
- optionally, ``input_gradients/<rule>`` dy^c/dx ``(N, C, H, W)`` for each backward rule through
  ReLUs in INPUT_GRADIENT_RULES (``ModelMetadata.input_gradients`` lists the exported ones), and
  fused heatmaps ``heatmap/<method>/<weighting>`` ``(N, H, W)`` in [0, 1] computed in the graph
  for the layer ``ModelMetadata.fused`` names.
- ``metadata_props[METADATA_KEY]``: a JSON document, :class:`ModelMetadata`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

CONTRACT_VERSION = 1
METADATA_KEY = "onnxcam"

INPUT = "input"
CLASS_INDEX = "class_index"
LOGITS = "logits"
TOP1_CLASS = -1
"""The ``class_index`` value that asks the graph to explain its own top-1 class."""


def activations_name(layer: str) -> str:
    """Output name of the activations of ``layer``."""
    return f"activations/{layer}"


def gradients_name(layer: str) -> str:
    """Output name of dy^c/dA for ``layer``."""
    return f"gradients/{layer}"


def cam_weights_name(layer: str) -> str:
    """Output name of the classifier row w^c that CAM multiplies ``layer``'s activations with."""
    return f"cam_weights/{layer}"


def heatmap_name(method: str, weighting: str) -> str:
    """Output name of the finished (resized, min-max normalised) heatmap fused into the graph."""
    return f"heatmap/{method}/{weighting}"


ACOL_MAPS = "acol_maps"
"""Optional output ``(N, K, h, w)``: ACoL's fused class maps (the element-wise max of its two
branches' min-max normalised maps, Zhang et al. 2018), computed by the model's own forward pass;
``ModelMetadata.native_maps`` lists it when present."""


INPUT_GRADIENT_RULES = ("plain", "guided", "deconvnet")
"""Backward rules through ReLU (and ReLU6) for dy^c/dx: ``plain`` autograd (vanilla saliency),
``guided`` (guided backpropagation: gradient passes where the forward input and the incoming
gradient are both positive) and ``deconvnet`` (where the incoming gradient is positive)."""


def input_gradients_name(rule: str) -> str:
    """Output name of dy^c/dx under the backward ``rule`` (one of INPUT_GRADIENT_RULES)."""
    return f"input_gradients/{rule}"


TARGET_KINDS = ("logit", "probability", "segmentation", "detection", "user")
"""What the exported gradients differentiate (``onnxcam.export.targets``): the class logit (the
default, and all that files before targets knew), its softmax probability, a segmentation class
summed over a mask, a detection's box score, or a user's function of the outputs."""
TARGET_MASK = "target_mask"
"""Input of a ``segmentation`` target: float32 ``(N, H_out, W_out)``, the region summed over."""
TARGET_BOX = "target_box"
"""Input of a ``detection`` target: float32 ``(N, 4)`` inclusive input pixels ``x0, y0, x1, y1``."""
TARGET_SCORE = "target/score"
"""Output of every target but ``logit``: the differentiated scalar of each sample ``(N,)``."""
TARGET_CLASS = "target/class_index"
"""Output of every target but ``logit``: the class each sample's target explained ``(N,)`` int64."""
DETECTION_BOXES = "detections/boxes"
"""Output of a ``detection`` target: the detector's boxes ``(N, D, 4)`` (``logits`` holds its
class scores ``(N, D, K)``)."""


class ContractError(ValueError):
    """A file or a metadata document does not follow the CAM-ready model contract."""


INPUT_LAYOUTS = ("NCHW", "NHWC")
"""How a model's image input is laid out (``Preprocessing.layout``): channels first, the contract's
``(N, C, H, W)``, or channels last ``(N, H, W, C)``; maps are ``(N, H, W)`` either way."""


@dataclass(frozen=True)
class Preprocessing:
    """How decoded RGB uint8 pixels become the model's float input.

    ``x = (pixel / 255 - mean) / std`` per channel, after resizing the whole image (no crop) to
    ``input_size`` = ``(H, W)`` with bilinear interpolation, channels in ``channel_order``, the
    batch laid out as ``layout`` says: ``"NCHW"`` (the contract's ``(N, C, H, W)``) or ``"NHWC"``
    (channels last, as models converted from TensorFlow take them). A model that takes 0-255
    pixels has mean 0 and std 1/255.
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"
    layout: str = "NCHW"  # added after version 1 shipped: absent from older files

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            input_size=tuple(int(v) for v in data["input_size"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            channel_order=str(data["channel_order"]),
            layout=str(data.get("layout", "NCHW")),
        )


@dataclass(frozen=True)
class LayerInfo:
    """One target layer: its module name and the ``(C, h, w)`` shape of its activations."""

    name: str
    shape: tuple[int, int, int]
    has_cam_weights: bool = False

    @property
    def activations(self) -> str:
        return activations_name(self.name)

    @property
    def gradients(self) -> str:
        return gradients_name(self.name)

    @property
    def cam_weights(self) -> str:
        return cam_weights_name(self.name)


@dataclass(frozen=True)
class FusedHeatmap:
    """A heatmap computed inside the graph: output ``heatmap_name(method, weighting)`` for ``layer``."""

    method: str
    weighting: str
    layer: str

    @property
    def output(self) -> str:
        return heatmap_name(self.method, self.weighting)


@dataclass(frozen=True)
class TargetInput:
    """A graph input that a target adds: its name and its shape without the batch axis."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class TargetInfo:
    """What the gradients differentiate: ``kind`` (one of TARGET_KINDS), the inputs it adds, and
    its options (e.g. a detection target's ``iou_threshold``). ``label`` names a user target."""

    kind: str = "logit"
    inputs: tuple[TargetInput, ...] = ()
    options: dict[str, float] = field(default_factory=dict)
    label: str = ""

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(item.name for item in self.inputs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetInfo:
        return cls(
            kind=str(data.get("kind", "logit")),
            inputs=tuple(
                TargetInput(str(i["name"]), tuple(int(v) for v in i["shape"]), str(i.get("dtype", "float32")))
                for i in data.get("inputs", ())
            ),
            options={str(k): float(v) for k, v in data.get("options", {}).items()},
            label=str(data.get("label", "")),
        )


@dataclass(frozen=True)
class ModelMetadata:
    """The JSON document stored in ``metadata_props[METADATA_KEY]``."""

    layers: tuple[LayerInfo, ...]
    num_classes: int
    preprocessing: Preprocessing = Preprocessing()
    arch: str | None = None
    class_labels: tuple[str, ...] | None = None
    exporter: dict[str, str] = field(default_factory=dict)
    contract_version: int = CONTRACT_VERSION
    # Optional parts, added after version 1 shipped: absent from older files, hence the defaults.
    fused: tuple[FusedHeatmap, ...] = ()
    input_gradients: tuple[str, ...] = ()
    native_maps: tuple[str, ...] = ()  # outputs (N, K, h, w) of class maps the model computes itself
    target: TargetInfo = field(default_factory=TargetInfo)

    def fused_heatmap(self, method: str, weighting: str, layer: str) -> FusedHeatmap | None:
        """The fused heatmap for ``method``/``weighting`` at ``layer``, or None if not exported."""
        for fused in self.fused:
            if (fused.method, fused.weighting, fused.layer) == (method, weighting, layer):
                return fused
        return None

    def layer(self, name: str) -> LayerInfo:
        for info in self.layers:
            if info.name == name:
                return info
        raise KeyError(name)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(info.name for info in self.layers)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(f"metadata '{METADATA_KEY}' is not valid JSON: {exc}") from exc
        version = data.get("contract_version") if isinstance(data, dict) else None
        if version != CONTRACT_VERSION:
            raise ContractError(
                f"metadata '{METADATA_KEY}' has contract version {version!r}; this onnxcam reads "
                f"version {CONTRACT_VERSION}: re-export the model with this onnxcam"
            )
        try:
            return cls(
                layers=tuple(
                    LayerInfo(
                        name=str(layer["name"]),
                        shape=tuple(int(v) for v in layer["shape"]),
                        has_cam_weights=bool(layer.get("has_cam_weights", False)),
                    )
                    for layer in data["layers"]
                ),
                num_classes=int(data["num_classes"]),
                preprocessing=Preprocessing.from_dict(data["preprocessing"]),
                arch=data.get("arch"),
                class_labels=tuple(data["class_labels"]) if data.get("class_labels") else None,
                exporter=dict(data.get("exporter", {})),
                fused=tuple(
                    FusedHeatmap(str(f["method"]), str(f["weighting"]), str(f["layer"]))
                    for f in data.get("fused", ())
                ),
                input_gradients=tuple(str(rule) for rule in data.get("input_gradients", ())),
                native_maps=tuple(str(name) for name in data.get("native_maps", ())),
                target=TargetInfo.from_dict(data.get("target") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"metadata '{METADATA_KEY}' is incomplete or malformed: {exc!r}") from exc
