"""What every generator-latent prior shares: a trainable latent kept near its training range.

A subclass says how a frozen network turns the latent into images in [-1, 1]; this class
keeps the latent in range the way DGN-AM does (components clipped after each step, and a
penalty on a norm beyond the Gaussian shell where trained latents lie) and brings the
images to [0, 1] at the requested size.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priors.base import Parameterization


class LatentImage(Parameterization):
    """Images drawn by a frozen network from a trainable latent of shape (batch, *latent_shape)."""

    def __init__(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        network: nn.Module,
        latent_shape: tuple[int, ...],
        clip: float,
        norm_penalty: float,
        learning_rate: float,
    ) -> None:
        super().__init__(batch, height, width)
        if not clip > 0:
            raise ValueError(f"clip must be positive, got {clip}")
        if not norm_penalty >= 0:
            raise ValueError(f"norm_penalty must be non-negative, got {norm_penalty}")
        self._frozen = (network,)  # shared between jobs: not a submodule, so train()/to() never touch it
        self.clip, self.norm_penalty, self.learning_rate = float(clip), float(norm_penalty), learning_rate
        self.typical_norm = math.sqrt(math.prod(latent_shape))
        initial = torch.randn((batch, *latent_shape), generator=generator).clamp(-self.clip, self.clip)
        self.latent = nn.Parameter(initial)

    @property
    def network(self) -> nn.Module:
        return self._frozen[0]

    @abstractmethod
    def draw(self) -> Tensor:
        """The network's images for the current latent, in [-1, 1] at the network's own size."""

    def forward(self) -> Tensor:
        images = (self.draw().float() + 1.0) / 2.0
        if images.shape[-2:] != (self.height, self.width):
            images = F.interpolate(images, size=(self.height, self.width), mode="bilinear", align_corners=False)
        return images.clamp(0.0, 1.0)

    def regularization(self) -> Tensor:
        """Squared excess of each latent's norm over the Gaussian shell, summed over the batch."""
        excess = (self.latent.flatten(1).norm(dim=1) - self.typical_norm).clamp(min=0.0)
        return self.norm_penalty * (excess * excess).sum()

    @torch.no_grad()
    def after_step(self) -> None:
        self.latent.clamp_(-self.clip, self.clip)

    def preferred_learning_rate(self) -> float:
        return self.learning_rate
