"""``onnxcam score`` end to end on files written here.

The box numbers are checked against a literal, loop-by-loop rendering of the WSOL code's pipeline
(``inference.py`` normalisation, ``evaluation.py`` BoxEvaluator with ``compute_bboxes_from_scoremaps``,
``resize_bbox`` and ``calculate_multiple_iou``), the PxAP numbers against the WSOL MaskEvaluator
tests' expected values.
"""

import json

import cv2
import numpy as np
import pytest

from onnxcam.cli import main
from onnxcam.eval.datasets import WSOLMetadata, make_synthetic_dataset, write_wsol_metadata


def reference_wsol_box_accuracies(maps, metadata, step):
    """The WSOL pipeline, written as plainly as its code: one findContours call per threshold."""
    thresholds = list(np.arange(0, 1, step))
    correct = {"single": np.zeros(len(thresholds)), 30: np.zeros(len(thresholds)),
               50: np.zeros(len(thresholds)), 70: np.zeros(len(thresholds))}
    for image_id in metadata.image_ids:
        cam = cv2.resize(maps[image_id].astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
        if np.isnan(cam).any() or cam.min() == cam.max():
            cam = np.zeros_like(cam)
        else:
            cam -= cam.min()
            cam /= cam.max()
        width, height = metadata.image_sizes[image_id]
        gt = [[int(x0 * 224 / width), int(y0 * 224 / height), int(x1 * 224 / width), int(y1 * 224 / height)]
              for x0, y0, x1, y1 in metadata.boxes[image_id].tolist()]
        scoremap_image = np.expand_dims((cam * 255).astype(np.uint8), 2)
        for index, threshold in enumerate(thresholds):
            _, binary = cv2.threshold(scoremap_image, int(threshold * np.max(scoremap_image)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                every, single = [[0, 0, 0, 0]], [[0, 0, 0, 0]]
            else:
                def box(contour):
                    x, y, w, h = cv2.boundingRect(contour)
                    return [x, y, min(x + w, 223), min(y + h, 223)]
                every = [box(c) for c in contours]
                single = [box(max(contours, key=cv2.contourArea))]

            def best_iou(boxes):
                best = 0.0
                for a in boxes:
                    for b in gt:
                        iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
                        ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
                        union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
                        best = max(best, iw * ih / union)
                return best

            correct["single"][index] += best_iou(single) >= 0.5
            multi = best_iou(every)
            for delta in (30, 50, 70):
                correct[delta][index] += multi >= delta / 100
    n = float(len(metadata.image_ids))
    accuracy = {key: (value * 100.0 / n).max() for key, value in correct.items()}
    return {
        "MaxBoxAcc": accuracy["single"],
        "MaxBoxAccV2": float(np.average([accuracy[30], accuracy[50], accuracy[70]])),
        "MaxBoxAccV2_IoU30": accuracy[30],
        "MaxBoxAccV2_IoU50": accuracy[50],
        "MaxBoxAccV2_IoU70": accuracy[70],
    }


def random_case(seed, n=16):
    """CAM-like raw maps (7x7 or 14x14, a few bumps) and random images and boxes."""
    rng = np.random.default_rng(seed)
    metadata = WSOLMetadata([])
    maps = {}
    for i in range(n):
        image_id = f"val/img_{i:03d}.JPEG"
        width, height = int(rng.integers(150, 700)), int(rng.integers(150, 700))
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            x0, x1 = sorted(rng.integers(0, width, size=2))
            y0, y1 = sorted(rng.integers(0, height, size=2))
            boxes.append([x0, y0, x1, y1])
        side = int(rng.choice([7, 14]))
        yy, xx = np.mgrid[0:side, 0:side]
        raw = np.zeros((side, side))
        for _ in range(int(rng.integers(1, 4))):
            cx, cy, s = rng.uniform(0, side, size=3)
            raw += rng.uniform(0.3, 1) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.5 + s / 2) ** 2))
        raw += rng.normal(0, 0.05, size=raw.shape)
        metadata.image_ids.append(image_id)
        metadata.class_labels[image_id] = int(rng.integers(1000))
        metadata.image_sizes[image_id] = (width, height)
        metadata.boxes[image_id] = np.array(boxes)
        maps[image_id] = raw.astype(np.float32)
    maps["val/img_000.JPEG"] = np.zeros((7, 7), np.float32)  # a constant map: no box
    return maps, metadata


def run_score(tmp_path, maps, metadata_dir, *extra):
    np.savez(tmp_path / "maps.npz", **maps)
    out = tmp_path / "out"
    code = main(["score", "--maps", str(tmp_path / "maps.npz"), "--metadata", str(metadata_dir), "--out", str(out), *extra])
    return code, out / "metrics.json"


KEYS = ("MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU50", "MaxBoxAccV2_IoU70")


@pytest.mark.parametrize(("seed", "step"), [(0, 0.01), (1, 0.01), (2, 0.05)])
def test_score_matches_the_wsol_pipeline(tmp_path, seed, step):
    maps, metadata = random_case(seed)
    write_wsol_metadata(metadata, tmp_path / "meta")
    code, path = run_score(tmp_path, maps, tmp_path / "meta", "--step", str(step))
    assert code == 0
    metrics = json.loads(path.read_text())
    expected = reference_wsol_box_accuracies(maps, metadata, step)
    for key in KEYS:
        assert metrics[key] == expected[key], key  # the same counts, so the same floats
    assert metrics["n_images"] == len(metadata.image_ids) and metrics["protocol"] == "wsol"


def test_score_matches_the_wsol_pipeline_at_the_default_step(tmp_path):
    maps, metadata = random_case(3, n=3)
    write_wsol_metadata(metadata, tmp_path / "meta")
    code, path = run_score(tmp_path, maps, tmp_path / "meta")
    metrics = json.loads(path.read_text())
    assert code == 0 and metrics["step"] == 0.001
    assert len(metrics["curves"]["thresholds"]) == 1000
    expected = reference_wsol_box_accuracies(maps, metadata, 0.001)
    assert all(metrics[key] == expected[key] for key in KEYS)


def test_score_by_hand_with_curves_and_best_thresholds(tmp_path):
    # One 224x224 image, GT box (50, 50, 149, 149); the map is a 100x100 plateau of 0.5 on that
    # box with a 0.99 core on (50, 50, 79, 79), on a 0 background.
    metadata = WSOLMetadata(["a.jpg"], {"a.jpg": 0}, {"a.jpg": (224, 224)}, {"a.jpg": np.array([[50, 50, 149, 149]])})
    write_wsol_metadata(metadata, tmp_path / "meta")
    scoremap = np.zeros((224, 224))
    scoremap[50:150, 50:150] = 0.5
    scoremap[50:80, 50:80] = 1.0
    code, path = run_score(tmp_path, {"a.jpg": scoremap}, tmp_path / "meta", "--step", "0.25")
    metrics = json.loads(path.read_text())
    # u8 = 127 on the plateau, 255 on the core. Cuts: tau 0 -> 0, 0.25 -> 63: plateau box
    # (50, 50, 150, 150), IoU 100^2 / 101^2 = 0.980; 0.5 -> 127 and 0.75 -> 191: the core,
    # box (50, 50, 80, 80), IoU 31^2 / 101^2 = 0.094.
    assert metrics["curves"]["thresholds"] == [0.0, 0.25, 0.5, 0.75]
    assert metrics["curves"]["MaxBoxAcc"]["curve"] == [100.0, 100.0, 0.0, 0.0]
    assert metrics["curves"]["MaxBoxAcc"]["best_threshold"] == 0.0
    assert metrics["MaxBoxAcc"] == 100.0 and metrics["MaxBoxAccV2"] == 100.0
    assert metrics["curves"]["MaxBoxAccV2_IoU70"]["value"] == 100.0


def write_mask_case(tmp_path, positives, negatives):
    """A mask-layout split with one image whose mask (at 448x448) has the given pixel counts at 224."""
    labels = np.zeros(224 * 224, dtype=np.uint8)
    labels[:positives] = 1
    labels[positives + negatives :] = 2
    labels = labels.reshape(224, 224).repeat(2, axis=0).repeat(2, axis=1)  # nearest-resizes back exactly
    cv2.imwrite(str(tmp_path / "fg.png"), np.where(labels == 1, 255, 0).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "ignore.png"), np.where(labels >= 1, 255, 0).astype(np.uint8))  # box-like
    metadata = WSOLMetadata(["x.jpg"], {"x.jpg": 0}, mask_paths={"x.jpg": ["fg.png"]}, ignore_paths={"x.jpg": "ignore.png"})
    write_wsol_metadata(metadata, tmp_path / "meta")
    return labels[::2, ::2]


@pytest.mark.parametrize(("positives", "negatives"), [(43031, 7145), (833, 49342), (347, 13909)])
def test_score_pxap_matches_the_wsol_mask_tests(tmp_path, positives, negatives):
    labels = write_mask_case(tmp_path, positives, negatives)
    for value in (0.0, 0.5, 1.0):  # a constant map: PxAP = foreground fraction
        code, path = run_score(tmp_path, {"x.jpg": np.full((224, 224), value)}, tmp_path / "meta",
                               "--step", "0.01", "--mask-root", str(tmp_path))
        assert code == 0
        assert json.loads(path.read_text())["PxAP"] == pytest.approx(100 * positives / (positives + negatives), abs=1e-9)
    for ignore_score in (0.0, 1.0):  # a perfect map: 100, whatever the ignored pixels score
        scoremap = (labels == 1).astype(float)
        scoremap[labels == 2] = ignore_score
        code, path = run_score(tmp_path, {"x.jpg": scoremap}, tmp_path / "meta", "--step", "0.01",
                               "--mask-root", str(tmp_path))
        assert json.loads(path.read_text())["PxAP"] == 100.0


def test_score_native_protocol_on_the_synthetic_set(tmp_path):
    data = make_synthetic_dataset(8, seed=5)
    data.write_wsol(tmp_path / "set", images=False)
    maps = {i: (m > 0).astype(np.float32) for i, m in zip(data.image_ids, data.masks)}  # perfect maps
    code, path = run_score(tmp_path, maps, tmp_path / "set" / "metadata" / "boxes", "--protocol", "native", "--step", "0.1")
    metrics = json.loads(path.read_text())
    assert code == 0 and metrics["MaxBoxAcc"] == 100.0 and metrics["MaxBoxAccV2_IoU70"] == 100.0
    code, path = run_score(tmp_path, maps, tmp_path / "set" / "metadata" / "masks", "--step", "0.1",
                           "--mask-root", str(tmp_path / "set"))
    assert code == 0 and json.loads(path.read_text())["PxAP"] == 100.0


def test_score_errors_are_clean(tmp_path, capsys):
    maps, metadata = random_case(0, n=3)
    write_wsol_metadata(metadata, tmp_path / "meta")
    del maps["val/img_001.JPEG"]
    code, _ = run_score(tmp_path, maps, tmp_path / "meta")
    assert code == 2 and "1 image ids have no map" in capsys.readouterr().err
    maps, _ = random_case(0, n=3)
    code, _ = run_score(tmp_path, maps, tmp_path / "meta", "--protocol", "native")
    assert code == 2 and "needs maps at image size" in capsys.readouterr().err
    (tmp_path / "meta" / "localization.txt").write_text("val/img_000.JPEG,1,2,3\n")
    code, _ = run_score(tmp_path, maps, tmp_path / "meta")
    err = capsys.readouterr().err
    assert code == 2 and "localization.txt:1:" in err
