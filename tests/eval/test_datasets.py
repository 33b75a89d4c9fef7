"""Readers on small fixture files written here, and their errors naming file and line."""

import json
import time

import numpy as np
import pytest

from onnxcam.eval.datasets import (
    CLASS_NAMES,
    AnnotationError,
    WSOLMetadata,
    make_synthetic_dataset,
    read_coco_json,
    read_cub200,
    read_voc_folder,
    read_voc_xml,
    read_wsol_mask,
    read_wsol_metadata,
    wsol_metadata_from_coco,
    wsol_metadata_from_cub,
    wsol_metadata_from_voc,
    write_wsol_metadata,
)


def write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


# WSOL metadata: lines taken from the public metadata of ILSVRC (test), CUB (val), OpenImages (val).

ILSVRC = {
    "image_ids.txt": "val/ILSVRC2012_val_00000001.JPEG\nval/ILSVRC2012_val_00000002.JPEG\n",
    "class_labels.txt": "val/ILSVRC2012_val_00000001.JPEG,65\nval/ILSVRC2012_val_00000002.JPEG,970\n",
    "image_sizes.txt": "val/ILSVRC2012_val_00000001.JPEG,500,375\nval/ILSVRC2012_val_00000002.JPEG,500,375\n",
    "localization.txt": (
        "val/ILSVRC2012_val_00000001.JPEG,111,108,441,193\n"
        "val/ILSVRC2012_val_00000002.JPEG,45,49,499,162\n"
        "val/ILSVRC2012_val_00000002.JPEG,2,69,437,207\n"
    ),
}
CUB = {
    "image_ids.txt": "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg\n",
    "class_labels.txt": "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg,0\n",
    "image_sizes.txt": "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg,560,419\n",
    "localization.txt": "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg,176,136,459,291\n",
}
OPENIMAGES = {
    "image_ids.txt": "val/0bt_c3/1cd9ac0169ec7df0.jpg\nval/0bt_c3/3a29f0b33894d4a6.jpg\n",
    "class_labels.txt": "val/0bt_c3/1cd9ac0169ec7df0.jpg,0\nval/0bt_c3/3a29f0b33894d4a6.jpg,0\n",
    "localization.txt": (
        "val/0bt_c3/1cd9ac0169ec7df0.jpg,val/0bt_c3/1cd9ac0169ec7df0_m0bt_c3_6932e993.png,"
        "val/0bt_c3/1cd9ac0169ec7df0_ignore.png\n"
        "val/0bt_c3/3a29f0b33894d4a6.jpg,val/0bt_c3/3a29f0b33894d4a6_m0bt_c3_3581e3ae.png,"
        "val/0bt_c3/3a29f0b33894d4a6_ignore.png\n"
        "val/0bt_c3/3a29f0b33894d4a6.jpg,val/0bt_c3/3a29f0b33894d4a6_m0bt_c3_d2422806.png,\n"
    ),
}


def test_wsol_imagenet_layout(tmp_path):
    meta = read_wsol_metadata(write(tmp_path, ILSVRC))
    second = "val/ILSVRC2012_val_00000002.JPEG"
    assert meta.image_ids == ["val/ILSVRC2012_val_00000001.JPEG", second]
    assert meta.class_labels[second] == 970
    assert meta.image_sizes[second] == (500, 375)
    assert meta.boxes[second].tolist() == [[45, 49, 499, 162], [2, 69, 437, 207]]
    assert meta.mask_paths == {}


def test_wsol_cub_layout(tmp_path):
    meta = read_wsol_metadata(write(tmp_path, CUB))
    (image_id,) = meta.image_ids
    assert meta.boxes[image_id].tolist() == [[176, 136, 459, 291]]
    assert meta.image_sizes[image_id] == (560, 419)


def test_wsol_openimages_layout(tmp_path):
    meta = read_wsol_metadata(write(tmp_path, OPENIMAGES))
    second = "val/0bt_c3/3a29f0b33894d4a6.jpg"
    assert meta.boxes == {} and meta.image_sizes == {}
    assert meta.mask_paths[second] == [
        "val/0bt_c3/3a29f0b33894d4a6_m0bt_c3_3581e3ae.png",
        "val/0bt_c3/3a29f0b33894d4a6_m0bt_c3_d2422806.png",
    ]
    assert meta.ignore_paths[second] == "val/0bt_c3/3a29f0b33894d4a6_ignore.png"


def test_wsol_round_trip(tmp_path):
    meta = read_wsol_metadata(write(tmp_path / "a", ILSVRC))
    again = read_wsol_metadata(write_wsol_metadata(meta, tmp_path / "b"))
    assert again.image_ids == meta.image_ids and again.image_sizes == meta.image_sizes
    assert {k: v.tolist() for k, v in again.boxes.items()} == {k: v.tolist() for k, v in meta.boxes.items()}
    masks = read_wsol_metadata(write(tmp_path / "c", OPENIMAGES))
    again = read_wsol_metadata(write_wsol_metadata(masks, tmp_path / "d"))
    assert again.mask_paths == masks.mask_paths and again.ignore_paths == masks.ignore_paths


@pytest.mark.parametrize(
    ("name", "text", "line", "message"),
    [
        ("localization.txt", "val/ILSVRC2012_val_00000001.JPEG,111,108,441,193\nval/ILSVRC2012_val_00000002.JPEG,45,49,50\n", 2, "expected 3 or 5"),
        ("localization.txt", "val/ILSVRC2012_val_00000001.JPEG,111,108,x,193\n", 1, "integers"),
        ("localization.txt", "\nval/ILSVRC2012_val_00000001.JPEG,111,108,100,193\n", 2, "x0 <= x1"),
        ("localization.txt", "val/ILSVRC2012_val_00000001.JPEG,111,108,500,193\n", 1, "leaves the 500x375 image"),
        ("localization.txt", "val/nope.JPEG,1,1,2,2\n", 1, "not in image_ids.txt"),
        ("localization.txt", "val/ILSVRC2012_val_00000001.JPEG,1,1,2,2\nval/ILSVRC2012_val_00000002.JPEG,m.png,\n", 2, "a masks line"),
        ("image_sizes.txt", "val/ILSVRC2012_val_00000001.JPEG,500,0\n", 1, "positive"),
        ("class_labels.txt", "val/ILSVRC2012_val_00000001.JPEG,65\nval/ILSVRC2012_val_00000002.JPEG,cat\n", 2, "integers"),
        ("image_ids.txt", "a.jpg\nb.jpg\na.jpg\n", 3, "duplicate"),
    ],
)
def test_wsol_malformed_lines_name_file_and_line(tmp_path, name, text, line, message):
    files = dict(ILSVRC)
    files[name] = text
    if name == "image_ids.txt":
        files = {name: text}
    folder = write(tmp_path, files)
    with pytest.raises(AnnotationError, match=message) as info:
        read_wsol_metadata(folder)
    assert info.value.path == folder / name and info.value.line == line
    assert str(info.value).startswith(f"{folder / name}:{line}: ")


def test_wsol_ignore_mask_only_on_first_line(tmp_path):
    files = dict(OPENIMAGES)
    files["localization.txt"] = "val/0bt_c3/1cd9ac0169ec7df0.jpg,a.png,i.png\nval/0bt_c3/1cd9ac0169ec7df0.jpg,b.png,j.png\n"
    with pytest.raises(AnnotationError, match="first line only") as info:
        read_wsol_metadata(write(tmp_path, files))
    assert info.value.line == 2


def test_wsol_missing_folder_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_wsol_metadata(tmp_path / "nothing")


def test_wsol_masks_are_read_resized_and_ignore_excludes_foreground(tmp_path):
    import cv2

    instance = np.zeros((8, 8), np.uint8)
    instance[0:4, 0:4] = 255
    ignore = np.zeros((8, 8), np.uint8)
    ignore[0:6, 0:6] = 255
    cv2.imwrite(str(tmp_path / "m.png"), instance)
    cv2.imwrite(str(tmp_path / "i.png"), ignore)
    meta = WSOLMetadata(["x"], mask_paths={"x": ["m.png"]}, ignore_paths={"x": "i.png"})
    foreground, ignored = read_wsol_mask(meta, "x", tmp_path, size=(4, 4))
    assert foreground.sum() == 4 and foreground[:2, :2].all()
    assert ignored.sum() == 9 - 4 and not (ignored & foreground).any()


# PASCAL VOC / ImageNet XML

VOC_XML = """<annotation>
  <folder>VOC2012</folder>
  <filename>2007_000027.jpg</filename>
  <size>
    <width>486</width>
    <height>500</height>
    <depth>3</depth>
  </size>
  <object>
    <name>person</name>
    <truncated>1</truncated>
    <difficult>0</difficult>
    <bndbox>
      <xmin>174</xmin>
      <ymin>101</ymin>
      <xmax>349</xmax>
      <ymax>351</ymax>
    </bndbox>
  </object>
  <object>
    <name>dog</name>
    <difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>486</xmax><ymax>500</ymax></bndbox>
  </object>
</annotation>
"""

IMAGENET_XML = """<annotation>
\t<folder>val</folder>
\t<filename>ILSVRC2012_val_00000001</filename>
\t<size><width>500</width><height>375</height><depth>3</depth></size>
\t<object>
\t\t<name>n01751748</name>
\t\t<bndbox><xmin>111</xmin><ymin>108</ymin><xmax>441</xmax><ymax>193</ymax></bndbox>
\t</object>
</annotation>
"""


def test_voc_xml_is_one_based(tmp_path):
    (tmp_path / "a.xml").write_text(VOC_XML)
    annotation = read_voc_xml(tmp_path / "a.xml")
    assert annotation.filename == "2007_000027.jpg" and annotation.size == (486, 500)
    person, dog = annotation.objects
    assert person.name == "person" and person.box.tolist() == [173, 100, 348, 350]
    assert person.truncated and not person.difficult and dog.difficult
    assert dog.box.tolist() == [0, 0, 485, 499]  # the whole image, touching every border
    assert annotation.boxes("dog").tolist() == [[0, 0, 485, 499]]
    assert annotation.boxes(include_difficult=False).tolist() == [[173, 100, 348, 350]]


def test_imagenet_xml_is_zero_based_and_matches_the_wsol_metadata(tmp_path):
    (tmp_path / "ILSVRC2012_val_00000001.xml").write_text(IMAGENET_XML)
    (annotation,) = read_voc_folder(tmp_path, one_based=False)
    assert annotation.boxes().tolist() == [[111, 108, 441, 193]]  # = WSOL localization.txt line 1
    meta = wsol_metadata_from_voc([annotation], ["n01440764", "n01751748"])
    assert meta.class_labels == {"ILSVRC2012_val_00000001": 1}
    assert meta.image_sizes == {"ILSVRC2012_val_00000001": (500, 375)}


def test_voc_multi_class_images_are_left_out_of_wsol_metadata(tmp_path):
    (tmp_path / "a.xml").write_text(VOC_XML)
    assert wsol_metadata_from_voc([read_voc_xml(tmp_path / "a.xml")], ["dog", "person"]).image_ids == []


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("<xmax>349</xmax>", "<xmax>17</xmax>", 13, "not a box inside"),
        ("<ymax>351</ymax>", "<ymax>3.5</ymax>", 17, "integer"),
        ("<ymin>101</ymin>", "", 13, "no <ymin>"),
        ("<width>486</width>", "<width>486</wdth>", 5, "malformed XML"),
        ("<name>person</name>", "<name></name>", 9, "empty <name>"),
        ("<size>", "<sise>", 1, "no <size>"),
    ],
)
def test_voc_malformed_files_name_file_and_line(tmp_path, old, new, line, message):
    path = tmp_path / "bad.xml"
    path.write_text(VOC_XML.replace(old, new, 1))
    if old == "<size>":
        path.write_text(VOC_XML.replace("<size>", "<sise>").replace("</size>", "</sise>"))
    with pytest.raises(AnnotationError, match=message) as info:
        read_voc_xml(path)
    assert info.value.path == path and info.value.line == line


# CUB-200-2011

CUB_FILES = {
    "classes.txt": "1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n",
    "images.txt": (
        "1 001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg\n"
        "2 001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg\n"
        "3 002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg\n"
    ),
    "image_class_labels.txt": "1 1\n2 1\n3 2\n",
    "train_test_split.txt": "1 0\n2 1\n3 0\n",
    "bounding_boxes.txt": "1 60.0 27.0 325.0 304.0\n2 139.0 30.0 153.0 264.0\n3 14.0 112.0 388.0 186.0\n",
}


def test_cub_reader_and_the_wsol_box_rule(tmp_path):
    cub = read_cub200(write(tmp_path, CUB_FILES))
    assert cub.class_names == ("001.Black_footed_Albatross", "002.Laysan_Albatross")
    assert cub.labels.tolist() == [0, 0, 1] and cub.is_train.tolist() == [False, True, False]
    # x1 = x + w, y1 = y + h: the WSOL CUB test metadata lists (60, 27, 385, 331) and (14, 112, 402, 298).
    assert cub.boxes.tolist() == [[60, 27, 385, 331], [139, 30, 292, 294], [14, 112, 402, 298]]
    sizes = {cub.image_paths[0]: (500, 335), cub.image_paths[2]: (500, 347)}
    test = wsol_metadata_from_cub(cub, train=False, image_sizes=sizes)
    assert test.image_ids == [cub.image_paths[0], cub.image_paths[2]]
    assert test.boxes[cub.image_paths[2]].tolist() == [[14, 112, 402, 298]]


@pytest.mark.parametrize(
    ("name", "text", "line", "message"),
    [
        ("bounding_boxes.txt", "1 60.0 27.0 325.0 304.0\n2 139.0 30.0 153.0\n", 2, "fields"),
        ("bounding_boxes.txt", "1 60.0 27.0 325.0 304.0\n2 139.0 30.0 -1 3\n3 1 1 1 1\n", 2, "non-negative"),
        ("train_test_split.txt", "1 0\n2 yes\n3 0\n", 2, "0 or 1"),
        ("image_class_labels.txt", "1 1\n2 1\n3 7\n", 3, "unknown class id"),
        ("image_class_labels.txt", "1 1\n2 1\n2 1\n", 3, "duplicate"),
        ("images.txt", "1 a.jpg\nx b.jpg\n", 2, "cannot read"),
        ("train_test_split.txt", "1 0\n2 1\n", None, "no line for image ids \\[3\\]"),
    ],
)
def test_cub_malformed_files_name_file_and_line(tmp_path, name, text, line, message):
    files = dict(CUB_FILES)
    files[name] = text
    with pytest.raises(AnnotationError, match=message) as info:
        read_cub200(write(tmp_path, files))
    assert info.value.path == tmp_path / name and info.value.line == line


# COCO JSON

COCO = {
    "images": [
        {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
        {"id": 2, "file_name": "b.jpg", "width": 50, "height": 50},
    ],
    "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 18, "bbox": [10.0, 5.5, 20.0, 10.0], "iscrowd": 0},
        {"id": 11, "image_id": 1, "category_id": 18, "bbox": [90.2, 70.0, 30.0, 0.0]},
        {"id": 12, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
        {"id": 13, "image_id": 2, "category_id": 18, "bbox": [5, 5, 10, 10], "iscrowd": 1},
    ],
}


def test_coco_reader_boxes_cover_touched_pixels(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(COCO, indent=2))
    coco = read_coco_json(path)
    assert coco.categories == {18: "dog", 1: "person"}
    # [10, 5.5, 20, 10] covers x in [10, 30), y in [5.5, 15.5): pixels 10..29, 5..15.
    # [90.2, 70, 30, 0]: zero height -> one pixel row; clipped to the 100-pixel-wide image.
    assert coco.boxes_of(1).tolist() == [[10, 5, 29, 15], [90, 70, 99, 70]]
    assert coco.boxes_of(2, include_crowd=False).tolist() == [[0, 0, 9, 9]]
    meta = wsol_metadata_from_coco(coco)
    assert meta.image_ids == ["a.jpg", "b.jpg"]
    assert meta.class_labels == {"a.jpg": 1, "b.jpg": 0}  # categories sorted by id: person 0, dog 1
    assert wsol_metadata_from_coco(coco, include_crowd=True).image_ids == ["a.jpg"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["annotations"][2].pop("category_id"), "missing 'category_id'"),
        (lambda d: d["annotations"][2].update(image_id=7), "unknown image id 7"),
        (lambda d: d["annotations"][2].update(bbox=[1, 2, 3]), "'bbox' must be"),
        (lambda d: d["annotations"][2].update(bbox=[60, 0, 3, 3]), "not a box inside"),
        (lambda d: d["images"][1].update(width="50"), "'width' must be int"),
    ],
)
def test_coco_malformed_objects_name_file_and_line(tmp_path, mutate, message):
    document = json.loads(json.dumps(COCO))
    mutate(document)
    path = tmp_path / "bad.json"
    text = json.dumps(document, indent=2)
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message) as info:
        read_coco_json(path)
    # the reported line is where the offending object starts
    assert text.splitlines()[info.value.line - 1].strip() == "{"
    assert info.value.path == path


def test_coco_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "images": [\n    {"id": 1,}\n  ]\n}\n')
    with pytest.raises(AnnotationError, match="malformed JSON") as info:
        read_coco_json(path)
    assert info.value.line == 3


# Synthetic set


def test_synthetic_set_is_seeded_and_exact():
    a = make_synthetic_dataset(40, seed=3, max_instances=3)
    b = make_synthetic_dataset(40, seed=3, max_instances=3)
    c = make_synthetic_dataset(40, seed=4, max_instances=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (40, 224, 224, 3) and a.images.dtype == np.uint8
    assert a.masks.shape == (40, 224, 224) and a.labels.shape == (40,)
    for masks, boxes in zip(a.masks, a.boxes):
        assert masks.max() == len(boxes) >= 1
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            ys, xs = np.nonzero(masks == k + 1)
            assert [xs.min(), ys.min(), xs.max(), ys.max()] == [x0, y0, x1, y1]


def test_synthetic_set_has_ten_or_more_classes_and_varied_scale():
    assert len(CLASS_NAMES) >= 10 and len({name.split("-")[0] for name in CLASS_NAMES}) == len(CLASS_NAMES)
    data = make_synthetic_dataset(300, seed=0)
    assert set(data.labels.tolist()) == set(range(len(CLASS_NAMES)))
    box_area = np.array([(b[0, 2] - b[0, 0] + 1) * (b[0, 3] - b[0, 1] + 1) for b in data.boxes]) / 224**2
    assert box_area.min() < 0.08 and box_area.max() > 0.5 and box_area.max() <= 0.62
    centres = np.array([[(b[0, 0] + b[0, 2]) / 2, (b[0, 1] + b[0, 3]) / 2] for b in data.boxes])
    assert centres.std(axis=0).min() > 20  # positions vary


def test_synthetic_set_options():
    data = make_synthetic_dataset(5, seed=1, image_size=64, num_classes=3, scale=(0.2, 0.3), max_distractors=0, noise=0)
    assert data.images.shape == (5, 64, 64, 3) and data.class_names == CLASS_NAMES[:3]
    assert data.labels.max() < 3
    with pytest.raises(ValueError):
        make_synthetic_dataset(5, seed=1, num_classes=1)


def test_synthetic_set_is_fast():
    start = time.process_time()
    make_synthetic_dataset(500, seed=0)
    assert time.process_time() - start < 5.0  # ~1-3 ms an image on one core


def test_synthetic_set_writes_the_wsol_layout(tmp_path):
    data = make_synthetic_dataset(6, seed=2, max_instances=2)
    data.write_wsol(tmp_path)
    boxes = read_wsol_metadata(tmp_path / "metadata" / "boxes")
    assert boxes.image_ids == data.image_ids and (tmp_path / data.image_ids[0]).is_file()
    assert all(boxes.boxes[i].tolist() == b.tolist() for i, b in zip(data.image_ids, data.boxes))
    assert boxes.image_sizes[data.image_ids[0]] == (224, 224)
    masks = read_wsol_metadata(tmp_path / "metadata" / "masks")
    foreground, ignore = read_wsol_mask(masks, data.image_ids[3], tmp_path)
    np.testing.assert_array_equal(foreground, data.masks[3] > 0)
    assert not ignore.any()


def test_demo_photo_boxes_lie_inside_their_photos():
    """Inclusive boxes: x1 <= width - 1 and y1 <= height - 1 of the decoded photo, whose size is the
    annotation's ``size_hw`` (a box to the edge once ended one pixel outside, and the box masks of
    the map metrics refused it)."""
    pytest.importorskip("skimage")
    from onnxcam.eval.datasets.demo_photos import demo_photos
    from onnxcam.eval.evalset import demo_photos_eval_set

    eval_set = demo_photos_eval_set()
    for record, image, boxes in zip(demo_photos()["images"], eval_set.images, eval_set.boxes):
        height, width = image.shape[:2]
        assert [height, width] == record["size_hw"], record["file"]
        assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all(), record["file"]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] < width).all() and (boxes[:, 3] < height).all(), record["file"]
