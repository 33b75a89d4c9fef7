"""``--target`` on ``onnxcam export``, ``export-synthetic`` and ``augment``."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

torch = pytest.importorskip("torch")

from onnxcam.apps.cli import main  # noqa: E402
from onnxcam.contract import TARGET_BOX, TARGET_SCORE  # noqa: E402

DETECTOR = Path(__file__).resolve().parents[2] / "models" / "synthetic" / "synthetic_detector.pt"


@pytest.mark.slow  # a 96 x 96 detector export: ~70 s on the loaded 2-core box
def test_export_synthetic_detector_gets_its_detection_target(tmp_path):
    out = tmp_path / "det.onnx"
    assert main(["export-synthetic", str(DETECTOR), "--out", str(out)]) == 0
    graph = onnx.load(str(out)).graph
    assert TARGET_BOX in [i.name for i in graph.input] and TARGET_SCORE in [o.name for o in graph.output]


def test_export_refuses_a_segmentation_target_on_a_classifier(tmp_path, capsys):
    code = main(["export", "--arch", "resnet18", "--target", "segmentation", "--out", str(tmp_path / "x.onnx")])
    assert code == 2
    assert "SegmentationRegion needs per-pixel class scores (N, K, H, W)" in capsys.readouterr().err


def test_augment_writes_the_probability_target(tmp_path):
    from helpers.method_models import SmallGapNet

    plain = tmp_path / "plain.onnx"
    torch.onnx.export(
        SmallGapNet().eval(), (torch.randn(2, 3, 48, 48),), str(plain), dynamo=True,
        dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False,
    )
    layer = next(n.output[0] for n in reversed(onnx.load(str(plain)).graph.node) if n.op_type == "Relu")
    out = tmp_path / "cam.onnx"
    assert main(["augment", str(plain), "--layer", layer, "--target", "probability", "--out", str(out)]) == 0
    assert TARGET_SCORE in [o.name for o in onnx.load(str(out)).graph.output]
    assert main(["augment", str(plain), "--layer", layer, "--target", "detection", "--out", str(out)]) == 2
