"""On-disk evaluation sets (``onnxcam eval --dataset wsol|imagenet|cub|voc|coco``): the hand-written
fixtures' quirks (tests/fixtures/datasets/), class maps, and runs end to end on files written by
``onnxcam make-dataset``, whose numbers equal the in-memory synthetic run's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.run_files import chunk_results
from onnxcam.cli import main
from onnxcam.eval.datasets import coco_eval_set, cub_eval_set, imagenet_eval_set, voc_eval_set, wsol_eval_set
from onnxcam.eval.datasets.eval_sets import check_class_indices

FIXTURES = Path(__file__).parents[1] / "fixtures" / "datasets"
IMAGENET, CUB, VOC, COCO, WSOL = (FIXTURES / name for name in ("imagenet", "cub/CUB_200_2011", "voc", "coco", "wsol"))
FIXTURE_ARGUMENTS = {
    "imagenet": ["--annotations", IMAGENET / "Annotations", "--image-root", IMAGENET / "val", "--synsets",
                 IMAGENET / "LOC_synset_mapping.txt"],
    "cub": ["--root", CUB],
    "voc": ["--root", VOC, "--class-map", VOC / "class_map.csv"],
    "coco": ["--annotations", COCO / "annotations" / "instances_val.json", "--image-root", COCO / "images"],
    "wsol": ["--metadata", WSOL / "metadata" / "masks", "--image-root", WSOL],
}


def boxes_of(data):
    return [b.tolist() for b in data.boxes]


# ---- the fixtures' quirks -------------------------------------------------------------------------


def test_imagenet_fixture_objects_synonyms_and_file_names():
    data = imagenet_eval_set(IMAGENET / "Annotations", IMAGENET / "val", IMAGENET / "LOC_synset_mapping.txt")
    stem = "ILSVRC2012_val_0000000"
    # <filename> has no extension (.JPEG added); '%s' names the image by the XML file; two synsets: two entries
    assert data.ids == [f"{stem}1.JPEG", f"{stem}2.JPEG", f"{stem}3.JPEG#n01514668", f"{stem}3.JPEG#n01514859"]
    assert data.images.paths[3] == str(IMAGENET / "val" / f"{stem}3.JPEG")
    assert boxes_of(data) == [
        [[10, 8, 60, 50]],
        [[0, 0, 30, 25], [40, 35, 79, 79], [5, 50, 20, 70]],  # 0-based; the difficult fish is a box too
        [[2, 3, 40, 60]],
        [[45, 10, 89, 69]],
    ]
    assert data.box_classes == [[(0,)], [(1,)] * 3, [(7,)], [(8,)]]
    assert data.sizes == [(100, 75), (80, 80), (90, 70), (90, 70)]
    assert all(data.images[i].shape == (h, w, 3) for i, (w, h) in enumerate(data.sizes))


def test_a_class_map_label_on_several_lines_names_synonym_classes(tmp_path):
    class_map = tmp_path / "map.csv"
    class_map.write_text("n01440764,0\nn01440764,3\nn01443537,1\nn01514668,7\nn01514859,7\n")
    data = imagenet_eval_set(IMAGENET / "Annotations", IMAGENET / "val", class_map=class_map)
    assert data.box_classes[0] == [(0, 3)]
    # cock and hen both map to class 7: one entry, explained against both birds' boxes
    assert data.ids[2:] == ["ILSVRC2012_val_00000003.JPEG"] and boxes_of(data)[2] == [[2, 3, 40, 60], [45, 10, 89, 69]]


def test_unmapped_labels_are_listed_before_any_work(tmp_path):
    class_map = tmp_path / "map.csv"
    class_map.write_text("n01440764,0\n")
    with pytest.raises(ValueError, match=r"3 label\(s\).*map.csv: 'n01443537', 'n01514668', 'n01514859'"):
        imagenet_eval_set(IMAGENET / "Annotations", IMAGENET / "val", class_map=class_map)
    class_map.write_text("n01440764,zero\n")
    with pytest.raises(ValueError, match="map.csv:1: the model class index must be an integer"):
        imagenet_eval_set(IMAGENET / "Annotations", IMAGENET / "val", class_map=class_map)
    with pytest.raises(ValueError, match="needs --synsets"):
        imagenet_eval_set(IMAGENET / "Annotations", IMAGENET / "val")


def test_cub_fixture_one_based_ids_float_boxes_and_splits():
    data = cub_eval_set(CUB)
    assert data.ids == [
        "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg",
        "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg",
        "003.Sooty_Albatross/Sooty_Albatross_0031_1066.jpg",
    ]
    # 3.5 4.25 40.5 30.0 -> int(x), int(y), int(x + w), int(y + h); a box over the whole 72x50
    # image ends on its last pixel
    assert boxes_of(data) == [[[3, 4, 44, 34]], [[0, 0, 71, 49]], [[10, 12, 30, 32]]]
    assert data.box_classes == [[(0,)], [(1,)], [(2,)]]  # class ids 1, 2, 3 -> model classes 0, 1, 2
    assert data.sizes == [(64, 48), (72, 50), (48, 40)]  # from the image headers
    assert cub_eval_set(CUB, "train").ids == ["001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"]
    assert len(cub_eval_set(CUB, "all")) == 4


def test_voc_fixture_difficult_objects_parts_and_several_classes():
    data = voc_eval_set(VOC, class_map=VOC / "class_map.csv")
    # the person of 000032 is only difficult: not evaluated; 000033 holds a cat and a bicycle
    assert data.ids == ["2007_000027.jpg", "2007_000032.jpg#dog", "2007_000033.jpg#cat", "2007_000033.jpg#bicycle"]
    assert boxes_of(data) == [
        [[16, 9, 63, 79]],  # 1-based on disk, to the far edge; the head and hand parts are no objects
        [[0, 0, 39, 49], [59, 39, 95, 71]],  # the difficult dog stays a box a map may match
        [[4, 4, 34, 54]],
        [[39, 9, 77, 57]],
    ]
    assert data.box_classes == [[(7,)], [(5,), (5,)], [(3,)], [(1,)]]
    by_classes = voc_eval_set(VOC, classes=VOC / "classes.txt")  # VOC's 20 classes in their order
    assert by_classes.box_classes[0] == [(14,)]
    with pytest.raises(ValueError, match=r"class indices \[14\].*12 classes.*--class-map"):
        check_class_indices(by_classes, 12, "model.onnx")


def test_coco_fixture_crowds_category_ids_and_float_boxes():
    data = coco_eval_set(COCO / "annotations" / "instances_val.json", COCO / "images")
    # 632 holds only a crowd and 724 nothing: left out; 285 holds a dog and a person
    assert data.ids == ["000000000139.jpg", "000000000285.jpg#18", "000000000285.jpg#1"]
    assert boxes_of(data) == [
        [[10, 5, 40, 45], [45, 20, 79, 59]],  # the crowd box may be matched
        [[2, 30, 41, 63]],  # 30.5 + 33.6 ends past the 64-pixel image: clipped
        [[40, 0, 63, 29]],
    ]
    assert data.box_classes == [[(0,), (0,)], [(1,)], [(0,)]]  # ids 1, 18, 64 -> 0, 1, 2
    mapped = coco_eval_set(COCO / "annotations" / "instances_val.json", COCO / "images", COCO / "class_map.csv")
    assert mapped.box_classes == [[(7,), (7,)], [(5,)], [(7,)]]


def test_wsol_fixture_mask_split_sizes_from_headers_and_boxes_from_masks():
    data = wsol_eval_set(WSOL / "metadata" / "masks", WSOL)
    assert data.ids == ["val/0bt_c3/1cd9ac0169ec7df0.jpg", "val/01g317/3a29f0b33894d4a6.jpg"]
    assert data.sizes == [(64, 64), (80, 60)]  # no image_sizes.txt: the headers
    assert data.box_classes == [[(3,)], [(8,), (8,)]]
    # tight boxes of the instance masks; the second image's masks are at half its size
    assert boxes_of(data) == [[[10, 12, 40, 50]], [[4, 6, 21, 25], [40, 20, 79, 59]]]
    assert data.masks[1].shape == (30, 40) and data.masks[1].sum() == 9 * 10 + 20 * 20


def test_dataset_options_say_what_is_missing_or_not_taken(capsys):
    assert main(["eval", "--dataset", "cub", "--no-report"]) == 2
    assert "--dataset cub needs --root" in capsys.readouterr().err
    assert main(["eval", "--dataset", "cub", "--root", str(CUB), "--metadata", "x", "--no-report"]) == 2
    assert "--dataset cub does not take --metadata" in capsys.readouterr().err


# ---- end to end ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_model(tmp_path_factory):
    """A CAM-ready synthetic_resnet, 12 classes, 96 px (seeded random init: numbers need only be right)."""
    torch = pytest.importorskip("torch")
    from onnxcam.eval.datasets.synthetic import CLASS_NAMES
    from onnxcam.export.synthetic_models import build_synthetic_model, checkpoint_dict, export_synthetic_model

    folder = tmp_path_factory.mktemp("synthetic_model")
    torch.manual_seed(0)
    model = build_synthetic_model("synthetic_resnet")
    torch.save(checkpoint_dict("synthetic_resnet", model, 96, CLASS_NAMES), folder / "model.pt")
    return export_synthetic_model(folder / "model.pt", folder / "synthetic_resnet.onnx")


def evaluate(model, out, arguments, methods=("gradcam",), step="0.1", report=False):
    argv = ["eval", str(model), *map(str, arguments), "--step", step, "--chunk", "4", "--workers", "0", "--quiet"]
    argv += [f"--method={m}" for m in methods] + ["--out", str(out)]
    argv += ["--resamples", "50"] if report else ["--no-report"]
    assert main(argv) == 0
    (folder,) = (out / "runs").glob("*/*")
    return folder


def chunk_arrays(folder):
    return chunk_results(folder, "chunks/**/*.npz")


def written_run(model, out, format):
    """make-dataset's PNG files of 5 images in ``format``, evaluated: the run's chunk arrays."""
    from onnxcam.eval.datasets.writers import eval_arguments

    assert main(["make-dataset", "--format", format, "--images", "5", "--image-format", "png", "--out", str(out / "set")]) == 0
    return chunk_arrays(evaluate(model, out, eval_arguments(format, out / "set")))


@pytest.fixture(scope="module")
def wsol_run(synthetic_model, tmp_path_factory):
    return written_run(synthetic_model, tmp_path_factory.mktemp("wsol"), "wsol")


@pytest.mark.parametrize("format", ["imagenet", "cub", "voc", "coco"])
def test_each_format_written_by_make_dataset_runs_to_the_wsol_numbers(synthetic_model, wsol_run, tmp_path, format):
    """The same PNG pixels and boxes through every format's files give the same arrays."""
    arrays = written_run(synthetic_model, tmp_path, format)
    assert arrays.keys() == wsol_run.keys() and len(wsol_run) == 4  # model + gradcam, 2 chunks each
    for key, expected in wsol_run.items():
        for name, value in expected.items():
            np.testing.assert_array_equal(arrays[key][name], value, err_msg=f"{key} {name}")


@pytest.mark.parametrize("format", list(FIXTURE_ARGUMENTS))
def test_each_quirky_fixture_runs_end_to_end(synthetic_model, tmp_path, format):
    folder = evaluate(synthetic_model, tmp_path, ["--dataset", format, *FIXTURE_ARGUMENTS[format]], report=format == "coco")
    state = json.loads((folder / "run.json").read_text())
    n = state["config"]["dataset"]["n"]
    assert state["complete"] and state["methods"]["gradcam"]["n"] == n
    with np.load(folder / "chunks" / "gradcam" / "000000.npz") as chunk:
        assert len(chunk["relu__levels"]) == min(n, 4)
    if format == "coco":  # the report rebuilds the on-disk set from run.json for its overlays
        assert pd.read_csv(tmp_path / "metrics.csv")["dataset"].eq("coco").all()
        assert list((tmp_path / "overlays").glob("coco_*.png"))


def in_memory_and_written(model, tmp_path, images, methods, step):
    """metrics.csv of the in-memory synthetic run and of the same set written by make-dataset and
    read through --dataset wsol (boxes split; masks split), less the dataset column."""
    tables = {}
    memory = tmp_path / "memory"
    evaluate(model, memory, ["--dataset", "synthetic", "--images", images], methods, step, report=True)
    tables["memory"] = pd.read_csv(memory / "metrics.csv").drop(columns="dataset")
    assert main(["make-dataset", "--format", "wsol", "--images", images, "--out", str(tmp_path / "set")]) == 0
    for split in ("boxes", "masks"):
        out = tmp_path / split
        arguments = ["--dataset", "wsol", "--metadata", tmp_path / "set" / "metadata" / split, "--image-root", tmp_path / "set"]
        evaluate(model, out, arguments, methods, step, report=True)
        table = pd.read_csv(out / "metrics.csv")
        assert table["dataset"].eq("wsol").all()
        tables[split] = table.drop(columns="dataset")
    return tables


def check_equal(tables, out):
    """The same metrics.csv, and under it the same per-image arrays (maps, curves, histograms).
    The boxes split has no masks, so its threshold-free localization scores the boxes' union
    instead of the mask: those arrays are compared on the masks split only."""
    from onnxcam.eval.chunk_metrics import LOCALIZATION_KEYS

    memory, boxes, masks = tables["memory"], tables["boxes"], tables["masks"]
    (in_memory,) = (out / "memory" / "runs").glob("*/*")
    for split in ("boxes", "masks"):
        (folder,) = (out / split / "runs").glob("*/*")
        written = chunk_arrays(folder)
        for key, arrays in chunk_arrays(in_memory).items():
            for name in set(arrays) & set(written[key]):
                if split == "boxes" and name.rsplit("__", 1)[-1] in LOCALIZATION_KEYS:
                    continue
                np.testing.assert_array_equal(written[key][name], arrays[name], err_msg=f"{split} {key} {name}")
    assert memory["metric"].eq("PxAP").any() and not boxes["metric"].eq("PxAP").any()
    pd.testing.assert_frame_equal(masks, memory)  # PxAP, and the masks' tight boxes are the boxes
    with_masks = {"PxAP", *LOCALIZATION_KEYS}
    pd.testing.assert_frame_equal(
        boxes[~boxes["metric"].isin(with_masks)].reset_index(drop=True),
        memory[~memory["metric"].isin(with_masks)].reset_index(drop=True),
    )


def test_synthetic_metrics_through_written_wsol_files_equal_the_in_memory_run(synthetic_model, tmp_path):
    check_equal(in_memory_and_written(synthetic_model, tmp_path, "8", ("gradcam", "cam"), "0.05"), tmp_path)


@pytest.mark.slow
def test_every_method_through_written_wsol_files_equals_the_in_memory_run(tmp_path):
    """The committed synthetic_resnet, every method of the runtime, 100 held-out images."""
    pytest.importorskip("torch")
    from onnxcam.export.synthetic_models import export_synthetic_model
    from onnxcam.runtime import METHODS

    checkpoint = Path(__file__).parents[2] / "models" / "synthetic" / "synthetic_resnet.pt"
    model = export_synthetic_model(checkpoint, tmp_path / "synthetic_resnet.onnx", ["plain", "guided"])
    tables = in_memory_and_written(model, tmp_path, "100", tuple(METHODS), "0.01")
    assert set(tables["memory"]["method"]) == set(METHODS) - set(_skipped(tmp_path / "memory"))
    check_equal(tables, tmp_path)


def _skipped(out):
    (folder,) = (out / "runs").glob("*/*")
    return [m for m, s in json.loads((folder / "run.json").read_text())["methods"].items() if s.get("skipped")]


def test_the_cli_names_every_on_disk_builder():
    from onnxcam.apps.eval_commands import DATASET_OPTIONS, DATASETS, MODEL_SETS
    from onnxcam.eval.datasets.eval_sets import BUILDERS

    assert tuple(BUILDERS) == DATASETS[len(MODEL_SETS):] == tuple(DATASET_OPTIONS)
    for name, (required, optional) in DATASET_OPTIONS.items():
        assert list(BUILDERS[name].__code__.co_varnames[: len(required) + len(optional)]) == [*required, *optional]


def test_a_missing_image_whose_size_the_header_gives_is_named_or_left_out(synthetic_model, tmp_path, capsys):
    import shutil

    root = shutil.copytree(CUB, tmp_path / "CUB_200_2011")
    missing = "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg"
    (root / "images" / missing).unlink()
    arguments = ["--dataset", "cub", "--root", root]
    assert main(["eval", str(synthetic_model), *map(str, arguments), "--no-report", "--out", str(tmp_path / "strict")]) == 2
    assert f"image {missing!r}: {root / 'images' / missing}" in capsys.readouterr().err
    folder = evaluate(synthetic_model, tmp_path / "lenient", [*arguments, "--skip-missing"])
    assert json.loads((folder / "run.json").read_text())["methods"]["gradcam"]["n"] == 2
