"""Tiny generators saved in their real on-disk layouts, for the tests of priors registered from a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from priors.biggan import BigGAN, biggan_config

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DModel

TINY_BIGGAN = {
    "output_dim": 32,
    "z_dim": 8,
    "class_embed_dim": 8,
    "channel_width": 4,
    "num_classes": 10,
    "layers": [[False, 16, 16], [True, 16, 8], [True, 8, 4], [True, 4, 2], [False, 2, 1]],
    "attention_layer_position": 2,
    "eps": 1e-4,
    "n_stats": 51,
}
"""BigGAN-deep's structure (blocks, attention, per-truncation statistics) at 32 px with 10 classes."""

BIGGAN_DEEP_128 = {
    "output_dim": 128,
    "z_dim": 128,
    "class_embed_dim": 128,
    "channel_width": 128,
    "num_classes": 1000,
    "layers": [
        [False, 16, 16],
        [True, 16, 16],
        [False, 16, 16],
        [True, 16, 8],
        [False, 8, 8],
        [True, 8, 4],
        [False, 4, 4],
        [True, 4, 2],
        [False, 2, 2],
        [True, 2, 1],
    ],
    "attention_layer_position": 8,
    "eps": 1e-4,
    "n_stats": 51,
}
"""biggan-deep-128's config.json."""


def save_biggan(folder: Path, config: dict | None = None) -> Path:
    """A BigGAN with random weights, as pytorch-pretrained-biggan saves it.

    Spectral norm divides each weight by the largest singular value estimated from the saved
    vectors u and v; a trained checkpoint's have converged, random ones have not (the weights
    would blow up and saturate the tanh), so a few power iterations run before saving.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or TINY_BIGGAN))
    torch.manual_seed(0)
    model = BigGAN(biggan_config(folder))
    with torch.no_grad():
        classes, z_dim = model.config["num_classes"], model.config["z_dim"]
        for _ in range(10):
            model(torch.zeros(1, z_dim), torch.zeros(1, classes), 1.0)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def tiny_unet(channels: int = 3, classes: int = 0) -> UNet2DModel:
    """A 16 px UNet2DModel of two levels, seeded; class-conditional (num_class_embeds) when ``classes``."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=16,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=classes or None,
    )


def save_class_conditional_ddpm(folder: Path, classes: int = 10) -> Path:
    """A class-conditional UNet2DModel (num_class_embeds) in a DDPM pipeline folder."""
    from diffusers import DDPMPipeline, DDPMScheduler

    unet = tiny_unet(classes=classes)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100)).save_pretrained(folder)
    return folder


def save_consistency_pipeline(folder: Path, classes: int = 10) -> Path:
    """A class-conditional UNet2DModel with a CMStochasticIterativeScheduler, as openai/diffusers-cd_imagenet64_l2."""
    from diffusers import CMStochasticIterativeScheduler, ConsistencyModelPipeline

    unet = tiny_unet(classes=classes)
    scheduler = CMStochasticIterativeScheduler(num_train_timesteps=40, sigma_min=0.002, sigma_max=80.0)
    ConsistencyModelPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return folder


def tiny_autoencoder_kl() -> AutoencoderKL:
    """A 2-level AutoencoderKL with a 4-channel latent (the SD VAE's shape, tiny)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=0.5,
    )


def save_latent_unet_pipeline(folder: Path, classes: int = 10) -> Path:
    """A class-conditional 4-channel UNet2DModel over vae/ (an AutoencoderKL), with a DDIM scheduler."""
    from diffusers import DDIMScheduler

    tiny_unet(channels=4, classes=classes).save_pretrained(folder / "unet")
    tiny_autoencoder_kl().save_pretrained(folder / "vae")
    DDIMScheduler(num_train_timesteps=100).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "LDMPipeline"}))
    return folder


def save_dit_pipeline(folder: Path, classes: int = 10) -> Path:
    """A DiTTransformer2DModel (learned variance, as DiT-XL-2-256) over vae/, as DiTPipeline saves it."""
    from diffusers import DDIMScheduler, DiTTransformer2DModel

    torch.manual_seed(0)
    DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=1,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=classes,
        norm_num_groups=4,
    ).save_pretrained(folder / "transformer")
    tiny_autoencoder_kl().save_pretrained(folder / "vae")
    DDIMScheduler(num_train_timesteps=100).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "DiTPipeline"}))
    return folder


def save_vq_ldm_pipeline(folder: Path) -> Path:
    """The CompVis LDM layout: an unconditional 3-channel UNet2DModel over vqvae/ (a VQModel), DDIM scheduler."""
    from diffusers import DDIMScheduler, VQModel

    tiny_unet().save_pretrained(folder / "unet")
    VQModel(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=3,
        num_vq_embeddings=32,
        norm_num_groups=4,
        sample_size=32,
    ).save_pretrained(folder / "vqvae")
    DDIMScheduler(num_train_timesteps=100).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "LDMPipeline"}))
    return folder
