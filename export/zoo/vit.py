"""A small Vision Transformer with torchvision's ``VisionTransformer`` names, to test Grad-CAM on
tokens.

The module and state-dict names are those of torchvision's ``vit_b_16`` (``conv_proj``,
``class_token``, ``encoder.pos_embedding``, ``encoder.layers.encoder_layer_N.{ln_1,
self_attention, ln_2, mlp.0, mlp.3}``, ``encoder.ln``, ``heads.head``), so the same code and the
same :func:`tokens_to_grid` work on a real ``vit_b_16`` checkpoint built with
``VisionTransformer(224, 16, 12, 12, 768, 3072)``. The zoo's ``vit_tiny`` is much smaller (4
layers, width 64, 4 heads): it has no trained weights and exists to exercise the token path.

Target layers for Grad-CAM are the ``ln_1`` of an encoder block (as pytorch-grad-cam's ViT
example): its output ``(N, 1 + h*w, C)`` feeds attention, through which every patch token reaches
the class token. A block's *output* after the last attention is useless: only the class token
reaches the head from there, so the patch tokens' gradients are zero.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

_LN_EPS = 1e-6


def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """ViT tokens ``(N, 1 + h*w, C)`` -> a square grid ``(N, C, h, w)``, the class token dropped.

    The ``reshape`` of :func:`onnxcam.export.export_cam_model` for ViTs with one leading class
    token and a square patch grid (pytorch-grad-cam's ``reshape_transform``). The grid side comes
    from the (static) token count; the batch stays symbolic for a dynamic-batch export.
    """
    side = math.isqrt(int(tokens.shape[1]) - 1)
    if side * side != int(tokens.shape[1]) - 1:
        raise ValueError(
            f"{int(tokens.shape[1])} tokens are not 1 class token + a square grid; "
            "write a reshape for this layout"
        )
    return tokens[:, 1:, :].unflatten(1, (side, side)).permute(0, 3, 1, 2)


class MLPBlock(nn.Sequential):
    """Linear, GELU, Dropout, Linear, Dropout (indices 0..4, as torchvision's ``MLPBlock``)."""

    def __init__(self, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.normal_(module.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))``, then ``+ mlp(ln_2(.))``; ``(N, T, C)``."""

    def __init__(self, num_heads: int, dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.self_attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.mlp = MLPBlock(dim, mlp_dim, dropout)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + input
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    """Position embedding, ``num_layers`` blocks named ``encoder_layer_N``, final LayerNorm."""

    def __init__(
        self, seq_length: int, num_layers: int, num_heads: int, dim: int, mlp_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(
            OrderedDict(
                (f"encoder_layer_{i}", EncoderBlock(num_heads, dim, mlp_dim, dropout))
                for i in range(num_layers)
            )
        )
        self.ln = nn.LayerNorm(dim, eps=_LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class VisionTransformer(nn.Module):
    """``(N, 3, S, S) -> (N, num_classes)`` logits from the class token; ``S = image_size`` is
    fixed by the position embedding. An ``ln_1`` gives ``(N, 1 + (S/P)^2, dim)`` tokens."""

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch {patch_size}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.dim = dim
        self.conv_proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(seq_length, num_layers, num_heads, dim, mlp_dim, dropout)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(dim, num_classes)))
        # torchvision's init for the patch projection (LeCun-normal-like truncated normal).
        fan_in = 3 * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        # torchvision zero-initialises the head, which makes every logit 0 and every gradient 0 in
        # an untrained model; a small normal init keeps the random-weight zoo model testable.
        nn.init.normal_(self.heads.head.weight, std=0.02)
        nn.init.zeros_(self.heads.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = int(x.shape[2]), int(x.shape[3])
        if (height, width) != (self.image_size, self.image_size):
            raise ValueError(
                f"input is {height}x{width}; this ViT takes {self.image_size}x{self.image_size}"
            )
        tokens = self.conv_proj(x).flatten(2).transpose(1, 2)  # (N, (S/P)^2, dim)
        tokens = torch.cat([self.class_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.heads(self.encoder(tokens)[:, 0])


def vit_tiny(num_classes: int = 1000) -> VisionTransformer:
    """A 4-layer ViT, width 64, 4 heads, MLP 256, patch 16 on 224x224 (14x14 patches), random
    init: ``(N, 3, 224, 224) -> (N, 1000)``; ``encoder.layers.encoder_layer_3.ln_1``
    ``(N, 197, 64)``."""
    return VisionTransformer(224, 16, 4, 4, 64, 256, num_classes=num_classes)
