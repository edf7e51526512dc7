"""Transformation robustness: random pad, jitter, scale and rotation before every step.

Each transform draws its randomness from an explicit ``torch.Generator`` (on the CPU), so a
seeded job sees the same sequence of transforms on any device. ``standard_transforms()`` is
Lucid's standard set: pad 12 (constant 0.5), jitter 8, scale in {0.90, 0.92, ..., 1.10},
rotate in -10..10 degrees, jitter 4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def _choice(options: Sequence[float], generator: torch.Generator) -> float:
    return float(options[int(torch.randint(len(options), (1,), generator=generator))])


class Transform:
    """A random image-to-image map; ``images`` are (batch, 3, H, W)."""

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Pad(Transform):
    """Constant padding, so jitter and rotation do not reveal the image's own edge."""

    width: int
    value: float = 0.5

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        return F.pad(images, [self.width] * 4, mode="constant", value=self.value)


@dataclass(frozen=True)
class Jitter(Transform):
    """A random crop that is ``amount`` pixels smaller on each axis."""

    amount: int

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        if self.amount <= 0:
            return images
        height, width = images.shape[-2:]
        dx, dy = (int(v) for v in torch.randint(self.amount + 1, (2,), generator=generator))
        return images[..., dy : dy + height - self.amount, dx : dx + width - self.amount]


@dataclass(frozen=True)
class ScaleRotate(Transform):
    """Random rescale and rotation in one bilinear resampling.

    The output side is the input side times the chosen scale (as Lucid's random_scale),
    and the rotation keeps the content centred.
    """

    scales: tuple[float, ...]
    angles: tuple[float, ...]

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        scale = _choice(self.scales, generator) if self.scales else 1.0
        angle = math.radians(_choice(self.angles, generator)) if self.angles else 0.0
        height, width = images.shape[-2:]
        out_size = (max(1, round(height * scale)), max(1, round(width * scale)))
        if angle == 0.0:
            if out_size == (height, width):
                return images
            return F.interpolate(images, size=out_size, mode="bilinear", align_corners=False)
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], device=images.device, dtype=images.dtype)
        grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), [images.shape[0], 3, *out_size], align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True)
class Compose(Transform):
    transforms: tuple[Transform, ...]

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        for transform in self.transforms:
            images = transform(images, generator)
        return images


STANDARD_PAD = 12
STANDARD_JITTER = 8
STANDARD_FINAL_JITTER = 4
LUCID_SCALES: tuple[float, ...] = tuple(1.0 + (step - 5) / 50 for step in range(11))
"""0.90, 0.92, ..., 1.10"""
LUCID_ANGLES: tuple[float, ...] = tuple(range(-10, 11))
"""-10, -9, ..., 10 degrees"""
SCALE_CHOICES = 11
ANGLE_CHOICES = 21
"""How many evenly spaced scales and angles ``adjusted_transforms`` draws from, as many as Lucid's standard set."""


def standard_transforms(
    *,
    pad: int = STANDARD_PAD,
    pad_value: float = 0.5,
    jitter: int = STANDARD_JITTER,
    scales: Sequence[float] = LUCID_SCALES,
    angles: Sequence[float] = LUCID_ANGLES,
    final_jitter: int = STANDARD_FINAL_JITTER,
) -> Compose:
    """Lucid's standard transformation-robustness set, each part adjustable."""
    return Compose(
        (Pad(pad, pad_value), Jitter(jitter), ScaleRotate(tuple(scales), tuple(angles)), Jitter(final_jitter))
    )


def evenly_spaced(low: float, high: float, count: int) -> tuple[float, ...]:
    """``count`` values from ``low`` to ``high`` inclusive; the one value ``low`` when they are equal."""
    if low == high:
        return (float(low),)
    return tuple(low + (high - low) * index / (count - 1) for index in range(count))


def adjusted_transforms(
    *,
    pad: int | None = None,
    jitter: int | None = None,
    scale_range: tuple[float, float] | None = None,
    rotation: float | None = None,
    final_jitter: int | None = None,
) -> Compose:
    """Lucid's standard set with the parameters given changed (None keeps the standard's).

    Scales are drawn from ``SCALE_CHOICES`` values spread evenly over ``scale_range``, angles from
    ``ANGLE_CHOICES`` over ``-rotation..rotation`` degrees (whole degrees for the standard 10).
    """
    return standard_transforms(
        pad=STANDARD_PAD if pad is None else pad,
        jitter=STANDARD_JITTER if jitter is None else jitter,
        scales=LUCID_SCALES if scale_range is None else evenly_spaced(*scale_range, SCALE_CHOICES),
        angles=LUCID_ANGLES if rotation is None else evenly_spaced(-rotation, rotation, ANGLE_CHOICES),
        final_jitter=STANDARD_FINAL_JITTER if final_jitter is None else final_jitter,
    )


NO_TRANSFORMS = Compose(())
