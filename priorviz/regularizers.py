"""Penalties on the image itself (Lucid's total variation, L1 and blur), and the Gaussian blur.

They discourage the high frequencies an unconstrained optimizer uses to "cheat". The penalties
enter the loss; the Gaussian blur edits the image itself every few steps (Yosinski et al. 2015),
which the render loop does for parameterizations that can draw any image. The batch-norm
statistics prior, which needs the model, is in ``priorviz.statistics``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from priorviz.errors import InvalidInputError


def total_variation(images: Tensor) -> Tensor:
    """Mean absolute difference between neighbouring pixels, per image: shape (batch,)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(dim=1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(dim=1)
    return dx + dy


def blur_distance(images: Tensor) -> Tensor:
    """Mean squared difference between each image and its 3x3 box blur, per image: (batch,).

    Lucid's ``blur_input_each_step`` pulls the image towards its blurred copy; as a penalty
    the same pull is this distance's gradient.
    """
    blurred = F.avg_pool2d(F.pad(images, [1, 1, 1, 1], mode="replicate"), 3, stride=1)
    return (images - blurred.detach()).pow(2).flatten(1).mean(dim=1)


def image_penalty(images: Tensor, total_variation_weight: float, l1_weight: float, blur_weight: float = 0.0) -> Tensor:
    """Weighted TV, L1 distance from mid-grey and blur distance, summed over the batch (0 when unweighted)."""
    penalty = images.new_zeros(())
    if total_variation_weight:
        penalty = penalty + total_variation_weight * total_variation(images).sum()
    if l1_weight:
        penalty = penalty + l1_weight * (images - 0.5).abs().flatten(1).mean(dim=1).sum()
    if blur_weight:
        penalty = penalty + blur_weight * blur_distance(images).sum()
    return penalty


def gaussian_kernel(sigma: float) -> Tensor:
    """The normalized 1-D Gaussian of standard deviation ``sigma`` pixels, cut at 3 sigma: (2 * radius + 1,)."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise InvalidInputError(f"a blur's sigma must be positive and finite, got {sigma}", field="blur_sigma")
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Each channel of (batch, C, H, W) ``images`` blurred by a Gaussian of ``sigma`` pixels, edges reflected.

    Separable: a row pass then a column pass. The kernel's radius must be smaller than the image's sides.
    """
    kernel = gaussian_kernel(sigma).to(images)
    radius = kernel.numel() // 2
    if radius >= min(images.shape[-2:]):
        raise InvalidInputError(
            f"a blur of sigma {sigma} reaches {radius} pixels, more than the {tuple(images.shape[-2:])} image",
            field="blur_sigma",
        )
    channels = images.shape[1]
    rows = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    columns = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    padded = F.pad(images, [radius] * 4, mode="reflect")
    return F.conv2d(F.conv2d(padded, rows, groups=channels), columns, groups=channels)
