"""Deep image prior (Ulyanov et al. 2018): the image is the output of a random convolutional hourglass.

A randomly initialized encoder-decoder with skip connections maps a fixed noise input to the
image, and the optimizer changes its weights, never its input. Nothing is learned from data:
the prior is the architecture itself. Convolutions and upsampling reach natural structure
(smooth regions, edges, repeated texture) much faster than they reach noise, so within a few
hundred steps the image holds what the objective asks for in a form such a network draws easily.

The network is DIP's "skip" hourglass, made small enough for a CPU at 128-224 pixels: ``depth``
levels, each a stride-2 3x3 convolution and a 3x3 convolution down, a 4-channel 1x1 skip, and
bilinear upsampling, a 3x3 and a 1x1 convolution up; batch norm (over each map, as DIP's batch of
one) and leaky ReLU after every convolution; reflection padding; a sigmoid at the end. Every batch
element has its own network and its own noise: the networks run side by side as groups of one
grouped convolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priors.base import DEFAULT_STEPS, Parameterization, PriorInfo, PriorKind, register_prior
from priors.costs import ANY_SIZE_JOB_SIDE
from priors.options import Option

NOISE_CHANNELS = 8
NOISE_SCALE = 0.1
"""DIP's input: uniform noise in [0, 0.1], drawn once and kept."""
SKIP_CHANNELS = 4
LEAKY_SLOPE = 0.2
LEARNING_RATE = 0.01
"""DIP's Adam rate: weights of a randomly initialized network move the whole image at once."""


class GroupedConv(nn.Module):
    """A reflection-padded convolution applied to ``groups`` images stacked on the channel axis,
    each with its own weights, initialized as PyTorch's default (uniform within 1/sqrt(fan-in))."""

    def __init__(
        self,
        groups: int,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        generator: torch.Generator,
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.groups, self.stride, self.padding = groups, stride, kernel // 2
        bound = 1.0 / math.sqrt(in_channels * kernel * kernel)
        shape = (groups * out_channels, in_channels, kernel, kernel)
        self.weight = nn.Parameter((torch.rand(shape, generator=generator) * 2 - 1) * bound)
        self.bias = nn.Parameter((torch.rand(groups * out_channels, generator=generator) * 2 - 1) * bound)

    def forward(self, features: Tensor) -> Tensor:
        if self.padding:
            features = F.pad(features, [self.padding] * 4, mode="reflect")
        return F.conv2d(features, self.weight, self.bias, stride=self.stride, groups=self.groups)


class ConvUnit(nn.Sequential):
    """Convolution, per-map batch norm, leaky ReLU."""

    def __init__(
        self,
        groups: int,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        generator: torch.Generator,
        stride: int = 1,
    ) -> None:
        super().__init__(
            GroupedConv(groups, in_channels, out_channels, kernel, generator=generator, stride=stride),
            nn.BatchNorm2d(groups * out_channels, track_running_stats=False),
            nn.LeakyReLU(LEAKY_SLOPE),
        )


def interleave(groups: int, *features: Tensor) -> Tensor:
    """Concatenate per-group channels: each image's channels stay together, as the grouped convolutions expect."""
    size = features[0].shape[-2:]
    return torch.cat([f.reshape(groups, -1, *size) for f in features], dim=1).reshape(1, -1, *size)


class Level(nn.Module):
    """One level of the hourglass: down to half size, the deeper levels, up again beside a skip."""

    out_channels: int

    def __init__(self, groups: int, in_channels: int, widths: list[int], *, generator: torch.Generator) -> None:
        super().__init__()
        width, self.groups = widths[0], groups
        self.skip = ConvUnit(groups, in_channels, SKIP_CHANNELS, 1, generator=generator)
        self.down = nn.Sequential(
            ConvUnit(groups, in_channels, width, 3, generator=generator, stride=2),
            ConvUnit(groups, width, width, 3, generator=generator),
        )
        self.deeper = Level(groups, width, widths[1:], generator=generator) if len(widths) > 1 else None
        inner = width if self.deeper is None else self.deeper.out_channels
        self.merge = nn.BatchNorm2d(groups * (SKIP_CHANNELS + inner), track_running_stats=False)
        self.up = nn.Sequential(
            ConvUnit(groups, SKIP_CHANNELS + inner, width, 3, generator=generator),
            ConvUnit(groups, width, width, 1, generator=generator),
        )
        self.out_channels = width

    def forward(self, features: Tensor) -> Tensor:
        skip = self.skip(features)
        inner = self.down(features)
        if self.deeper is not None:
            inner = self.deeper(inner)
        inner = F.interpolate(inner, size=features.shape[-2:], mode="bilinear", align_corners=False)
        return self.up(self.merge(interleave(self.groups, skip, inner)))


def level_widths(channels: int, depth: int) -> list[int]:
    """Widths from the top level down: ``channels``, doubled at the next two levels, then kept."""
    return [channels * 2 ** min(level, 2) for level in range(depth)]


class DeepImagePrior(Parameterization):
    """Images drawn by randomly initialized hourglass networks from fixed noise; the weights are optimized."""

    def __init__(
        self, batch: int, height: int, width: int, *, generator: torch.Generator, depth: int = 5, channels: int = 16
    ) -> None:
        super().__init__(batch, height, width)
        if min(height, width) < 2 ** (depth + 1):
            raise ValueError(f"a {depth}-level hourglass needs images of at least {2 ** (depth + 1)} pixels a side")
        noise = torch.rand((1, batch * NOISE_CHANNELS, height, width), generator=generator) * NOISE_SCALE
        self.register_buffer("noise", noise)
        self.body = Level(batch, NOISE_CHANNELS, level_widths(channels, depth), generator=generator)
        self.to_rgb = GroupedConv(batch, self.body.out_channels, 3, 1, generator=generator)

    def forward(self) -> Tensor:
        rgb = torch.sigmoid(self.to_rgb(self.body(self.noise)))
        return rgb.view(self.batch, 3, self.height, self.width)

    def preferred_learning_rate(self) -> float:
        return LEARNING_RATE


@register_prior(
    PriorInfo(
        name="deep_image_prior",
        kind=PriorKind.UNCONSTRAINED,
        description="deep image prior: a randomly initialized conv hourglass whose weights are optimized from fixed "
        "noise (not learned from data: the architecture is the prior)",
        options=(
            Option("depth", int, 5, "hourglass levels (images need 2^(depth+1) pixels a side)", minimum=1, maximum=6),
            Option("channels", int, 16, "channels at the top level (doubled twice going down)", minimum=4, maximum=64),
        ),
        default_steps=DEFAULT_STEPS,
        default_image_size=ANY_SIZE_JOB_SIDE,
        default_learning_rate=LEARNING_RATE,
    )
)
def build_deep_image_prior(
    batch: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    depth: int,
    channels: int,
) -> DeepImagePrior:
    return DeepImagePrior(batch, height, width, generator=generator, depth=depth, channels=channels).to(device)
