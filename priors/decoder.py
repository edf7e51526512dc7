"""Decoder priors: optimize the latent of a diffusers autoencoder (AutoencoderKL, AutoencoderTiny, VQModel).

The image is whatever the decoder draws from a latent grid, so it keeps the textures the
autoencoder learned. The latent grid's size follows the requested image size and the
decoder's upsampling factor (ceil(size / factor), the decoded image resized to the exact
size when the side is not a multiple). The parameters are the *scaled* latents
(``z * scaling_factor``, minus ``shift_factor`` where the model has one), the space latent
diffusion models work in, where values are roughly N(0, 1): every component is clipped to
[-clip, clip] after each step and the latent norm is penalized beyond the Gaussian shell.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from priors.diffusers_loading import (
    DiffusersModelError,
    load_diffusers_config,
    load_diffusers_model,
)
from priors.latent import LatentImage
from priors.options import Option

if TYPE_CHECKING:
    # diffusers ships no type information, so to mypy its classes are Any.
    from diffusers import ModelMixin

DEFAULT_CLIP = 3.0
DEFAULT_NORM_PENALTY = 0.01
LEARNING_RATE = 0.05
PIPELINE_SUBFOLDERS = ("vae", "vqvae")
"""Where pipelines keep their autoencoder, so a whole pipeline directory can be named."""

DECODER_KINDS = ("autoencoder_kl", "autoencoder_tiny", "vq")


def decoder_class(kind: str) -> type[ModelMixin]:
    """The diffusers class for a decoder kind."""
    from diffusers import AutoencoderKL, AutoencoderTiny, VQModel

    classes: dict[str, type[ModelMixin]] = {
        "autoencoder_kl": AutoencoderKL,
        "autoencoder_tiny": AutoencoderTiny,
        "vq": VQModel,
    }
    if kind not in classes:
        raise ValueError(f"unknown decoder kind {kind!r}; expected one of {', '.join(DECODER_KINDS)}")
    return classes[kind]


def upsampling_factor(kind: str, config: dict[str, Any]) -> int:
    """How many image pixels one latent cell spans, from the model's config."""
    if kind == "autoencoder_tiny":
        blocks = config.get("num_decoder_blocks", (3, 3, 3, 1))
        return int(config.get("upsampling_scaling_factor", 2)) ** (len(blocks) - 1)
    return 2 ** (len(config.get("block_out_channels", (64,))) - 1)


def latent_shape(kind: str, config: dict[str, Any], height: int, width: int) -> tuple[int, int, int]:
    """One image's latent shape (channels, rows, columns) for an image of height x width."""
    factor = upsampling_factor(kind, config)
    channels = config.get("latent_channels", 4)
    if kind == "vq":  # a VQModel decodes its quantizer's embeddings, which may be wider than the encoder's output
        channels = config.get("vq_embed_dim") or config.get("latent_channels", 3)
    return int(channels), math.ceil(height / factor), math.ceil(width / factor)


class DecoderLatentImage(LatentImage):
    """Images decoded from a trainable scaled latent grid by a frozen diffusers decoder."""

    def __init__(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        decoder: ModelMixin,
        kind: str,
        clip: float = DEFAULT_CLIP,
        norm_penalty: float = DEFAULT_NORM_PENALTY,
    ) -> None:
        config = dict(decoder.config)
        super().__init__(
            batch,
            height,
            width,
            generator=generator,
            network=decoder,
            latent_shape=latent_shape(kind, config, height, width),
            clip=clip,
            norm_penalty=norm_penalty,
            learning_rate=LEARNING_RATE,
        )
        self.kind = kind
        self.scaling_factor = float(config.get("scaling_factor") or 1.0)
        self.shift_factor = float(config.get("shift_factor") or 0.0)

    @property
    def decoder(self) -> ModelMixin:
        return self.network

    def draw(self) -> Tensor:
        raw = self.latent / self.scaling_factor + self.shift_factor
        return self.decoder.decode(raw.to(self.decoder.dtype)).sample


DECODER_OPTIONS = (
    Option(
        "clip",
        float,
        DEFAULT_CLIP,
        "each scaled latent component is clipped to [-clip, clip] after every step",
        minimum=0.1,
        maximum=10.0,
    ),
    Option(
        "norm_penalty",
        float,
        DEFAULT_NORM_PENALTY,
        "weight of the penalty on a latent norm beyond the Gaussian shell",
        minimum=0.0,
        maximum=1000.0,
    ),
)


def decoder_config(kind: str, source: str | Path, *, allow_download: bool = False) -> dict[str, Any]:
    """The decoder's config, read without loading weights; raises DiffusersModelError."""
    return load_diffusers_config(
        decoder_class(kind), source, subfolders=PIPELINE_SUBFOLDERS, allow_download=allow_download
    )


def build_decoder_prior(
    kind: str,
    source: str | Path,
    batch: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    allow_download: bool = False,
    clip: float = DEFAULT_CLIP,
    norm_penalty: float = DEFAULT_NORM_PENALTY,
) -> DecoderLatentImage:
    """A decoder prior on the diffusers model at ``source`` (a directory or a cached hub id)."""
    decoder = load_diffusers_model(
        decoder_class(kind), source, subfolders=PIPELINE_SUBFOLDERS, device=device, allow_download=allow_download
    )
    if not hasattr(decoder, "decode"):
        raise DiffusersModelError(source, f"{type(decoder).__name__} has no decoder")
    image = DecoderLatentImage(
        batch,
        height,
        width,
        generator=generator,
        decoder=decoder,
        kind=kind,
        clip=clip,
        norm_penalty=norm_penalty,
    )
    return image.to(device)
