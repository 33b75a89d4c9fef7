"""``onnxcam.demo``: the public path of ``onnxcam demo`` and its photos, kept for existing
imports; the demo lives in :mod:`onnxcam.apps.demo`, the photos in
:mod:`onnxcam.eval.datasets.demo_photos`."""

from onnxcam.apps.demo import register, run_demo
from onnxcam.eval.datasets.demo_photos import calibration_photos, demo_photo_images, demo_photos

__all__ = ["calibration_photos", "demo_photo_images", "demo_photos", "register", "run_demo"]
