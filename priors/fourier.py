"""The unconstrained space: an image's spectrum, scaled by 1/frequency, in decorrelated colour.

Natural images have power falling as 1/f^2; scaling each Fourier coefficient by
1/f^decay_power makes all frequencies start with comparable energy in pixel space, so
gradient steps are not dominated by high frequencies (Olah et al. 2017; Mordvintsev et al.
2018). Nothing here keeps the image natural: this is where the optimizer is free to cheat.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from priors.base import DEFAULT_LEARNING_RATE, DEFAULT_STEPS, Parameterization, PriorInfo, PriorKind, register_prior
from priors.color import from_valid_rgb, to_valid_rgb
from priors.costs import ANY_SIZE_JOB_SIDE
from priors.options import Option

INIT_STD = 0.01
OUTPUT_SCALE = 4.0
"""Lucid divides the inverse transform by 4 so that the sigmoid starts near its linear range."""


def frequency_scale(height: int, width: int, decay_power: float = 1.0) -> Tensor:
    """1 / max(|f|, 1/max(h, w)) ** decay_power over the rfft2 grid, shape (height, width//2+1)."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    magnitude = torch.sqrt(fx * fx + fy * fy)
    return (1.0 / magnitude.clamp(min=1.0 / max(height, width)) ** decay_power).float()


class FourierImage(Parameterization):
    """Images whose real and imaginary rfft2 coefficients are the parameters."""

    exact_inverse = True

    scale: Tensor

    def __init__(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        decay_power: float = 1.0,
        decorrelate: bool = True,
        init_std: float = INIT_STD,
    ) -> None:
        super().__init__(batch, height, width)
        self.decorrelate = decorrelate
        shape = (batch, 3, height, width // 2 + 1, 2)
        self.spectrum = nn.Parameter(torch.randn(shape, generator=generator) * init_std)
        self.register_buffer("scale", frequency_scale(height, width, decay_power), persistent=False)

    def forward(self) -> Tensor:
        coefficients = torch.view_as_complex(self.spectrum) * self.scale
        channels = torch.fft.irfft2(coefficients, s=(self.height, self.width), norm="ortho") / OUTPUT_SCALE
        return to_valid_rgb(channels, decorrelate=self.decorrelate)

    def start_from(self, images: Tensor) -> bool:
        channels = from_valid_rgb(images.to(self.spectrum), decorrelate=self.decorrelate) * OUTPUT_SCALE
        coefficients = torch.fft.rfft2(channels, s=(self.height, self.width), norm="ortho") / self.scale
        with torch.no_grad():
            self.spectrum.copy_(torch.view_as_real(coefficients))
        return True


@register_prior(
    PriorInfo(
        name="fourier",
        kind=PriorKind.UNCONSTRAINED,
        description="1/f-scaled Fourier coefficients in decorrelated colour (Lucid's default space)",
        options=(
            Option("decay_power", float, 1.0, "exponent of the 1/f scaling", minimum=0.0, maximum=4.0),
            Option("decorrelate", bool, True, "decorrelate colours"),
        ),
        default_steps=DEFAULT_STEPS,
        default_image_size=ANY_SIZE_JOB_SIDE,
        default_learning_rate=DEFAULT_LEARNING_RATE,
    )
)
def build_fourier(
    batch: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    decay_power: float,
    decorrelate: bool,
) -> FourierImage:
    image = FourierImage(batch, height, width, generator=generator, decay_power=decay_power, decorrelate=decorrelate)
    return image.to(device)
