"""Mobile deployment of a CAM-ready model: ORT format, the operator list for a reduced-size build,
and which mobile execution providers (NNAPI, CoreML) could run the graph. No torch.

ONNX Runtime Mobile loads ``.ort`` files (a flatbuffer of the graph, optimised ahead of time) and
can be built with only the operators a set of models needs: ``required_operators.config`` is that
list, the input of ORT's ``build.sh --include_ops_by_config``. Both come from
``onnxruntime.tools.convert_onnx_models_to_ort``. The provider report uses the operator tables that
ship in the onnxruntime wheel (``onnxruntime/tools/mobile_helpers/*_supported_ops.md``): it says
how much of the graph each provider would take and which op types it lacks.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx

from onnxcam.atomic_write import write_atomically
from onnxcam.export.precision import load_cam_model

EXECUTION_PROVIDERS = ("NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram")
CONFIG_SUFFIX = ".required_operators.config"


@dataclass(frozen=True)
class OrtFormatExport:
    """Files written by :func:`export_ort_format`."""

    ort_model: Path
    required_operators: Path


def export_ort_format(model_path: str | os.PathLike, out_dir: str | os.PathLike) -> OrtFormatExport:
    """Convert the CAM-ready model at ``model_path`` to ORT format in ``out_dir``.

    Writes ``<stem>.ort`` (optimised at ORT's ``all`` level minus the x86-only NCHWc layout, so it
    runs on ARM too) and ``<stem>.required_operators.config``. The contract metadata travels in
    the ``.ort`` file (``CamSession`` opens it like an ``.onnx`` file).
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    model_path = Path(model_path)
    load_cam_model(model_path)  # refuse a file that is not CAM-ready before converting it
    out_dir = Path(out_dir)
    stem = model_path.stem
    with tempfile.TemporaryDirectory(prefix="onnxcam-ort-") as folder:
        work = Path(folder)
        shutil.copyfile(model_path, work / f"{stem}.onnx")
        # The converter prints one line per step; the caller reports what was written instead.
        with contextlib.redirect_stdout(io.StringIO()):
            convert_onnx_models_to_ort(
                work / f"{stem}.onnx", output_dir=work / "out", optimization_styles=[OptimizationStyle.Fixed]
            )
        produced = {path.name: path for path in (work / "out").iterdir()}
        ort_model = write_atomically(out_dir / f"{stem}.ort", lambda t: shutil.copyfile(produced[f"{stem}.ort"], t))
        config = write_atomically(
            out_dir / f"{stem}{CONFIG_SUFFIX}", lambda t: shutil.copyfile(produced[f"{stem}{CONFIG_SUFFIX}"], t)
        )
    return OrtFormatExport(ort_model, config)


@dataclass(frozen=True)
class ProviderSupport:
    """How much of a graph one execution provider can take.

    supported_nodes / total_nodes: nodes it has kernels for (at the graph's shapes);
    partitions: the contiguous groups it would run, each a CPU <-> accelerator round trip;
    unsupported_ops: op types it lacks, with how many nodes of each the graph has;
    verdict: ONNX Runtime's own reading, "YES", "MAYBE" or "NO" (is it worth trying).
    """

    provider: str
    total_nodes: int
    supported_nodes: int
    partitions: int
    unsupported_ops: dict[str, int]
    verdict: str

    @property
    def fraction(self) -> float:
        return self.supported_nodes / self.total_nodes if self.total_nodes else 0.0


def provider_support(model: onnx.ModelProto) -> list[ProviderSupport]:
    """NNAPI and CoreML support of ``model``'s graph, one entry per :data:`EXECUTION_PROVIDERS`.

    Shapes are inferred first, and nodes are judged as if the batch axis were fixed: NNAPI and
    CoreML take static shapes only, so a mobile deployment fixes it first
    (``python -m onnxruntime.tools.make_dynamic_shape_fixed --dim_param NAME --dim_value 1``, NAME
    being the symbol on the first axis of ``input``).
    """
    from onnxruntime.tools.mobile_helpers import usability_checker as checker

    inferred = onnx.shape_inference.infer_shapes(model)
    checks = {
        "NNAPI": lambda m: checker.check_nnapi_partitions(m, require_fixed_input_sizes=False),
        "CoreML NeuralNetwork": lambda m: checker.check_coreml_partitions(
            m, require_fixed_input_sizes=False, config_filename="coreml_supported_neuralnetwork_ops.md"
        ),
        "CoreML MLProgram": lambda m: checker.check_coreml_partitions(
            m, require_fixed_input_sizes=False, config_filename="coreml_supported_mlprogram_ops.md"
        ),
    }
    counts = Counter(node.op_type for node in model.graph.node)
    report = []
    for provider in EXECUTION_PROVIDERS:
        info = checks[provider](inferred)
        report.append(
            ProviderSupport(
                provider=provider,
                total_nodes=info.num_nodes,
                supported_nodes=info.num_supported_nodes,
                partitions=info.num_partitions,
                # The checker names ops 'domain:type'; nodes are counted by type.
                unsupported_ops={op: counts[op.rpartition(':')[2]] for op in sorted(info.unsupported_ops)},
                verdict=info.suitability().name,
            )
        )
    return report


def provider_support_markdown(model_path: str | os.PathLike) -> str:
    """The provider report of the model at ``model_path`` as a markdown table."""
    model, _ = load_cam_model(model_path)
    lines = [
        "| execution provider | nodes it can run | partitions | lacks (op: nodes) | worth trying |",
        "|---|---|---|---|---|",
    ]
    for entry in provider_support(model):
        lacks = ", ".join(f"{op.removeprefix('ai.onnx:')}: {n}" for op, n in entry.unsupported_ops.items()) or "nothing"
        lines.append(
            f"| {entry.provider} | {entry.supported_nodes}/{entry.total_nodes} ({entry.fraction:.0%}) | "
            f"{entry.partitions} | {lacks} | {entry.verdict} |"
        )
    return "\n".join(lines) + "\n"
