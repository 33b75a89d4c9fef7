"""ONNX Runtime runs through IOBinding: inputs bound once, outputs allocated on the session's device.

With the CUDA provider a plain ``session.run`` copies each numpy input to the GPU and each output
back, and lets ONNX Runtime pick where outputs live; with a binding the inputs are copied (or, for
``OrtValue`` inputs already on the GPU, not copied at all) and every output is allocated on the GPU
and copied to the host once, after the run. On CPU the same path runs (its copies are host-to-host),
which is how it is tested on machines without a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

Feed = np.ndarray | ort.OrtValue


def binding_device(session: ort.InferenceSession) -> str:
    """``"cuda"`` when the session's first provider is CUDA, else ``"cpu"``: where outputs go."""
    return "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"


def run_bound(
    session: ort.InferenceSession, names: Sequence[str], feeds: dict[str, Feed], device_id: int = 0
) -> list[np.ndarray]:
    """``session.run(names, feeds)`` through an IOBinding: numpy feeds are bound from host memory,
    ``OrtValue`` feeds where they are (on the GPU, say); the outputs ``names`` are allocated on the
    session's device and returned as numpy arrays, in order."""
    binding = session.io_binding()
    for name, value in feeds.items():
        if isinstance(value, ort.OrtValue):
            binding.bind_ortvalue_input(name, value)
        else:
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
    device = binding_device(session)
    for name in names:
        binding.bind_output(name, device, device_id)
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()
