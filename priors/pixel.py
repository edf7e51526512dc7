"""Raw pixels through a sigmoid: the plainest space, where high frequencies run free."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from priors.base import DEFAULT_LEARNING_RATE, DEFAULT_STEPS, Parameterization, PriorInfo, PriorKind, register_prior
from priors.color import from_valid_rgb, to_valid_rgb
from priors.costs import ANY_SIZE_JOB_SIDE
from priors.options import Option

INIT_STD = 0.01


class PixelImage(Parameterization):
    exact_inverse = True

    def __init__(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        decorrelate: bool = True,
        init_std: float = INIT_STD,
    ) -> None:
        super().__init__(batch, height, width)
        self.decorrelate = decorrelate
        self.pixels = nn.Parameter(torch.randn((batch, 3, height, width), generator=generator) * init_std)

    def forward(self) -> Tensor:
        return to_valid_rgb(self.pixels, decorrelate=self.decorrelate)

    def start_from(self, images: Tensor) -> bool:
        with torch.no_grad():
            self.pixels.copy_(from_valid_rgb(images.to(self.pixels), decorrelate=self.decorrelate))
        return True


@register_prior(
    PriorInfo(
        name="pixel",
        kind=PriorKind.UNCONSTRAINED,
        description="raw pixels through a sigmoid, optionally in decorrelated colour",
        options=(Option("decorrelate", bool, True, "decorrelate colours"),),
        default_steps=DEFAULT_STEPS,
        default_image_size=ANY_SIZE_JOB_SIDE,
        default_learning_rate=DEFAULT_LEARNING_RATE,
    )
)
def build_pixel(
    batch: int, height: int, width: int, *, generator: torch.Generator, device: torch.device, decorrelate: bool
) -> PixelImage:
    return PixelImage(batch, height, width, generator=generator, decorrelate=decorrelate).to(device)
