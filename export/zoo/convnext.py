"""ConvNeXt-Tiny (Liu et al., 2022) with torchvision's module names and state-dict keys.

``features.0`` is the stem (4x4/4 conv + channels-last LayerNorm), ``features.1/3/5/7`` the four
stages of ``CNBlock`` s (3, 3, 9, 3 blocks), ``features.2/4/6`` the downsamplers (LayerNorm +
2x2/2 conv); ``classifier`` is LayerNorm, Flatten, Linear(768, K). A block is depthwise 7x7 conv,
permute to channels-last, LayerNorm, Linear(4C), GELU, Linear(C), permute back, times a learned
per-channel ``layer_scale``, plus the input (added in place, as torchvision does).

CAM (classifier rows) does not apply: the head normalises the pooled features before its
linear layer. Grad-CAM does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

_LN_EPS = 1e-6
# (channels, blocks) of the four stages: torchvision's convnext_tiny block_setting.
_TINY_STAGES: tuple[tuple[int, int], ...] = ((96, 3), (192, 3), (384, 9), (768, 3))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an ``(N, C, H, W)`` map (normalises each pixel's vector)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    """``x.permute(*dims)`` as a module, so that ``CNBlock.block`` keeps torchvision's indices."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class StochasticDepth(nn.Module):
    """Row-wise stochastic depth (Huang et al., 2016): in training, zero each sample's residual
    branch with probability ``p`` and rescale the rest by ``1 / (1 - p)``; the identity in eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x * keep.bernoulli_(survival) / survival


class CNBlock(nn.Module):
    """``(N, C, H, W) -> (N, C, H, W)``: ``x + layer_scale * block(x)``."""

    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute((0, 2, 3, 1)),
            nn.LayerNorm(dim, eps=_LN_EPS),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute((0, 3, 1, 2)),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.stochastic_depth(self.layer_scale * self.block(x))
        result += x
        return result


class ConvNeXt(nn.Module):
    """``(N, 3, H, W) -> (N, num_classes)`` logits; for ConvNeXt-Tiny ``features.7`` gives
    ``(N, 768, H/32, W/32)``, ``features.5`` ``(N, 384, H/16, W/16)``, ``features.3``
    ``(N, 192, H/8, W/8)``."""

    def __init__(
        self,
        stages: tuple[tuple[int, int], ...] = _TINY_STAGES,
        stochastic_depth_prob: float = 0.1,
        layer_scale: float = 1e-6,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        first = stages[0][0]
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, first, 4, stride=4), LayerNorm2d(first, eps=_LN_EPS))
        ]
        total_blocks = sum(blocks for _, blocks in stages)
        block_id = 0
        for i, (channels, blocks) in enumerate(stages):
            stage = []
            for _ in range(blocks):
                # The drop probability grows linearly with depth, 0 at the first block.
                prob = stochastic_depth_prob * block_id / (total_blocks - 1.0)
                stage.append(CNBlock(channels, layer_scale, prob))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i + 1 < len(stages):
                layers.append(
                    nn.Sequential(
                        LayerNorm2d(channels, eps=_LN_EPS),
                        nn.Conv2d(channels, stages[i + 1][0], kernel_size=2, stride=2),
                    )
                )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = stages[-1][0]
        self.classifier = nn.Sequential(
            LayerNorm2d(last, eps=_LN_EPS), nn.Flatten(1), nn.Linear(last, num_classes)
        )
        # torchvision's init: truncated normal (std 0.02) weights, zero biases, for convs and linears.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def convnext_tiny(num_classes: int = 1000) -> ConvNeXt:
    """ConvNeXt-Tiny, random init: ``(N, 3, 224, 224) -> (N, 1000)``; ``features.7``
    ``(N, 768, 7, 7)``. ``layer_scale`` starts at 1e-6 as in torchvision, so an untrained model's
    blocks are near-identities; trained checkpoints have scales around 0.1 to 1."""
    return ConvNeXt(num_classes=num_classes)
