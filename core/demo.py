"""``onnxcam.demo``: the public path of ``onnxcam demo`` and its photos, kept for existing
imports; the demo lives in :mod:`onnxcam.apps.demo`, the photos in
:mod:`onnxcam.eval.datasets.demo_photos`."""

from onnxcam.apps.demo import calibration_photos, demo_photo_images, demo_photos, register, run_demo

__all__ = ["calibration_photos", "demo_photo_images", "demo_photos", "register", "run_demo"]
