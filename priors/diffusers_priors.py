"""Registering a user's diffusers model as a named prior, so the service lists it and clients can pick it.

The model's config is read (and checked) at registration, so a wrong or missing directory
fails there, naming the path, instead of in the middle of a job. Weights load on first use
and are shared by later jobs. Jobs can pass the prior's options (``clip``, ``norm_penalty``
for decoders; ``sampling_steps``, ``guidance_scale`` for diffusion) but not the source or a
download permission: those belong to whoever registers the model.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from priors.base import DEFAULT_STEPS, Parameterization, PriorInfo, PriorKind, register_prior
from priors.costs import ANY_SIZE_JOB_SIDE, default_steps
from priors.decoder import (
    DECODER_KINDS,
    DECODER_OPTIONS,
    build_decoder_prior,
    decoder_class,
    decoder_config,
    latent_shape,
)
from priors.decoder import LEARNING_RATE as DECODER_LEARNING_RATE
from priors.decoder import PIPELINE_SUBFOLDERS as DECODER_SUBFOLDERS
from priors.diffusers_loading import DiffusersModelError, resolve_source
from priors.diffusion import (
    CLASS_LABEL_OPTION,
    DEFAULT_SAMPLING_STEPS,
    DIFFUSION_OPTIONS,
    build_diffusion_prior,
    class_count,
    native_side,
    unet_config,
)
from priors.diffusion import PIPELINE_SUBFOLDERS as UNET_SUBFOLDERS

DIFFUSION_KIND = "unet"
DIFFUSERS_KINDS = (*DECODER_KINDS, DIFFUSION_KIND)
LISTING_SIDE = 224
"""Image side at which a decoder's latent shape is reported in listings (the default classifier's input)."""


def _still_there(source: str, class_name: str, subfolders: tuple[str, ...], allow_download: bool) -> bool:
    try:
        resolve_source(source, class_name, subfolders, allow_download=allow_download)
    except DiffusersModelError:
        return False
    return True


def register_diffusers_prior(
    name: str,
    source: str | Path,
    kind: str,
    *,
    description: str = "",
    licence: str = "",
    allow_download: bool = False,
) -> PriorInfo:
    """Register the diffusers model at ``source`` (a directory or a cached hub id) as prior ``name``.

    ``kind`` is ``autoencoder_kl``, ``autoencoder_tiny`` or ``vq`` (optimize the decoder's
    latent) or ``unet`` (guided DDIM sampling). ``allow_download`` lets ``from_pretrained``
    fetch a hub id that is not cached; it is off by default so nothing reaches a hub.
    Raises DiffusersModelError when the model is missing or of another kind, ValueError
    for an unknown kind, and ValueError when ``name`` is taken.
    """
    if kind not in DIFFUSERS_KINDS:
        raise ValueError(f"unknown diffusers prior kind {kind!r}; expected one of {', '.join(DIFFUSERS_KINDS)}")
    source = str(source)
    if kind == DIFFUSION_KIND:
        config = unet_config(source, allow_download=allow_download)
        side, classes = native_side(config), class_count(config)
        conditioning = f", class-conditional over {classes} labels" if classes else ""
        info = PriorInfo(
            name=name,
            kind=PriorKind.LEARNED,
            description=description
            or f"guided DDIM sampling of the diffusers UNet at {source} ({side}x{side}, resized{conditioning})",
            output_size=side,
            latent_shape=(3, side, side),
            licence=licence,
            options=(*DIFFUSION_OPTIONS, CLASS_LABEL_OPTION) if classes else DIFFUSION_OPTIONS,
            default_steps=default_steps(kind, side, most=DEFAULT_SAMPLING_STEPS),
            default_image_size=side,
            default_learning_rate=0.0,
        )
        availability = functools.partial(_still_there, source, "UNet2DModel", UNET_SUBFOLDERS, allow_download)

        def build(
            batch: int, height: int, width: int, *, generator: torch.Generator, device: torch.device, **options: Any
        ) -> Parameterization:
            return build_diffusion_prior(
                source,
                batch,
                height,
                width,
                generator=generator,
                device=device,
                allow_download=allow_download,
                **options,
            )
    else:
        config = decoder_config(kind, source, allow_download=allow_download)
        shape = latent_shape(kind, config, LISTING_SIDE, LISTING_SIDE)
        info = PriorInfo(
            name=name,
            kind=PriorKind.LEARNED,
            description=description
            or (
                f"latent of the diffusers {kind} decoder at {source} "
                f"(latent {shape[0]} x side/{LISTING_SIDE // shape[1]}; listed shape is for {LISTING_SIDE}px)"
            ),
            output_size=None,
            latent_shape=shape,
            licence=licence,
            options=DECODER_OPTIONS,
            default_steps=default_steps(kind, ANY_SIZE_JOB_SIDE, most=DEFAULT_STEPS),
            default_image_size=ANY_SIZE_JOB_SIDE,
            default_learning_rate=DECODER_LEARNING_RATE,
        )
        class_name = decoder_class(kind).__name__
        availability = functools.partial(_still_there, source, class_name, DECODER_SUBFOLDERS, allow_download)

        def build(
            batch: int, height: int, width: int, *, generator: torch.Generator, device: torch.device, **options: Any
        ) -> Parameterization:
            return build_decoder_prior(
                kind,
                source,
                batch,
                height,
                width,
                generator=generator,
                device=device,
                allow_download=allow_download,
                **options,
            )

    register_prior(info, available=availability)(build)
    return info
