"""Each prior's declared default job (steps, image size, learning rate): what the CPU budget allows, and what runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from generator_folders import (
    save_biggan,
    save_class_conditional_ddpm,
    save_consistency_pipeline,
    save_dit_pipeline,
)
from test_priors_diffusers import save_autoencoder_tiny

from priors import get_prior, list_priors
from priors.base import PriorInfo
from priors.costs import ANY_SIZE_JOB_SIDE, JOB_BUDGET_SECONDS, default_steps, seconds_per_step
from priors.folders import register_folder_prior
from priorviz.render import make_generator

FIVE_MINUTES = 300.0


pytestmark = pytest.mark.usefixtures("forget_registered_priors")


def check_declared_rate_is_the_one_used(info: PriorInfo) -> None:
    """A job's learning rate 0 means the parameterization's preferred rate: it must be the declared default."""
    prior = get_prior(info.name, 1, 64, 64, generator=make_generator(0))
    expected = 0.0 if prior.owns_update else prior.preferred_learning_rate()
    assert info.default_learning_rate == pytest.approx(expected), info.name


def test_every_built_in_prior_declares_its_default_job() -> None:
    for info in list_priors():
        assert info.default_steps >= 1 and info.default_image_size >= 1, info.name
        assert info.output_size is None or info.default_image_size == info.output_size, info.name
        check_declared_rate_is_the_one_used(info)


# Measured real configs (docs/PRIORS.md): kind, native side (a decoder: the side it is planned at), default steps.
REAL_CONFIGS = [
    ("biggan", 128, 222),  # biggan-deep-128
    ("biggan", 256, 80),  # biggan-deep-256
    ("biggan", 512, 20),  # biggan-deep-512: estimated from 256 by the ratio of pixels
    ("unet", 64, 50),  # the ImageNet-64 ADM UNet: one render step per default sampling step
    ("consistency", 64, 32),  # cd_imagenet64_l2
    ("latent_diffusion", 256, 20),  # DiT-XL-2-256 over the SD VAE
    ("autoencoder_kl", ANY_SIZE_JOB_SIDE, 22),  # sd-vae-ft-mse
    ("autoencoder_tiny", ANY_SIZE_JOB_SIDE, 356),  # TAESD: estimated from 128 px by the ratio of pixels
    ("vq", ANY_SIZE_JOB_SIDE, 30),  # the CompVis LDMs' VQ-f4: likewise
]


@pytest.mark.parametrize(("kind", "side", "steps"), REAL_CONFIGS)
def test_each_kind_s_default_job_fits_in_five_minutes(kind: str, side: int, steps: int) -> None:
    most = 50 if kind in ("unet", "latent_diffusion") else 512
    assert default_steps(kind, side, most=most) == steps
    assert steps * seconds_per_step(kind, side) <= JOB_BUDGET_SECONDS < FIVE_MINUTES


def test_a_cost_is_never_scaled_below_a_measurement() -> None:
    assert seconds_per_step("biggan", 32) == seconds_per_step("biggan", 128)
    assert seconds_per_step("biggan", 200) == pytest.approx(1.08 * (200 / 128) ** 2)


FOLDERS: dict[str, tuple[Callable[[Path], Path], int]] = {
    "biggan": (save_biggan, 32),
    "unet": (save_class_conditional_ddpm, 16),
    "consistency": (save_consistency_pipeline, 16),
    "latent_diffusion": (save_dit_pipeline, 16),
    "autoencoder_tiny": (save_autoencoder_tiny, ANY_SIZE_JOB_SIDE),
}
"""Tiny models of each kind, and the side their default job is planned at (the native side of a generator)."""


@pytest.mark.parametrize("kind", sorted(FOLDERS))
def test_a_folder_prior_declares_its_kind_s_default_job(kind: str, tmp_path: Path) -> None:
    save, side = FOLDERS[kind]
    info = register_folder_prior(f"{kind}_{uuid.uuid4().hex[:8]}", kind, save(tmp_path / kind))
    assert not info.unavailable_reason, info.unavailable_reason
    most = 50 if kind in ("unet", "latent_diffusion") else 512
    assert (info.default_steps, info.default_image_size) == (default_steps(kind, side, most=most), side)
    check_declared_rate_is_the_one_used(info)
    if kind == "latent_diffusion":  # one render step per sampling step, so that the default job ends clean
        (sampling,) = [option for option in info.options if option.name == "sampling_steps"]
        assert sampling.default == info.default_steps


def test_an_unavailable_folder_declares_no_job(tmp_path: Path) -> None:
    info = register_folder_prior(f"empty_{uuid.uuid4().hex[:8]}", "auto", tmp_path)
    assert info.unavailable_reason and (info.default_steps, info.default_image_size) == (0, 0)
