"""Static QDQ int8 quantization of a CAM-ready model, calibrated on sample images (no torch).

The forward pass is quantized (QuantizeLinear / DequantizeLinear pairs around the Convs, Gemms,
...: ONNX Runtime runs those as int8 kernels); the gradient subgraph stays float by default. That
split is read off the graph, not off names: every node downstream of the ``class_index`` input is
backward work (the one-hot gradient seed, the transposed convolutions, the CAM-weights gather, the
fused heatmaps), and everything else is the forward pass. Measured on this machine, static QDQ int8
with the backward kept float was the fastest variant; quantizing the backward too (``include_backward``)
saves a little more size, at a cost in map fidelity that ``docs/edge.md`` gives in numbers.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from onnxcam.contract import CLASS_INDEX, INPUT, TOP1_CLASS, Preprocessing
from onnxcam.export.precision import load_cam_model, save_model, set_model_metadata, with_conversion_note
from onnxcam.graph import UniqueNames, downstream_nodes
from onnxcam.runtime.inputs import preprocess_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
CALIBRATION_BATCH = 4
"""Images per calibration run: bounds the memory of the augmented graph (all tensors are outputs)."""


def backward_node_names(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that compute gradients (everything downstream of ``class_index``)."""
    return [node.name for node in downstream_nodes(model.graph, CLASS_INDEX)]


def _name_unnamed_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name: the quantizer selects nodes by name."""
    names = UniqueNames(node.name for node in model.graph.node)
    for node in model.graph.node:
        if not node.name:
            node.name = names.new("quantize")


def _unshare_backward_weights(model: onnx.ModelProto, backward: set[str]) -> None:
    """Give the backward nodes their own copy of every initializer they share with forward nodes.

    A transposed convolution of the backward pass reads the same weight tensor as its forward
    convolution, with input and output channels swapped; one tensor quantized per channel has one
    channel axis, which is wrong for one of the two (ONNX Runtime then fails: "filter scale shape
    invalid"). Separate copies are quantized each along its own axis.
    """
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    forward_inputs = {name for node in model.graph.node if node.name not in backward for name in node.input}
    copies: dict[str, str] = {}
    for node in model.graph.node:
        if node.name not in backward:
            continue
        for i, name in enumerate(node.input):
            if name in initializers and name in forward_inputs:
                if name not in copies:
                    copy = onnx.TensorProto()
                    copy.CopyFrom(initializers[name])
                    copy.name = copies[name] = f"{name}/backward"
                    model.graph.initializer.append(copy)
                node.input[i] = copies[name]


def calibration_images(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Image files from a folder (its image files, sorted), a single file or a list of files."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {str(path)!r}")
            return files
        files = [path]
    else:
        files = [Path(p) for p in source]
    if not files:
        raise ValueError("no calibration images given")
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"calibration image {str(file)!r} does not exist")
    return files


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds preprocessed images to the calibrator, ``CALIBRATION_BATCH`` at a time, with
    ``class_index`` = top-1 so that the gradient tensors see their usual ranges too.

    images: decoded RGB uint8 ``(H_i, W_i, 3)`` arrays, preprocessed by the model's metadata.
    """

    def __init__(self, images: Sequence[np.ndarray], preprocessing: Preprocessing):
        self._images = list(images)
        self._preprocessing = preprocessing
        self._batches = self._iterate()

    def _iterate(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self._images), CALIBRATION_BATCH):
            batch = preprocess_images(self._images[start : start + CALIBRATION_BATCH], self._preprocessing)
            yield {INPUT: batch, CLASS_INDEX: np.full(batch.shape[0], TOP1_CLASS, dtype=np.int64)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:
        self._batches = self._iterate()


def quantize_cam_model(
    model_path: str | os.PathLike,
    calibration: Sequence[np.ndarray],
    out: str | os.PathLike,
    *,
    include_backward: bool = False,
    per_channel: bool = True,
) -> Path:
    """Write a static QDQ int8 copy of the CAM-ready model at ``model_path`` to ``out``.

    Args:
        model_path: a CAM-ready ``.onnx`` file (fp32).
        calibration: decoded RGB uint8 images ``(H_i, W_i, 3)``, a few dozen representative ones
            (they are preprocessed with the model's metadata); activation ranges are their min/max.
        out: the ``.onnx`` file to write; it appears only once complete.
        include_backward: quantize the gradient subgraph too (default: it stays float32).
        per_channel: one weight scale per output channel (needed for depthwise convolutions, as
            in EfficientNet and MobileNet, to keep the maps faithful).

    Returns:
        ``out`` as a Path. Its metadata records the quantization in ``exporter["quantization"]``;
        inputs, outputs and their dtypes are those of the fp32 model (the contract holds).
    """
    if len(calibration) == 0:
        raise ValueError("quantization needs at least one calibration image")
    _, metadata = load_cam_model(model_path)
    with tempfile.TemporaryDirectory(prefix="onnxcam-quantize-") as folder:
        source, target = Path(folder) / "model.onnx", Path(folder) / "model.int8.onnx"
        # ONNX Runtime's recommended pre-processing: shape inference and constant folding. Without
        # it a weight reached through a Transpose (the classifier's, which the gradient of an
        # earlier layer reads too) is quantized at run time with a wrong per-channel axis.
        quant_pre_process(str(model_path), str(source), skip_symbolic_shape=True)
        model = onnx.load(str(source))
        _name_unnamed_nodes(model)
        backward = backward_node_names(model)
        if include_backward and per_channel:
            _unshare_backward_weights(model, set(backward))
        excluded = [] if include_backward else backward
        onnx.save(model, str(source))
        quantize_static(
            str(source),
            str(target),
            ImageCalibrationReader(calibration, metadata.preprocessing),
            quant_format=QuantFormat.QDQ,
            # uint8 activations and int8 weights: what ONNX Runtime's x86 and ARM int8 kernels take.
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.MinMax,
        )
        quantized = onnx.load(str(target))
    scope = "forward and backward" if include_backward else "forward only, gradients float32"
    note = f"static QDQ int8 ({scope}; {'per-channel' if per_channel else 'per-tensor'} weights, " \
        f"min/max calibration on {len(calibration)} images)"
    set_model_metadata(quantized, with_conversion_note(metadata, "quantization", note))
    return save_model(quantized, out)
