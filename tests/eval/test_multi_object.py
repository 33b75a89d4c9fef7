"""The multi-object synthetic set: seeded, exact per-object masks and boxes, overlaps, COCO output;
and the single-object set it shares its drawing with, pinned bit for bit."""

import hashlib

import numpy as np
import pytest

from onnxcam.eval.datasets import make_synthetic_dataset, read_coco_json
from onnxcam.eval.datasets import make_multi_object_dataset


def digest(*arrays) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()[:16]


def test_the_single_object_set_is_bit_identical_to_before_the_multi_object_set():
    # Digests taken before the drawing code was shared with the multi-object set.
    data = make_synthetic_dataset(40, 1, 96, 12, max_instances=3)
    assert digest(data.images, data.masks, data.labels, *data.boxes) == "323b5e80e13e01ab"
    data = make_synthetic_dataset(20, 5, 224, 5, max_instances=3)
    assert digest(data.images, data.masks, data.labels, *data.boxes) == "7906b17124eef9fb"


@pytest.fixture(scope="module")
def dataset():
    return make_multi_object_dataset(120, seed=3)


def test_seeded(dataset):
    again = make_multi_object_dataset(120, seed=3)
    assert np.array_equal(again.images, dataset.images)
    assert all(np.array_equal(a, b) for a, b in zip(again.boxes, dataset.boxes))
    assert not np.array_equal(make_multi_object_dataset(5, seed=4).images, dataset.images[:5])


def test_one_to_four_objects_of_same_and_different_classes_some_overlapping(dataset):
    counts = np.array([len(labels) for labels in dataset.labels])
    assert counts.min() == 1 and counts.max() == 4
    repeated = [len(set(labels.tolist())) < len(labels) for labels in dataset.labels if len(labels) > 1]
    assert 0 < np.mean(repeated) < 1
    overlapping = 0
    for boxes in dataset.boxes:
        x0 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
        x1 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
        y0 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
        y1 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
        overlapping += int(np.triu((x1 >= x0) & (y1 >= y0), 1).sum())
    assert overlapping > 20


def test_each_object_has_its_own_exact_mask_and_tight_box(dataset):
    for image, boxes, labels, masks in zip(dataset.images, dataset.boxes, dataset.labels, dataset.masks):
        assert masks.dtype == bool and masks.shape == (len(labels),) + image.shape[:2]
        assert masks.sum(axis=0).max() == 1  # visible pixels belong to one object
        for box, mask in zip(boxes, masks):
            ys, xs = np.nonzero(mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
    hot = dataset.multi_hot()
    assert hot.shape == (120, 12)
    assert all(set(np.flatnonzero(row)) == set(labels.tolist()) for row, labels in zip(hot, dataset.labels))


def test_the_format_writers_write_it_as_coco_with_every_box_and_class(tmp_path):
    from onnxcam.eval.datasets.writers import write_dataset

    data = make_multi_object_dataset(6, seed=9)
    objects = data.objects()
    for masks, instance_map in zip(data.masks, objects.masks):
        assert all(np.array_equal(instance_map == k + 1, mask) for k, mask in enumerate(masks))
    folder = write_dataset(objects, tmp_path, "coco", image_format="png")
    coco = read_coco_json(folder / "annotations" / "instances.json")
    for image in coco.images:
        i = image.id - 1
        assert coco.boxes_of(image.id).tolist() == data.boxes[i].tolist()
        assert (coco.category_ids[coco.image_ids == image.id] - 1).tolist() == data.labels[i].tolist()
        assert (folder / "images" / image.file_name).is_file()


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="objects"):
        make_multi_object_dataset(1, 0, objects=(0, 2))
    with pytest.raises(ValueError, match="min_visible"):
        make_multi_object_dataset(1, 0, min_visible=1.5)
