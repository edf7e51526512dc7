"""Decorrelated colour space: optimize in ImageNet's principal colour axes, not in RGB.

The matrix is the square root of ImageNet's RGB colour correlation (the constants Lucid
published), scaled so that its largest column has unit norm. Optimizing in this space
gives every colour direction equal footing, as the 1/f scaling does for frequencies.
"""

from __future__ import annotations

import torch
from torch import Tensor

COLOR_CORRELATION_SQRT = torch.tensor(
    [
        [0.26, 0.09, 0.02],
        [0.27, 0.00, -0.05],
        [0.27, -0.09, 0.03],
    ]
)
COLOR_CORRELATION_NORMALIZED = COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()


def decorrelate_colors(channels: Tensor) -> Tensor:
    """Map (batch, 3, H, W) decorrelated channels to RGB (before the sigmoid)."""
    matrix = COLOR_CORRELATION_NORMALIZED.to(device=channels.device, dtype=channels.dtype)
    return torch.einsum("ck,bkhw->bchw", matrix, channels)


def to_valid_rgb(channels: Tensor, *, decorrelate: bool) -> Tensor:
    """Squash unconstrained channels into [0, 1] RGB, decorrelating colours first if asked."""
    if decorrelate:
        channels = decorrelate_colors(channels)
    return torch.sigmoid(channels)


def from_valid_rgb(images: Tensor, *, decorrelate: bool, eps: float = 1e-4) -> Tensor:
    """The channels that ``to_valid_rgb`` maps to ``images`` (clamped into (eps, 1 - eps) first)."""
    channels = torch.logit(images.clamp(eps, 1 - eps))
    if decorrelate:
        inverse = torch.linalg.inv(COLOR_CORRELATION_NORMALIZED.double()).to(device=images.device, dtype=images.dtype)
        channels = torch.einsum("ck,bkhw->bchw", inverse, channels)
    return channels
