"""MACO (Fel et al. 2023): optimize only the phase of the image's spectrum; its magnitude is a photograph's.

In the Fourier space every frequency's amplitude is free, and on deep networks the optimizer
spends that freedom on high-frequency patterns. MACO fixes the amplitude spectrum to the mean
amplitude of natural photographs (``priors/make_maco_spectrum.py``) and optimizes the phase
alone: the phase is combined with the fixed magnitude, inverted, standardized and squashed
through decorrelated colour into [0, 1]. Whatever the objective, the image keeps a photograph's
power spectrum; what the objective moves is where structure sits.

One departure from Horama: it standardizes a Gaussian phase before use, and the mean of cos(phase)
for phase ~ N(0, 1) is exp(-1/2) = 0.61, so every frequency shares a coherent real part that adds
up at pixel (0, 0) into a saturated spike. Here the phase is used as it is, drawn uniform in
[-pi, pi), where no frequency is favoured.

MACO also returns a transparency map: the magnitude of the loss's gradient on the image,
accumulated over the run, which shows the regions that mattered to the objective.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priors.base import DEFAULT_STEPS, Parameterization, PriorInfo, PriorKind, register_prior
from priors.color import to_valid_rgb
from priors.costs import ANY_SIZE_JOB_SIDE

SPECTRUM_PATH = Path(__file__).with_name("data") / "maco_spectrum.npy"
STANDARDIZE_EPS = 1e-4
TRANSPARENCY_PERCENTILE = 0.8
"""The map is clipped at this quantile of each image's accumulated gradient before scaling to [0, 1],
as Horama draws it, so that a few extreme pixels do not leave the rest black."""
LEARNING_RATE = 0.2
"""Adam's step, in radians of phase: at 0.05 a class logit rises a third as far in 64 steps."""


@functools.cache
def template_spectrum() -> Tensor:
    """The shipped mean amplitude spectrum: (3, S, S // 2 + 1), rows centred on the zero frequency."""
    return torch.from_numpy(np.load(SPECTRUM_PATH))


def resample_spectrum(spectrum: Tensor, height: int, width: int) -> Tensor:
    """``spectrum`` (rows centred) read at an image's rfft2 frequencies: (3, height, width // 2 + 1) in rfft order.

    The template describes amplitude as a function of frequency in cycles per pixel, so an image
    of another size reads it at its own frequencies (bilinear between the template's samples):
    a photograph resized to that size would have the same spectrum's shape.
    """
    side = spectrum.shape[-2]
    rows = torch.fft.fftfreq(height, dtype=torch.float64) * side + side // 2
    columns = torch.fft.rfftfreq(width, dtype=torch.float64) * side
    grid_y = rows / (side - 1) * 2 - 1
    grid_x = columns / (spectrum.shape[-1] - 1) * 2 - 1
    grid = torch.stack(torch.meshgrid(grid_x, grid_y, indexing="xy"), dim=-1).float()
    sampled = F.grid_sample(spectrum[None], grid[None], mode="bilinear", padding_mode="border", align_corners=True)
    return sampled[0]


def standardize(tensor: Tensor) -> Tensor:
    """Zero mean and unit standard deviation per batch element."""
    flat = tensor.flatten(1)
    mean = flat.mean(dim=1).view(-1, *([1] * (tensor.dim() - 1)))
    std = flat.std(dim=1).view(-1, *([1] * (tensor.dim() - 1)))
    return (tensor - mean) / (std + STANDARDIZE_EPS)


def transparency_map(gradient_magnitude: Tensor) -> Tensor:
    """Accumulated |gradient| (batch, 3, H, W) as a grey map in [0, 1], shaped like an image batch."""
    grey = gradient_magnitude.mean(dim=1, keepdim=True)
    ceiling = torch.quantile(grey.flatten(1), TRANSPARENCY_PERCENTILE, dim=1).view(-1, 1, 1, 1)
    clipped = torch.minimum(grey, ceiling)
    scale = clipped.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return torch.where(scale > 0, clipped / scale.clamp(min=torch.finfo(grey.dtype).tiny), 0.0).expand(-1, 3, -1, -1)


class MacoImage(Parameterization):
    """Images whose rfft2 phase is the parameter and whose amplitude is fixed to ``magnitude``."""

    magnitude: Tensor
    gradient_magnitude: Tensor

    def __init__(
        self, batch: int, height: int, width: int, *, generator: torch.Generator, magnitude: Tensor | None = None
    ) -> None:
        super().__init__(batch, height, width)
        if magnitude is None:
            magnitude = resample_spectrum(template_spectrum(), height, width)
        if magnitude.shape != (3, height, width // 2 + 1):
            raise ValueError(f"magnitude must be (3, {height}, {width // 2 + 1}), got {tuple(magnitude.shape)}")
        self.register_buffer("magnitude", magnitude.float(), persistent=False)
        phase = (torch.rand((batch, 3, height, width // 2 + 1), generator=generator) * 2 - 1) * math.pi
        self.phase = nn.Parameter(phase)
        self.register_buffer("gradient_magnitude", torch.zeros(batch, 3, height, width), persistent=False)

    def channels(self) -> Tensor:
        """The decorrelated channels before the sigmoid: standardized inverse transform of magnitude and phase."""
        spectrum = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        return standardize(torch.fft.irfft2(spectrum, s=(self.height, self.width)))

    def forward(self) -> Tensor:
        images = to_valid_rgb(self.channels(), decorrelate=True)
        if images.requires_grad:
            images.register_hook(self._accumulate)
        return images

    def _accumulate(self, gradient: Tensor) -> None:
        self.gradient_magnitude += gradient.detach().abs()

    def extra_images(self) -> dict[str, Tensor]:
        return {"transparency": transparency_map(self.gradient_magnitude)}

    def preferred_learning_rate(self) -> float:
        return LEARNING_RATE


@register_prior(
    PriorInfo(
        name="maco",
        kind=PriorKind.UNCONSTRAINED,
        description="MACO: only the Fourier phase is optimized, the amplitude is fixed to photographs' mean spectrum "
        "(not learned: a template computed from 24 embedded photographs); extra image: transparency",
        default_steps=DEFAULT_STEPS,
        default_image_size=ANY_SIZE_JOB_SIDE,
        default_learning_rate=LEARNING_RATE,
    )
)
def build_maco(batch: int, height: int, width: int, *, generator: torch.Generator, device: torch.device) -> MacoImage:
    return MacoImage(batch, height, width, generator=generator).to(device)
