"""ORT format for ONNX Runtime Mobile, the reduced-build operator list, the NNAPI/CoreML report."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")  # the model is exported from torch here; the conversion needs none

from onnxcam.cli import main  # noqa: E402
from onnxcam.export.mobile import EXECUTION_PROVIDERS, export_ort_format, provider_support, provider_support_markdown  # noqa: E402
from onnxcam.runtime import CamSession  # noqa: E402


def test_ort_format_model_explains_like_the_onnx_model(tiny_cam_model, tmp_path):
    written = export_ort_format(tiny_cam_model, tmp_path / "mobile")
    assert written.ort_model.name == "tiny.ort" and written.ort_model.read_bytes()[4:8] == b"ORTM"
    batch = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    onnx_session = CamSession(tiny_cam_model, providers="cpu")
    ort_session = CamSession(written.ort_model, providers="cpu")  # the metadata travels
    for method in ("cam", "gradcam"):
        expected, got = onnx_session.explain(batch, method), ort_session.explain(batch, method)
        assert np.abs(got.maps - expected.maps).max() <= 1e-5, method
        assert np.array_equal(got.class_index, expected.class_index)


def test_required_operators_config_lists_every_op_the_ort_model_runs(tiny_cam_model, tmp_path):
    written = export_ort_format(tiny_cam_model, tmp_path)
    listed = {
        (domain, op)
        for line in written.required_operators.read_text().splitlines()
        if line and not line.startswith("#")
        for domain, _, ops in [line.split(";")]
        for op in ops.split(",")
    }
    ops = {op for _, op in listed}
    # The optimised graph fuses Conv + ReLU into com.microsoft FusedConv; the rest stays ai.onnx.
    assert {"Gemm", "ArgMax", "ReduceMean"} <= ops and ("ai.onnx", "ArgMax") in listed
    source_ops = {node.op_type for node in onnx.load(str(tiny_cam_model)).graph.node}
    assert ops - {"FusedConv"} <= source_ops


def test_provider_report_names_what_nnapi_and_coreml_lack(tiny_cam_model):
    report = provider_support(onnx.load(str(tiny_cam_model)))
    assert [entry.provider for entry in report] == list(EXECUTION_PROVIDERS)
    graph_ops = {node.op_type for node in onnx.load(str(tiny_cam_model)).graph.node}
    for entry in report:
        assert 0 < entry.supported_nodes < entry.total_nodes
        assert entry.verdict in {"YES", "MAYBE", "NO"}
        assert all(count > 0 and op.rpartition(":")[2] in graph_ops for op, count in entry.unsupported_ops.items())
    # The top-1 resolution (ArgMax over the logits) is one of the ops NNAPI has no kernel for.
    assert "ai.onnx:ArgMax" in report[0].unsupported_ops
    assert "| NNAPI |" in provider_support_markdown(tiny_cam_model)


def test_mobile_cli(tiny_cam_model, tmp_path, capsys):
    assert main(["mobile", str(tiny_cam_model), "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "tiny.ort").is_file() and (tmp_path / "tiny.required_operators.config").is_file()
    assert "CoreML MLProgram" in out and "worth trying" in out
