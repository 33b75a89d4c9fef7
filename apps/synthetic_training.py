"""Training the synthetic-set models on CPU: the engine behind ``onnxcam train-synthetic``.

Every epoch draws a fresh batch of images from the seeded generator
(:func:`onnxcam.eval.datasets.make_synthetic_dataset`, seed ``seed * 100_000 + epoch``), so the
model never sees an image twice and needs no augmentation; the held-out test split is drawn with
:data:`TEST_SEED`, which no training epoch uses. AdamW with a one-cycle learning rate, batch
norm, cross-entropy. With the same arguments and thread count the run is repeatable.
``synthetic_acol`` (ACoL's two-branch loss) and ``synthetic_multilabel`` (the multi-object set,
sigmoid and binary cross-entropy, exact-match accuracy, its own held-out seed) train under their
objectives (:mod:`onnxcam.apps.synthetic_objectives`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from onnxcam.atomic_write import write_atomically, write_text_atomically
from onnxcam.contract import Preprocessing
from onnxcam.apps.synthetic_objectives import SingleLabel, objective_for
from onnxcam.eval.datasets.synthetic import CLASS_NAMES, SYNTHETIC_TEST_SEED
from onnxcam.export.synthetic_models import (
    IMAGE_SIZE,
    build_synthetic_model,
    checkpoint_dict,
    synthetic_arch,
    synthetic_preprocessing,
)

# The held-out split's seed lives in the torch-free eval layer, which evaluates on the same split.
TEST_SEED = SYNTHETIC_TEST_SEED


@dataclass(frozen=True)
class TrainingConfig:
    """What a training run does; every field is a ``train-synthetic`` option.

    The field defaults are ``synthetic_vgg``'s recipe; :meth:`for_arch` starts from the
    architecture's own (:attr:`onnxcam.export.synthetic_models.SyntheticArch.recipe`).
    """

    arch: str
    epochs: int = 4
    images_per_epoch: int = 3500
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 5e-4
    image_size: int = IMAGE_SIZE
    num_classes: int = len(CLASS_NAMES)
    seed: int = 0
    test_images: int = 2000
    acol_delta: float | None = None  # synthetic_acol's erasing threshold; None: the paper's 0.6
    # A checkpoint whose weights of the same names and shapes start the model: a backbone trained
    # on the single-object set, as ACoL fine-tunes an ImageNet-trained one.
    init_from: str | None = None

    @classmethod
    def for_arch(cls, arch: str, **options: object) -> TrainingConfig:
        """The config of ``arch``'s recipe with ``options`` (those not ``None``) on top."""
        recipe = asdict(synthetic_arch(arch).recipe)
        return cls(arch=arch, **{**recipe, **{k: v for k, v in options.items() if v is not None}})


@dataclass
class TrainingResult:
    """The trained model (eval mode) and the run's record."""

    model: nn.Module
    config: TrainingConfig
    test_accuracy: float
    train_seconds: float
    epoch_losses: list[float] = field(default_factory=list)
    epoch_accuracies: list[float] = field(default_factory=list)
    test_seed: int = TEST_SEED
    test_metrics: dict[str, float] = field(default_factory=dict)

    def record(self) -> dict[str, object]:
        """A JSON-ready summary: config, test accuracy (percent), timings, per-epoch curves."""
        return {
            "config": asdict(self.config),
            "test_seed": self.test_seed,
            "test_accuracy": round(self.test_accuracy, 2),
            **{f"test_{key}": round(value, 2) for key, value in self.test_metrics.items()},
            "train_seconds": round(self.train_seconds, 1),
            "epoch_train_loss": [round(v, 4) for v in self.epoch_losses],
            "epoch_train_accuracy": [round(v, 2) for v in self.epoch_accuracies],
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }


def images_to_tensor(images: np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """RGB uint8 ``(N, H, W, 3)`` at the model's size -> float32 ``(N, 3, H, W)`` model input.

    The contract's rule ``(pixel / 255 - mean) / std``; the runtime applies the same one
    (``onnxcam.runtime.inputs``), so the exported model sees what training saw.
    """
    if images.shape[1:3] != tuple(preprocessing.input_size):
        raise ValueError(f"images are {images.shape[1:3]}, the model expects {preprocessing.input_size}")
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float32).view(1, 3, 1, 1)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return ((batch - mean) / std).contiguous()


def epoch_seed(seed: int, epoch: int) -> int:
    """Generator seed of training epoch ``epoch`` (never :data:`TEST_SEED`)."""
    return seed * 100_000 + epoch


@torch.no_grad()
def accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256, objective: SingleLabel | None = None
) -> float:
    """Accuracy (percent) of ``model`` in eval mode on ``(N, 3, H, W)`` ``images``: top-1, or the
    ``objective``'s (:mod:`onnxcam.apps.synthetic_objectives`) for other targets."""
    return held_out_metrics(model, images, labels, batch_size, objective or SingleLabel())[0]


@torch.no_grad()
def held_out_metrics(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int, objective: SingleLabel
) -> tuple[float, dict[str, float]]:
    """``(accuracy, other metrics)`` in percent of ``model`` in eval mode under ``objective``."""
    model.eval()
    logits = torch.cat(
        [objective.predict(model, images[start : start + batch_size]) for start in range(0, len(images), batch_size)]
    )
    return 100.0 * objective.correct(logits, targets) / max(len(images), 1), objective.test_metrics(logits, targets)


def load_matching_weights(model: nn.Module, checkpoint: str | os.PathLike) -> list[str]:
    """Copy into ``model`` the checkpoint's tensors whose names and shapes it shares; return their names."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    own = model.state_dict()
    shared = {name: value for name, value in state.items() if name in own and own[name].shape == value.shape}
    if not shared:
        raise ValueError(f"{checkpoint} shares no weights with {type(model).__name__}")
    model.load_state_dict(shared, strict=False)
    return sorted(shared)


def train_synthetic_model(config: TrainingConfig, progress: bool = True) -> TrainingResult:
    """Train ``config.arch`` on freshly generated synthetic images and test it on the held-out split."""
    from tqdm import tqdm

    if config.epochs < 1 or config.images_per_epoch < 1 or config.batch_size < 1:
        raise ValueError("epochs, images_per_epoch and batch_size must be positive")
    torch.manual_seed(config.seed)
    preprocessing = synthetic_preprocessing(config.image_size)
    objective = objective_for(config.arch)
    model = build_synthetic_model(config.arch, config.num_classes, config.image_size)
    objective.prepare(model, asdict(config))
    if config.init_from:
        load_matching_weights(model, config.init_from)
    steps_per_epoch = -(-config.images_per_epoch // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
    )
    generator = torch.Generator().manual_seed(config.seed)
    result = TrainingResult(model, config, test_accuracy=0.0, train_seconds=0.0, test_seed=objective.test_seed)
    started = time.perf_counter()
    for epoch in range(config.epochs):
        pixels, labels = objective.data(
            config.images_per_epoch, epoch_seed(config.seed, epoch), config.image_size, config.num_classes
        )
        images = images_to_tensor(pixels, preprocessing)
        order = torch.randperm(len(labels), generator=generator)
        model.train()
        total_loss, correct = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"{config.arch} epoch {epoch + 1}/{config.epochs}", disable=not progress)
        for step in bar:
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            loss, logits = objective.loss(model, images[index], labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * len(index)
            correct += objective.correct(logits, labels[index])
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        result.epoch_losses.append(total_loss / len(labels))
        result.epoch_accuracies.append(100.0 * correct / len(labels))
    result.train_seconds = time.perf_counter() - started
    pixels, targets = objective.data(config.test_images, objective.test_seed, config.image_size, config.num_classes)
    result.test_accuracy, result.test_metrics = held_out_metrics(
        model, images_to_tensor(pixels, preprocessing), targets, 256, objective
    )
    model.eval()
    return result


def save_training_result(result: TrainingResult, path: str | os.PathLike, command: str | None = None) -> Path:
    """Write the checkpoint to ``path`` (``.pt``) and the run's record next to it (``.json``)."""
    path = Path(path)
    config = result.config
    record = result.record()
    if command:
        record["command"] = command
    document = checkpoint_dict(
        config.arch, result.model, config.image_size, CLASS_NAMES[: config.num_classes],
        extra={"test_accuracy": record["test_accuracy"], "test_seed": result.test_seed},
    )
    write_atomically(path, lambda temporary: torch.save(document, temporary))
    write_text_atomically(path.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    return path
