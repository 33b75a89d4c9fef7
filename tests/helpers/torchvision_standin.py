"""A stand-in ``torchvision`` so that pytorch-grad-cam (``grad-cam``) imports where the real one cannot.

torchvision's compiled ops need a CUDA build of torch, so ``import torchvision`` fails with the CPU
torch used here. pytorch-grad-cam imports it at module level only for helpers that the CAM methods
never call (image transforms, ``SESS``'s resize, the detection target's ``box_iou``). The stand-in
provides those names; calling any of them raises, so nothing can silently use a fake.

Use :func:`import_pytorch_grad_cam` instead of ``import pytorch_grad_cam``: it installs the
stand-in only when the real torchvision cannot be imported.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, NoReturn

_NAMES = {
    "torchvision": (),
    "torchvision.transforms": ("Compose", "Normalize", "ToTensor"),
    "torchvision.transforms.functional": ("resize",),
    "torchvision.ops": ("box_iou",),
}


def _unavailable(qualified: str):
    def call(*args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(
            f"{qualified} is part of the torchvision stand-in (tests/helpers/torchvision_standin.py): "
            "torchvision cannot be imported with this torch build"
        )

    call.__qualname__ = call.__name__ = qualified.rsplit(".", 1)[1]
    return call


def install_torchvision_standin() -> None:
    """Put the stand-in modules into ``sys.modules`` unless a real torchvision imports."""
    try:
        importlib.import_module("torchvision")
        return
    except Exception:  # noqa: BLE001 - any failure (ImportError, RuntimeError from its ops) means no torchvision
        for name in list(sys.modules):
            if name == "torchvision" or name.startswith("torchvision."):
                del sys.modules[name]
    for name, attributes in _NAMES.items():
        module = types.ModuleType(name, "stand-in, see tests/helpers/torchvision_standin.py")
        module.__dict__["__onnxcam_standin__"] = True
        for attribute in attributes:
            setattr(module, attribute, _unavailable(f"{name}.{attribute}"))
        sys.modules[name] = module
    for name in _NAMES:
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])


def import_pytorch_grad_cam() -> types.ModuleType:
    """``pytorch_grad_cam``, imported behind the stand-in when torchvision is unusable."""
    install_torchvision_standin()
    return importlib.import_module("pytorch_grad_cam")
