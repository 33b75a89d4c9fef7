"""The demo photos: five real photos that ship inside the scikit-image wheel, with hand-labelled
boxes and their ImageNet classes (``demo_photos.json``), and scikit-image's other photos, which
calibrate int8 models without ever being scored."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np


def demo_photos() -> dict:
    """The hand-labelled boxes of demo_photos.json (boxes are inclusive (x0, y0, x1, y1))."""
    return json.loads(resources.files("onnxcam.eval.datasets").joinpath("demo_photos.json").read_text())


def skimage_data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def demo_photo_images() -> tuple[list[str], list[np.ndarray]]:
    """The demo photos' file names and decoded RGB uint8 images, in demo_photos.json's order."""
    from onnxcam.runtime.image_io import read_rgb_image

    names = [record["file"] for record in demo_photos()["images"]]
    return names, [read_rgb_image(skimage_data_dir() / name) for name in names]


CALIBRATION_IMAGES = 8


def calibration_photos(limit: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Up to ``limit`` decoded RGB photos from scikit-image's data folder that are not demo photos
    (nor motorcycle_right.png, the stereo twin of a demo photo), in name order: images to
    calibrate int8 models on that the maps are never scored on."""
    from onnxcam.runtime.image_io import read_rgb_image

    demo = {record["file"] for record in demo_photos()["images"]} | {"motorcycle_right.png"}
    files = sorted(p for p in skimage_data_dir().iterdir() if p.suffix in (".png", ".jpg") and p.name not in demo)
    return [read_rgb_image(p) for p in files[:limit]]
