"""``onnxcam inspect``: the page, its pictures and numbers on synthetic_resnet, and clean refusals."""

from __future__ import annotations

import json

import pytest

from helpers.behaviour_models import synthetic_resnet_plain  # noqa: F401  (fixture)
from onnxcam.apps.cli import main

PICTURES = ("neighbours.png", "tsne.png", "activations.png", "patches.png", "class_visualization.png", "class_scores.png")


def test_inspect_writes_the_page_and_its_numbers(synthetic_resnet_plain, tmp_path, capsys):
    out = tmp_path / "inspect"
    code = main([
        "inspect", str(synthetic_resnet_plain), "--dataset", "synthetic", "--images", "120", "--out", str(out),
        "--channels", "0,5-6", "--classes", "1,7", "--k", "4", "--steps", "6", "--quiet",
    ])
    assert code == 0
    document = json.loads((out / "inspect.json").read_text())
    assert document["layer"] == "layer3" and document["n_images"] == 120
    # 12 classes: chance is ~1/12; the trained model's neighbours share labels far more often.
    assert document["neighbour_label_agreement_chance"] < 0.1
    assert document["neighbour_label_agreement"] > 0.6
    assert 0.8 < document["trustworthiness"] <= 1.0
    assert document["receptive_field"]["size"] == [103, 103] and document["receptive_field"]["exact"]
    assert sorted(document["patches"]) == ["0", "5", "6"] and all(len(h) == 4 for h in document["patches"].values())
    assert document["class_visualization"]["classes"] == [1, 7]
    page = (out / "index.html").read_text()
    for picture in PICTURES:
        assert (out / picture).stat().st_size > 1000 and f"src='{picture}'" in page
    assert "neighbour-label agreement" in capsys.readouterr().out


def test_inspect_refuses_bad_input(synthetic_resnet_plain, tiny_cam_model, tmp_path, capsys):
    common = ["--dataset", "synthetic", "--images", "20", "--out", str(tmp_path / "x"), "--quiet"]
    assert main(["inspect", str(synthetic_resnet_plain), "--layer", "layer9", *common]) == 2
    assert "layer 'layer9' is not in synthetic_resnet.onnx; exported layers: layer3" in capsys.readouterr().err
    assert main(["inspect", str(synthetic_resnet_plain), "--channels", "3,128", *common]) == 2
    assert "channel 128 is out of range: layer3 has 128 channels (0..127)" in capsys.readouterr().err
    assert main(["inspect", str(synthetic_resnet_plain), "--classes", "12", *common]) == 2
    assert "class 12 is out of range for synthetic_resnet.onnx, which has 12 classes" in capsys.readouterr().err
    assert main(["inspect", str(tiny_cam_model), "--classes", "0", *common]) == 2
    assert "has no input gradients" in (err := capsys.readouterr().err) and "--input-gradients plain" in err
    assert not (tmp_path / "x" / "index.html").exists()


def test_inspect_without_input_gradients_says_how_to_get_class_visualization(tiny_cam_model, tmp_path):
    out = tmp_path / "tiny"
    args = ["--dataset", "synthetic", "--images", "16", "--out", str(out), "--k", "3", "--quiet"]
    assert main(["inspect", str(tiny_cam_model), *args]) == 0
    assert json.loads((out / "inspect.json").read_text())["class_visualization"] is None
    assert "--input-gradients plain" in (out / "index.html").read_text()
    assert not (out / "class_visualization.png").exists()
