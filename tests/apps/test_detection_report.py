"""The report's detection rows: a multi-label model's class maps on the multi-object set, every
setting scored as COCO AP, each method x weighting's best setting."""

import numpy as np
import pytest

from onnxcam.apps.detection_report import best_rows, class_maps, detection_rows, draw_detections, ground_truth
from onnxcam.eval.datasets import make_multi_object_dataset
from onnxcam.eval.detection_sweep import DetectionSetting
from onnxcam.eval.detections import detections_from_maps
from onnxcam.runtime import CamSession

MODEL = "models/synthetic/synthetic_multilabel.pt"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    pytest.importorskip("torch")
    from onnxcam.export.synthetic_models import export_synthetic_model

    return CamSession(export_synthetic_model(MODEL, tmp_path_factory.mktemp("ml") / "ml.onnx"), threads=1)


def test_rows_for_every_method_weighting_and_setting_and_the_best_of_each(session):
    data = make_multi_object_dataset(12, seed=7)
    settings = [DetectionSetting(0.3, 0.5), DetectionSetting(0.5, None)]
    table = detection_rows(session, data, ["cam", "gradcam"], ["relu", "abs"], settings=settings)
    assert len(table) == 2 * 2 * 2
    assert list(table.columns[:5]) == ["method", "weighting", "classes", "setting", "box_threshold"]
    assert table["AP"].between(0, 100).all() and table["AP50"].ge(table["AP75"]).all()
    best = best_rows(table)
    assert len(best) == 4 and set(best["setting"]) <= {"box=0.3,nms=0.5", "box=0.5,nms=none"}


def test_maps_of_the_classes_present_or_predicted_with_their_probabilities(session):
    data = make_multi_object_dataset(4, seed=8)
    maps, scores = class_maps(session, data, "gradcam", ["relu"], classes="present")
    assert [sorted(m) for m in maps["relu"]] == [sorted(set(labels.tolist())) for labels in data.labels]
    assert all(m.shape == (96, 96) for image in maps["relu"] for m in image.values())
    assert all(0 < p < 1 for image in scores for p in image.values())
    predicted, _ = class_maps(session, data, "gradcam", ["relu"], classes="predicted")
    assert all(len(image) >= 1 for image in predicted["relu"])
    single = session.explain([data.images[0]], method="gradcam", class_index=int(data.labels[0][0]))
    np.testing.assert_allclose(maps["relu"][0][int(data.labels[0][0])], single.maps[0], atol=1e-6)
    before = detections_from_maps(maps["relu"][0], (0.2, 0.5), None)
    picture = draw_detections(data.images[0], ground_truth(data)[0], before, top=3)
    assert picture.shape == data.images[0].shape and not np.array_equal(picture, data.images[0])
