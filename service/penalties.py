"""Optional frequency penalties on the image itself (Lucid's total variation and L1)."""

from __future__ import annotations

from torch import Tensor


def total_variation(images: Tensor) -> Tensor:
    """Mean absolute difference between neighbouring pixels, per image: shape (batch,)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(dim=1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(dim=1)
    return dx + dy


def image_penalty(images: Tensor, total_variation_weight: float, l1_weight: float) -> Tensor:
    """Weighted TV plus L1 distance from mid-grey, summed over the batch (0 when unweighted)."""
    penalty = images.new_zeros(())
    if total_variation_weight:
        penalty = penalty + total_variation_weight * total_variation(images).sum()
    if l1_weight:
        penalty = penalty + l1_weight * (images - 0.5).abs().flatten(1).mean(dim=1).sum()
    return penalty
