"""Penalties on the image itself: Lucid's total variation, L1 and blur.

They discourage the high frequencies an unconstrained optimizer uses to "cheat". The batch-norm
statistics prior, which needs the model, is in ``priorviz.statistics``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


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
