"""Models and images the edge-deployment tests share: fused copies of the zoo exports, their int8
copies, the calibration photos (scikit-image's, minus the demo photos the maps are scored on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

FUSED = (("gradcam", "relu"), ("cam", "relu"), ("gradcam", "abs"))
"""The fused heatmaps every edge test model carries."""

CALIBRATION_IMAGES = 8


def fused_copy(path: Path, out: Path) -> Path:
    """A copy of the CAM-ready model at ``path`` with the :data:`FUSED` heatmaps for its first layer."""
    from onnxcam.export.fused_heatmaps import add_fused_heatmaps
    from onnxcam.export.precision import model_metadata, save_model, set_model_metadata

    model = onnx.load(str(path))
    set_model_metadata(model, add_fused_heatmaps(model, model_metadata(model), FUSED))
    return save_model(model, out)


def calibration_photos(limit: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Up to ``limit`` decoded RGB photos from scikit-image's data folder that are not demo photos
    (nor motorcycle_right.png, the stereo twin of a demo photo), in name order."""
    from onnxcam.demo import demo_photos, skimage_data_dir
    from onnxcam.runtime.image_io import read_rgb_image

    demo = {record["file"] for record in demo_photos()["images"]} | {"motorcycle_right.png"}
    files = sorted(p for p in skimage_data_dir().iterdir() if p.suffix in (".png", ".jpg") and p.name not in demo)
    return [read_rgb_image(p) for p in files[:limit]]


def demo_photo_images() -> tuple[list[str], list[np.ndarray]]:
    """The demo photos' file names and decoded RGB images."""
    from onnxcam.demo import demo_photos, skimage_data_dir
    from onnxcam.runtime.image_io import read_rgb_image

    names = [record["file"] for record in demo_photos()["images"]]
    return names, [read_rgb_image(skimage_data_dir() / name) for name in names]

