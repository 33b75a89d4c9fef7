"""What ``train-synthetic`` optimises for each architecture: its data, loss and accuracy.

- :class:`SingleLabel` (every architecture by default): one object class per image, the
  single-object synthetic set, softmax cross-entropy, top-1 accuracy.
- :class:`ACoLObjective` (``synthetic_acol``): the same data and accuracy (branch A's top-1), the
  ACoL loss of both branches with the ground truth choosing the erased class
  (:meth:`onnxcam.export.synthetic_acol.SyntheticACoL.loss`).
- :class:`MultiLabel` (``synthetic_multilabel``): the multi-object set (1 to 4 objects of any
  classes), one sigmoid per class with binary cross-entropy against the multi-hot classes present;
  accuracy is exact-match (every class right: present above 0.5 probability, absent below), and
  the record adds the per-label accuracy.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from onnxcam.apps.synthetic_dense_objectives import DetectionObjective, SegmentationObjective
from onnxcam.eval.datasets.multi_object import MULTI_OBJECT_TEST_SEED, make_multi_object_dataset
from onnxcam.eval.datasets.synthetic import SYNTHETIC_TEST_SEED, make_synthetic_dataset


class SingleLabel:
    """One class per image: cross-entropy, top-1 accuracy."""

    test_seed: ClassVar[int] = SYNTHETIC_TEST_SEED

    def data(self, n: int, seed: int, image_size: int, num_classes: int) -> tuple[np.ndarray, torch.Tensor]:
        """``(images (n, H, W, 3) uint8, targets)`` of seed ``seed``."""
        data = make_synthetic_dataset(n, seed, image_size, num_classes)
        return data.images, torch.from_numpy(data.labels)

    def prepare(self, model: nn.Module, options: dict[str, object]) -> None:
        """Apply the objective's options to a fresh model (none here)."""

    def loss(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, logits (N, K))`` of one training batch."""
        logits = model(images)
        return nn.functional.cross_entropy(logits, targets), logits

    def predict(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """What the held-out metrics read of a batch: the logits (N, K)."""
        return model(images)

    def correct(self, logits: torch.Tensor, targets: torch.Tensor) -> int:
        """How many images of the batch are classified right."""
        return int((logits.argmax(dim=1) == targets).sum())

    def test_metrics(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Held-out metrics besides the accuracy (percent)."""
        return {}


class ACoLObjective(SingleLabel):
    """ACoL's loss on both branches; ``acol_delta`` (an option) sets the erasing threshold."""

    def prepare(self, model: nn.Module, options: dict[str, object]) -> None:
        if options.get("acol_delta") is not None:
            model.delta.fill_(float(options["acol_delta"]))

    def loss(self, model, images, targets):
        return model.loss(images, targets)


class MultiLabel(SingleLabel):
    """Sigmoid per class, binary cross-entropy, on the multi-object set."""

    test_seed: ClassVar[int] = MULTI_OBJECT_TEST_SEED

    def data(self, n, seed, image_size, num_classes):
        data = make_multi_object_dataset(n, seed, image_size, num_classes)
        return data.images, torch.from_numpy(data.multi_hot())

    def loss(self, model, images, targets):
        logits = model(images)
        return nn.functional.binary_cross_entropy_with_logits(logits, targets), logits

    def correct(self, logits, targets):
        return int(((logits > 0) == (targets > 0.5)).all(dim=1).sum())

    def test_metrics(self, logits, targets):
        return {"label_accuracy": 100.0 * float(((logits > 0) == (targets > 0.5)).float().mean())}


OBJECTIVES: dict[str, SingleLabel] = {
    "synthetic_acol": ACoLObjective(),
    "synthetic_multilabel": MultiLabel(),
    "synthetic_segmenter": SegmentationObjective(),
    "synthetic_detector": DetectionObjective(),
}


def objective_for(arch: str) -> SingleLabel:
    """The objective ``train-synthetic`` uses for ``arch`` (single-label unless listed in OBJECTIVES)."""
    return OBJECTIVES.get(arch, SingleLabel())
