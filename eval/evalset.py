"""The images an evaluation explains, with their ground truth (:class:`EvalSet`), and its builders:
the synthetic held-out split and the demo photos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from onnxcam.eval.datasets.synthetic import SYNTHETIC_TEST_SEED


@dataclass
class EvalSet:
    """Images with ground truth, in one pixel frame per image.

    ``images[i]``: RGB uint8 ``(H_i, W_i, 3)``; ``boxes[i]``: ``(M_i, 4)`` inclusive boxes;
    ``box_classes[i][m]``: the class indices that name box ``m`` (one for the synthetic set, several
    ImageNet synonyms for photos); ``masks[i]``: boolean ``(H_i, W_i)`` foreground, or ``None`` for
    the whole set when there are none; ``spec``: how to rebuild the set (stored in ``run.json``).
    """

    name: str
    ids: list[str]
    images: Sequence[np.ndarray]
    boxes: list[np.ndarray]
    box_classes: list[list[tuple[int, ...]]]
    masks: Sequence[np.ndarray] | None = None
    spec: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def accepted(self, i: int) -> tuple[int, ...]:
        """Every class that names an object of image ``i``."""
        return tuple(sorted({c for classes in self.box_classes[i] for c in classes}))

    def class_boxes(self, i: int, class_index: int) -> np.ndarray:
        """The ``(M, 4)`` boxes of image ``i`` named by ``class_index`` (all boxes if none is)."""
        keep = [class_index in classes for classes in self.box_classes[i]]
        return self.boxes[i][keep] if any(keep) else self.boxes[i]


def synthetic_eval_set(n: int, image_size: int, num_classes: int, seed: int = SYNTHETIC_TEST_SEED) -> EvalSet:
    """The synthetic held-out split (:func:`~onnxcam.eval.datasets.make_synthetic_dataset`)."""
    from onnxcam.eval.datasets.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(n, seed, image_size, num_classes)
    return EvalSet(
        name="synthetic",
        ids=data.image_ids,
        images=data.images,
        boxes=list(data.boxes),
        box_classes=[[(int(label),)] * len(boxes) for label, boxes in zip(data.labels, data.boxes)],
        masks=data.masks > 0,
        spec={"dataset": "synthetic", "n": n, "seed": seed, "image_size": image_size, "num_classes": num_classes},
    )


def demo_photos_eval_set() -> EvalSet:
    """The five scikit-image photos with hand-labelled boxes (``onnxcam demo``'s set, ImageNet classes)."""
    from onnxcam.eval.datasets.demo_photos import demo_photos, skimage_data_dir
    from onnxcam.runtime.image_io import read_rgb_image

    records = demo_photos()["images"]
    folder = skimage_data_dir()
    return EvalSet(
        name="demo-photos",
        ids=[record["file"] for record in records],
        images=[read_rgb_image(folder / record["file"]) for record in records],
        boxes=[np.array([obj["box"] for obj in record["objects"]], dtype=np.int64) for record in records],
        box_classes=[[tuple(obj["imagenet_classes"]) for obj in record["objects"]] for record in records],
        spec={"dataset": "demo-photos", "n": len(records)},
    )
