"""Random initialisation as torchvision does it, so an untrained zoo model behaves like
``torchvision.models.<arch>(weights=None)`` (benchmarks and tests on random weights see the same
activation scales as users' torchvision models would)."""

from __future__ import annotations

from torch import nn


def init_like_torchvision(model: nn.Module, linear_std: float | None) -> None:
    """Kaiming-normal (fan_out, ReLU) convolutions with zero bias, unit/zero BatchNorm.

    ``linear_std``: std of the normal init of ``nn.Linear`` weights (biases zeroed), as VGG and
    MobileNetV2 do; ``None`` keeps PyTorch's default ``nn.Linear`` init, as ResNet does.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0.0, linear_std)
            nn.init.zeros_(module.bias)
