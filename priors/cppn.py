"""Lucid's CPPN (Mordvintsev et al. 2018): the image is a small network of the pixel's coordinates.

A compositional pattern-producing network maps each pixel's (x, y, r) to its colour through 1x1
layers; its weights are what the optimizer changes. An image drawn this way is smooth and
resolution-free, made of the shapes that compositions of smooth functions draw (stripes, blobs,
symmetric curves), so it cannot hold pixel-level adversarial noise. As in Lucid, each hidden
layer's activation is ``atan`` and its square side by side, scaled to unit variance on Gaussian
input, the hidden weights start Gaussian with variance 1/fan-in and the output layer starts at
zero (a grey image). Every batch element has its own network.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from priors.base import DEFAULT_STEPS, Parameterization, PriorInfo, PriorKind, register_prior
from priors.costs import ANY_SIZE_JOB_SIDE
from priors.options import Option

COORDINATE_EXTENT = math.sqrt(3.0)
"""Coordinates run over [-sqrt(3), sqrt(3)] on the longer side: a uniform grid there has unit variance."""
ATAN_RMS = 0.67
ATAN_SQUARED_RMS = 0.6
"""RMS of atan(x) and atan(x)^2 for x ~ N(0, 1), as Lucid measured them, to keep layers at unit scale."""
LEARNING_RATE = 0.005
"""Lucid's rate for CPPNs: every weight moves the whole image, so steps must be small."""


def coordinate_grid(height: int, width: int) -> Tensor:
    """(3, height, width): x and y on an evenly spaced grid (aspect kept, longer side over the full
    extent) and the radius r = sqrt(x^2 + y^2)."""
    longer = max(height, width)
    y = torch.linspace(-COORDINATE_EXTENT, COORDINATE_EXTENT, height) * (height - 1) / max(longer - 1, 1)
    x = torch.linspace(-COORDINATE_EXTENT, COORDINATE_EXTENT, width) * (width - 1) / max(longer - 1, 1)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy, torch.sqrt(xx * xx + yy * yy)])


def composite_activation(features: Tensor) -> Tensor:
    """atan and its square, each scaled to unit RMS, concatenated on dim 1: twice the channels."""
    angle = torch.atan(features)
    return torch.cat([angle / ATAN_RMS, angle * angle / ATAN_SQUARED_RMS], dim=1)


class CppnImage(Parameterization):
    """One CPPN per batch element, evaluated on the coordinate grid of the requested size."""

    coordinates: Tensor

    def __init__(
        self, batch: int, height: int, width: int, *, generator: torch.Generator, layers: int = 8, hidden: int = 24
    ) -> None:
        super().__init__(batch, height, width)
        self.register_buffer("coordinates", coordinate_grid(height, width).flatten(1), persistent=False)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        fan_in = 3
        for _ in range(layers):
            weight = torch.randn((batch, hidden, fan_in), generator=generator) / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(batch, hidden, 1)))
            fan_in = 2 * hidden
        self.weights.append(nn.Parameter(torch.zeros(batch, 3, fan_in)))
        self.biases.append(nn.Parameter(torch.zeros(batch, 3, 1)))

    def forward(self) -> Tensor:
        features = self.coordinates.expand(self.batch, -1, -1)
        for weight, bias in zip(self.weights[:-1], self.biases[:-1], strict=True):
            features = composite_activation(torch.bmm(weight, features) + bias)
        rgb = torch.sigmoid(torch.bmm(self.weights[-1], features) + self.biases[-1])
        return rgb.view(self.batch, 3, self.height, self.width)

    def preferred_learning_rate(self) -> float:
        return LEARNING_RATE


@register_prior(
    PriorInfo(
        name="cppn",
        kind=PriorKind.UNCONSTRAINED,
        description="Lucid's CPPN: a small network of the pixel coordinates (x, y, r) whose weights are optimized "
        "(not learned from data: smooth, resolution-free shapes)",
        options=(
            Option("layers", int, 8, "hidden layers", minimum=1, maximum=16),
            Option("hidden", int, 24, "channels per hidden layer", minimum=4, maximum=64),
        ),
        default_steps=DEFAULT_STEPS,
        default_image_size=ANY_SIZE_JOB_SIDE,
        default_learning_rate=LEARNING_RATE,
    )
)
def build_cppn(
    batch: int, height: int, width: int, *, generator: torch.Generator, device: torch.device, layers: int, hidden: int
) -> CppnImage:
    return CppnImage(batch, height, width, generator=generator, layers=layers, hidden=hidden).to(device)
