"""The command line: export, explain, errors, and no torch for torch-free commands."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from onnxcam.cli import main


def test_help_does_not_import_torch():
    script = "import sys; sys.modules['torch'] = None; from onnxcam.cli import build_parser; build_parser(); print('ok')"
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    completed = subprocess.run([sys.executable, "-m", "onnxcam", "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0
    for command in ("export", "explain", "demo", "score"):
        assert command in completed.stdout


def test_explain_writes_overlays_and_maps(exported_zoo_model, tmp_path, capsys):
    model = exported_zoo_model("resnet18").path
    rng = np.random.default_rng(0)
    images = []
    for name, size in [("a.png", (40, 60)), ("b.jpg", (120, 90))]:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(tmp_path / name)
        images.append(str(tmp_path / name))
    out = tmp_path / "out"
    code = main(["explain", str(model), *images, "--method", "gradcam", "--weighting", "abs", "--out", str(out)])
    assert code == 0
    heatmap = np.load(out / "a.gradcam.abs.npy")
    assert heatmap.shape == (40, 60) and heatmap.dtype == np.float32
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0
    assert np.asarray(Image.open(out / "b.gradcam.abs.png")).shape == (120, 90, 3)
    assert "(p=" in capsys.readouterr().out


def test_explain_reports_errors_cleanly(exported_zoo_model, tmp_path, capsys):
    model = exported_zoo_model("resnet18").path
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert main(["explain", str(model), str(broken), "--out", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(good)
    assert main(["explain", str(model), str(good), "--layer", "nope", "--out", str(tmp_path)]) == 2
    assert "layer 'nope' is not in resnet18.onnx" in capsys.readouterr().err


def test_export_command(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "r18.onnx"
    assert main(["export", "--arch", "resnet18", "--layer", "layer4,layer3.1.conv2", "--out", str(out)]) == 0
    assert "random weights (seed 0)" in capsys.readouterr().err
    from onnxcam.runtime import CamSession

    session = CamSession(out, providers="cpu")
    assert session.layers == ("layer4", "layer3.1.conv2")
    assert session.metadata.class_labels[:2] == ("tench", "goldfish")
    with pytest.raises(SystemExit):
        main(["export", "--layer", "layer4", "--out", str(out)])  # --arch is required


@pytest.mark.parametrize(("blocked", "argv", "extra"), [
    ("torch", ["export", "--arch", "resnet18", "--out", "x.onnx"], "export"),
    ("cv2", ["score", "--maps", "m.npz", "--metadata", "d", "--out", "o"], "eval"),
])
def test_a_missing_extra_names_what_to_install(tmp_path, blocked, argv, extra):
    np.savez(tmp_path / "m.npz", a=np.zeros((2, 2)))
    (tmp_path / "d").mkdir()
    script = (
        f"import sys; sys.modules[{blocked!r}] = None; from onnxcam.cli import main; "
        f"raise SystemExit(main({argv!r}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert completed.returncode == 2, completed.stderr
    assert f'pip install "onnxcam[{extra}]"' in completed.stderr
    assert "Traceback" not in completed.stderr


def test_score_protocols_agree_with_the_evaluation():
    from onnxcam.apps.eval_commands import PROTOCOLS
    from onnxcam.eval.scoring import PROTOCOLS as EVAL_PROTOCOLS

    assert PROTOCOLS == EVAL_PROTOCOLS


def test_export_lists_the_zoo_and_warns_of_random_weights(tmp_path, capsys):
    from onnxcam.apps.export_commands import ZOO_ARCHITECTURES
    from onnxcam.export.zoo import ARCHITECTURES

    assert ZOO_ARCHITECTURES == tuple(sorted(ARCHITECTURES))
    with pytest.raises(SystemExit):
        main(["export", "--arch", "resnet19", "--out", str(tmp_path / "x.onnx")])
    assert "resnet18" in capsys.readouterr().err
