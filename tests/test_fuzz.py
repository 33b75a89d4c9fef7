"""Random bytes and randomly mutated valid files into the model loader and the annotation
parsers: every case ends in the documented error type (or loads), never a crash or a hang."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxcam.eval.datasets import AnnotationError, read_coco_json, read_cub200, read_voc_xml, read_wsol_metadata
from onnxcam.runtime import CamSession, ModelFileError

CASES = 40
PARSER_ERRORS = (AnnotationError, FileNotFoundError)

VOC = """<annotation><filename>a.jpg</filename><size><width>100</width><height>80</height><depth>3</depth></size>
<object><name>dog</name><bndbox><xmin>10</xmin><ymin>5</ymin><xmax>60</xmax><ymax>70</ymax></bndbox></object>
</annotation>
"""
WSOL = {
    "image_ids.txt": "val/a.jpg\nval/b.jpg\n",
    "class_labels.txt": "val/a.jpg,3\nval/b.jpg,7\n",
    "image_sizes.txt": "val/a.jpg,100,80\nval/b.jpg,50,40\n",
    "localization.txt": "val/a.jpg,10,5,60,70\nval/b.jpg,0,0,49,39\nval/b.jpg,3,4,20,30\n",
}
CUB = {
    "images.txt": "1 001.Albatross/a.jpg\n2 002.Auklet/b.jpg\n",
    "image_class_labels.txt": "1 1\n2 2\n",
    "train_test_split.txt": "1 1\n2 0\n",
    "bounding_boxes.txt": "1 60.0 27.0 325.0 304.0\n2 14.0 112.0 388.0 186.0\n",
    "classes.txt": "1 001.Albatross\n2 002.Auklet\n",
}
COCO = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10.0, 5.0, 50.0, 60.0], "iscrowd": 0}],
    "categories": [{"id": 3, "name": "dog"}],
}


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """Flip, delete, duplicate or truncate a few random bytes."""
    array = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        if not array:
            break
        kind, where = int(rng.integers(4)), int(rng.integers(len(array)))
        if kind == 0:
            array[where] = int(rng.integers(256))
        elif kind == 1:
            del array[where : where + int(rng.integers(1, 8))]
        elif kind == 2:
            array[where:where] = array[where : where + int(rng.integers(1, 8))]
        else:
            del array[where:]
    return bytes(array)


def random_bytes(rng: np.random.Generator) -> bytes:
    return rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8).tobytes()


def test_model_loader_fuzz(tiny_cam_model, tmp_path):
    rng = np.random.default_rng(0)
    valid = Path(tiny_cam_model).read_bytes()
    loaded = 0
    for case in range(2 * CASES):
        data = random_bytes(rng) if case < CASES else mutate(valid, rng)
        path = tmp_path / f"case{case}.onnx"
        path.write_bytes(data)
        try:
            CamSession(path, providers="cpu")
            loaded += 1  # a mutation inside the weights can leave a valid model
        except ModelFileError:
            pass
    assert loaded < CASES, "most mutations must be refused"


@pytest.mark.parametrize("kind", ["voc", "wsol", "cub", "coco"])
def test_annotation_parser_fuzz(kind, tmp_path):
    rng = np.random.default_rng({"voc": 1, "wsol": 2, "cub": 3, "coco": 4}[kind])
    files = {
        "voc": {"a.xml": VOC},
        "wsol": WSOL,
        "cub": CUB,
        "coco": {"instances.json": json.dumps(COCO, indent=1)},
    }[kind]
    read = {
        "voc": lambda folder: read_voc_xml(folder / "a.xml"),
        "wsol": read_wsol_metadata,
        "cub": read_cub200,
        "coco": lambda folder: read_coco_json(folder / "instances.json"),
    }[kind]
    valid_folder = tmp_path / "valid"
    valid_folder.mkdir()
    for name, text in files.items():
        (valid_folder / name).write_text(text)
    read(valid_folder)  # the unmutated fixture is valid
    for case in range(2 * CASES):
        folder = tmp_path / f"case{case}"
        folder.mkdir()
        victim = list(files)[int(rng.integers(len(files)))]
        for name, text in files.items():
            data = text.encode()
            if name == victim:
                data = random_bytes(rng) if case < CASES else mutate(data, rng)
            (folder / name).write_bytes(data)
        try:
            read(folder)
        except PARSER_ERRORS as error:
            assert str(error), "errors must say what is wrong"
