"""``onnxcam demo``: the model carries ImageNet labels, and the lesson page holds every part."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")


def test_demo_model_and_page(tmp_path):
    from onnxcam.apps.demo import GALLERY, explain_photo, export_demo_model, index_html, summary_markdown
    from onnxcam.eval.datasets.demo_photos import demo_photos, skimage_data_dir
    from onnxcam.runtime import CamSession
    from onnxcam.runtime.image_io import read_rgb_image

    session = CamSession(export_demo_model(tmp_path / "demo.onnx"), prune_graph=True)
    labels = session.metadata.class_labels
    assert len(labels) == 1000 and labels[285] == "Egyptian Mau"
    assert session.layers == ("_relu_head", "_blocks.10") and "guided" in session.metadata.input_gradients

    record = demo_photos()["images"][0]
    result = explain_photo(session, record, read_rgb_image(skimage_data_dir() / record["file"]), tmp_path, False)
    assert result.top[0][0] == "285 Egyptian Mau" and result.correct
    assert [view.title for view in result.gallery] == [title for method, title in GALLERY if method != "scorecam"]
    assert all(0.0 <= view.fixed_iou <= view.best_iou <= 1.0 for view in result.gallery)
    assert [view.title.split(":")[0] for view in result.weightings] == ["relu", "abs", "signed"]
    assert all((tmp_path / view.picture).is_file() for view in result.gallery + result.weightings)
    page = index_html([result], session.layers[1], 1.0)
    for words in ("class activation map", "relu", "abs", "IoU", "colourbar.png", "Egyptian Mau"):
        assert words in page
    assert "| chelsea.png | 285 Egyptian Mau |" in summary_markdown([result], 1.0)
