"""``onnxcam make-dataset``: each format's files read back, by that format's reader, to the set's
own boxes and labels; the command's defaults are the report's held-out split."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from onnxcam.cli import main

N, SIZE, CLASSES = 6, 64, 3


@pytest.fixture(scope="module")
def data():
    from onnxcam.eval.datasets import make_synthetic_dataset

    return make_synthetic_dataset(N, seed=5, image_size=SIZE, num_classes=CLASSES)


def make(tmp_path, format, *extra):
    out = tmp_path / format
    argv = ["make-dataset", "--format", format, "--images", str(N), "--seed", "5", "--image-size", str(SIZE)]
    assert main([*argv, "--classes", str(CLASSES), "--out", str(out), *extra]) == 0
    return out


def read_pixels(path):
    from onnxcam.runtime.image_io import read_rgb_image

    return read_rgb_image(path)


def test_wsol_files_are_the_set_exactly(tmp_path, data):
    from onnxcam.eval.datasets import read_wsol_mask, read_wsol_metadata

    out = make(tmp_path, "wsol")
    boxes = read_wsol_metadata(out / "metadata" / "boxes")
    assert boxes.image_ids == data.image_ids
    for i, image_id in enumerate(boxes.image_ids):
        np.testing.assert_array_equal(read_pixels(out / image_id), data.images[i])  # PNG: lossless
        assert boxes.boxes[image_id].tolist() == data.boxes[i].tolist()
        assert boxes.class_labels[image_id] == data.labels[i]
        assert boxes.image_sizes[image_id] == (SIZE, SIZE)
    masks = read_wsol_metadata(out / "metadata" / "masks")
    foreground, _ = read_wsol_mask(masks, data.image_ids[2], out)
    np.testing.assert_array_equal(foreground, data.masks[2] > 0)


def test_imagenet_files_read_back(tmp_path, data):
    from onnxcam.eval.datasets import read_voc_folder

    out = make(tmp_path, "imagenet")
    synsets = (out / "LOC_synset_mapping.txt").read_text().splitlines()
    assert len(synsets) == CLASSES and synsets[1] == "n99000001 square-stripes"
    wnids = [line.split()[0] for line in synsets]
    annotations = read_voc_folder(out / "Annotations" / "CLS-LOC" / "val", one_based=False)
    assert [a.filename for a in annotations] == [f"ILSVRC2012_val_{i + 1:08d}" for i in range(N)]
    for i, annotation in enumerate(annotations):
        assert annotation.size == (SIZE, SIZE)
        assert [wnids.index(o.name) for o in annotation.objects] == [data.labels[i]] * len(data.boxes[i])
        assert annotation.boxes().tolist() == data.boxes[i].tolist()
        pixels = read_pixels(out / "Data" / "CLS-LOC" / "val" / f"{annotation.filename}.JPEG")
        assert pixels.shape == (SIZE, SIZE, 3) and np.abs(pixels.astype(int) - data.images[i]).mean() < 30  # JPEG, 4:2:0


def test_cub_files_read_back(tmp_path, data):
    from onnxcam.eval.datasets import read_cub200

    out = make(tmp_path, "cub")
    cub = read_cub200(out)
    assert cub.class_names == ("001.disc-solid", "002.square-stripes", "003.triangle-checker")
    assert cub.labels.tolist() == data.labels.tolist() and not cub.is_train.any()
    assert cub.boxes.tolist() == [b[0].tolist() for b in data.boxes]
    assert all((out / "images" / path).is_file() for path in cub.image_paths)
    assert (out / "bounding_boxes.txt").read_text().splitlines()[0].split()[1].endswith(".0")  # floats, as CUB's


def test_voc_files_read_back(tmp_path, data):
    from onnxcam.eval.datasets import read_voc_folder

    out = make(tmp_path, "voc", "--image-format", "png")
    classes = (out / "classes.txt").read_text().splitlines()
    assert classes == list(data.class_names)
    annotations = read_voc_folder(out / "Annotations")  # 1-based on disk
    assert (out / "ImageSets" / "Main" / "test.txt").read_text().split() == [f"{i + 1:06d}" for i in range(N)]
    for i, annotation in enumerate(annotations):
        assert annotation.boxes(classes[data.labels[i]]).tolist() == data.boxes[i].tolist()
        np.testing.assert_array_equal(read_pixels(out / "JPEGImages" / annotation.filename), data.images[i])


def test_coco_files_read_back(tmp_path, data):
    from onnxcam.eval.datasets import read_coco_json

    out = make(tmp_path, "coco")
    coco = read_coco_json(out / "annotations" / "instances.json")
    assert coco.categories == {k + 1: name for k, name in enumerate(data.class_names)}
    for i, image in enumerate(coco.images):
        assert (out / "images" / image.file_name).is_file() and (image.width, image.height) == (SIZE, SIZE)
        assert coco.boxes_of(image.id, int(data.labels[i]) + 1).tolist() == data.boxes[i].tolist()


def test_multi_object_coco_is_the_multi_object_set(tmp_path):
    from onnxcam.eval.datasets import read_coco_json
    from onnxcam.eval.datasets.multi_object import make_multi_object_dataset

    expected = make_multi_object_dataset(N, seed=5, image_size=SIZE, num_classes=CLASSES, objects=(2, 3))
    out = make(tmp_path, "coco", "--objects", "2-3", "--image-format", "png")
    coco = read_coco_json(out / "annotations" / "instances.json")
    assert len(coco.images) == N
    for i, image in enumerate(coco.images):
        np.testing.assert_array_equal(read_pixels(out / "images" / image.file_name), expected.images[i])
        for k in range(CLASSES):
            mine = expected.boxes[i][expected.labels[i] == k]
            assert sorted(coco.boxes_of(image.id, k + 1).tolist()) == sorted(mine.tolist())
    assert sum(len(b) for b in expected.boxes) > N  # several objects per image


def test_objects_option_refuses_bad_ranges_and_single_object_formats(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["make-dataset", "--format", "coco", "--objects", "0-2", "--out", str(tmp_path / "x")])
    assert "1 <= LOW <= HIGH" in capsys.readouterr().err
    argv = ["make-dataset", "--format", "wsol", "--objects", "2-4", "--images", str(N), "--out", str(tmp_path / "w")]
    assert main(argv) != 0
    assert "one class per image" in capsys.readouterr().err


def test_writers_keep_several_objects_and_classes_per_image(tmp_path):
    from onnxcam.eval.datasets import read_coco_json, read_voc_folder
    from onnxcam.eval.datasets.object_set import ObjectSet
    from onnxcam.eval.datasets.writers import write_dataset

    image = np.zeros((40, 50, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 9, 9], [20, 5, 49, 39], [30, 0, 35, 3]])
    objects = ObjectSet([image], [boxes], [np.array([1, 0, 1])], ("cat", "dog"))
    coco = read_coco_json(write_dataset(objects, tmp_path / "coco", "coco") / "annotations" / "instances.json")
    assert coco.boxes_of(1, 2).tolist() == [[0, 0, 9, 9], [30, 0, 35, 3]] and coco.boxes_of(1, 1).tolist() == [[20, 5, 49, 39]]
    (voc,) = read_voc_folder(write_dataset(objects, tmp_path / "voc", "voc") / "Annotations")
    assert voc.size == (50, 40) and voc.boxes("dog").tolist() == [[0, 0, 9, 9], [30, 0, 35, 3]]
    with pytest.raises(ValueError, match="one class per image"):
        write_dataset(objects, tmp_path / "wsol", "wsol")
    with pytest.raises(ValueError, match="one box per image"):
        write_dataset(objects, tmp_path / "cub", "cub")


def test_defaults_are_the_report_held_out_split():
    from onnxcam.apps import dataset_commands
    from onnxcam.apps.cli import build_parser
    from onnxcam.eval.datasets.synthetic import CLASS_NAMES, SYNTHETIC_TEST_SEED
    from onnxcam.eval.datasets.writers import FORMATS

    assert dataset_commands.FORMATS == FORMATS
    assert dataset_commands.SYNTHETIC_TEST_SEED == SYNTHETIC_TEST_SEED
    assert dataset_commands.SYNTHETIC_CLASSES == len(CLASS_NAMES)
    from onnxcam.eval.datasets.multi_object import MULTI_OBJECT_TEST_SEED

    assert dataset_commands.MULTI_OBJECT_TEST_SEED == MULTI_OBJECT_TEST_SEED
    args = build_parser().parse_args(["make-dataset", "--format", "wsol", "--out", "x"])
    assert (args.images, args.image_size, args.classes, args.objects) == (2000, 96, len(CLASS_NAMES), None)
    assert dataset_commands.dataset_seed(args) == SYNTHETIC_TEST_SEED
    multi = build_parser().parse_args(["make-dataset", "--format", "coco", "--objects", "1-4", "--out", "x"])
    assert multi.objects == (1, 4) and dataset_commands.dataset_seed(multi) == MULTI_OBJECT_TEST_SEED
    eval_args = build_parser().parse_args(["eval"])
    assert eval_args.images == args.images
    torch = pytest.importorskip("torch")
    from onnxcam.export.synthetic_models import IMAGE_SIZE

    assert IMAGE_SIZE == args.image_size


def test_registering_make_dataset_imports_no_eval_dependency():
    script = (
        "import sys; sys.modules['cv2'] = None; from onnxcam.cli import main; "
        "main(['make-dataset', '--format', 'voc', '--out', '/nonexistent/x'])"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and 'pip install "onnxcam[eval]"' in result.stderr, result.stderr
