"""diffusers priors on tiny models that the tests build, save with save_pretrained and load the user's way."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import torch
from generator_folders import tiny_autoencoder_kl, tiny_unet

from priors import PriorKind, get_prior, list_priors
from priors.decoder import DecoderLatentImage, build_decoder_prior
from priors.diffusers_loading import DiffusersModelError
from priors.diffusers_priors import register_diffusers_prior
from priors.diffusion import GuidedDiffusionImage
from priorviz.models import TargetModel
from priorviz.objectives import ClassLogit
from priorviz.render import RenderConfig, make_generator, render
from priorviz.transforms import NO_TRANSFORMS

SIDE = 64
OBJECTIVE = ClassLogit(836)


pytestmark = pytest.mark.usefixtures("forget_registered_priors")


def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:8]}"


def save_autoencoder_kl(directory: Path) -> Path:
    torch.manual_seed(0)
    tiny_autoencoder_kl().save_pretrained(directory)
    return directory


def save_autoencoder_tiny(directory: Path) -> Path:
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    model = AutoencoderTiny(
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=4,
    )
    model.save_pretrained(directory)
    return directory


def save_vq_pipeline(directory: Path) -> Path:
    """A VQModel inside a pipeline directory's ``vqvae/`` subfolder, as latent-diffusion pipelines save it."""
    from diffusers import VQModel

    torch.manual_seed(0)
    model = VQModel(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=3,
        num_vq_embeddings=32,
        norm_num_groups=4,
        sample_size=32,
    )
    model.save_pretrained(directory / "vqvae")
    (directory / "model_index.json").write_text(json.dumps({"_class_name": "LDMPipeline"}))
    return directory


def save_ddpm_pipeline(directory: Path, scheduler: object | None = None) -> Path:
    """A tiny unconditional UNet in a DDPM pipeline folder, with ``scheduler`` (default: DDPM's, 100 steps)."""
    from diffusers import DDPMPipeline, DDPMScheduler

    DDPMPipeline(unet=tiny_unet(), scheduler=scheduler or DDPMScheduler(num_train_timesteps=100)).save_pretrained(
        directory
    )
    return directory


DECODERS = {"autoencoder_kl": save_autoencoder_kl, "autoencoder_tiny": save_autoencoder_tiny, "vq": save_vq_pipeline}


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_the_objective_rises_in_a_decoder_latent(kind: str, tmp_path: Path, lite0: TargetModel) -> None:
    info = register_diffusers_prior(unique(kind), DECODERS[kind](tmp_path / kind), kind)
    assert info.kind is PriorKind.LEARNED and info.latent_shape[1:] == (112, 112)
    assert info in list_priors()
    config = RenderConfig(steps=12, seed=1, transforms=NO_TRANSFORMS)
    result = render(lite0, OBJECTIVE, info.name, size=SIDE, config=config, prior_options={"clip": 2.5})
    assert result.images.shape == (1, 3, SIDE, SIDE)
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0
    assert float(result.values[0]) > float(result.trace[0, 0]) + 0.5


def test_decoder_latent_follows_image_size_scaling_factor_and_clip(tmp_path: Path) -> None:
    source = save_autoencoder_kl(tmp_path / "kl")
    prior = build_decoder_prior(
        "autoencoder_kl", source, 2, 70, 70, generator=make_generator(0), device=torch.device("cpu"), clip=1.5
    )
    assert isinstance(prior, DecoderLatentImage)
    assert prior.latent.shape == (2, 4, 35, 35)  # ceil(70 / 2): one upsampling stage
    assert prior().shape == (2, 3, 70, 70)
    with torch.no_grad():
        decoded = prior.decoder.decode(prior.latent / 0.5).sample  # the saved scaling_factor is 0.5
        expected = torch.nn.functional.interpolate((decoded + 1) / 2, size=(70, 70), mode="bilinear").clamp(0, 1)
    torch.testing.assert_close(prior(), expected)
    with torch.no_grad():
        prior.latent.mul_(10.0)
    assert float(prior.regularization().detach()) > 0.0
    prior.after_step()
    assert float(prior.latent.detach().abs().max()) <= 1.5


def test_latents_stay_in_range_through_a_render(tmp_path: Path, lite0: TargetModel) -> None:
    info = register_diffusers_prior(unique("tiny"), save_autoencoder_tiny(tmp_path / "tiny"), "autoencoder_tiny")
    prior = get_prior(info.name, 1, SIDE, SIDE, generator=make_generator(2), clip=0.5)
    render(lite0, OBJECTIVE, prior, config=RenderConfig(steps=6, learning_rate=0.5, transforms=NO_TRANSFORMS))
    assert float(prior.latent.detach().abs().max()) <= 0.5


def test_the_objective_rises_under_guided_diffusion(tmp_path: Path, lite0: TargetModel) -> None:
    source = save_ddpm_pipeline(tmp_path / "ddpm")
    info = register_diffusers_prior(unique("ddpm"), source, "unet", licence="test model")
    assert (info.output_size, info.latent_shape, info.licence) == (16, (3, 16, 16), "test model")
    assert {option.name for option in info.options} == {"sampling_steps", "guidance_scale"}
    config = RenderConfig(steps=10, seed=4, transforms=NO_TRANSFORMS)
    finals = {}
    for scale in (0.0, 1.0):
        result = render(
            lite0,
            OBJECTIVE,
            info.name,
            size=SIDE,
            config=config,
            prior_options={"sampling_steps": 10, "guidance_scale": scale},
        )
        assert result.images.shape == (1, 3, SIDE, SIDE)
        assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0
        finals[scale] = float(result.values[0])
    assert finals[1.0] > finals[0.0] + 0.5
    assert lite0.hook_count() == 0


@pytest.mark.parametrize("render_steps", [3, 10, 25])
def test_sampling_reaches_the_clean_end_whatever_the_number_of_render_steps(
    render_steps: int, tmp_path: Path, lite0: TargetModel
) -> None:
    info = register_diffusers_prior(unique("ddpm"), save_ddpm_pipeline(tmp_path / "ddpm"), "unet")
    prior = get_prior(info.name, 2, 32, 32, generator=make_generator(0), sampling_steps=10)
    assert isinstance(prior, GuidedDiffusionImage)
    render(lite0, OBJECTIVE, prior, size=32, config=RenderConfig(steps=render_steps, transforms=NO_TRANSFORMS))
    assert prior.finished
    assert float(prior.noisy.abs().max()) <= 1.0  # the final sample is a clean image in [-1, 1]


CLIPPED_SCHEDULERS = {
    "clip_sample_range 0.5": ({"clip_sample": True, "clip_sample_range": 0.5}, 0.5),
    "thresholding, v-prediction": (
        {
            "clip_sample": False,
            "thresholding": True,
            "sample_max_value": 2.0,
            "prediction_type": "v_prediction",
        },
        1.0,  # thresholding divides by the clamped quantile, so the range is [-1, 1]
    ),
}


@pytest.mark.parametrize("case", sorted(CLIPPED_SCHEDULERS))
def test_guided_diffusion_samples_with_the_scheduler_s_own_step(case: str, tmp_path: Path, lite0: TargetModel) -> None:
    """Unguided, the sample is the one DDIMScheduler.step gives; guided or not, clean images keep to its range."""
    from diffusers import DDIMScheduler

    settings, bound = CLIPPED_SCHEDULERS[case]
    folder = save_ddpm_pipeline(tmp_path / "ddpm", DDIMScheduler(num_train_timesteps=100, **settings))
    info = register_diffusers_prior(unique("clipped"), folder, "unet")
    levels = 5
    config = RenderConfig(steps=levels, transforms=NO_TRANSFORMS, snapshot_steps=tuple(range(1, levels + 1)))
    for scale in (0.0, 4.0):
        prior = get_prior(
            info.name, 2, 32, 32, generator=make_generator(3), sampling_steps=levels, guidance_scale=scale
        )
        assert isinstance(prior, GuidedDiffusionImage)
        sample = prior.noisy.clone()
        result = render(lite0, OBJECTIVE, prior, size=32, config=config)
        shown = torch.stack(list(result.snapshots.values())) * 2 - 1  # the predicted clean images the model saw
        assert float(shown.abs().max()) <= bound + 1e-5
        assert prior.finished and float(prior.noisy.abs().max()) <= bound + 1e-5
        if scale == 0.0:
            scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
            scheduler.set_timesteps(levels)
            with torch.no_grad():
                for timestep in scheduler.timesteps:
                    output = prior.unet(sample, torch.full((2,), int(timestep)), class_labels=None).sample
                    sample = scheduler.step(output, timestep, sample).prev_sample
            torch.testing.assert_close(prior.noisy, sample, atol=1e-5, rtol=1e-4)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DiffusersModelError, match=r"nowhere.*no such directory"):
        register_diffusers_prior(unique("gone"), missing, "autoencoder_kl")


def test_wrong_kind_of_model_is_a_clear_error(tmp_path: Path) -> None:
    source = save_ddpm_pipeline(tmp_path / "ddpm")
    with pytest.raises(DiffusersModelError, match=r"ddpm.*holds no AutoencoderKL"):
        register_diffusers_prior(unique("wrong"), source, "autoencoder_kl")
    kl = save_autoencoder_kl(tmp_path / "kl")
    with pytest.raises(DiffusersModelError, match=r"kl.*UNet2DModel"):
        register_diffusers_prior(unique("wrong"), kl, "unet")
    with pytest.raises(ValueError, match="unknown diffusers prior kind"):
        register_diffusers_prior(unique("wrong"), kl, "gan")


def test_incomplete_directory_is_a_clear_error(tmp_path: Path) -> None:
    source = save_autoencoder_kl(tmp_path / "kl")
    for weights in source.glob("*.safetensors"):
        weights.unlink()
    info = register_diffusers_prior(unique("broken"), source, "autoencoder_kl")  # the config alone is readable
    with pytest.raises(DiffusersModelError, match=r"kl.*cannot be loaded as AutoencoderKL"):
        get_prior(info.name, 1, SIDE, SIDE, generator=make_generator(0))


def test_uncached_hub_id_is_not_downloaded() -> None:
    with pytest.raises(DiffusersModelError, match="not in the local Hugging Face cache"):
        register_diffusers_prior(unique("hub"), "nobody/no-such-model", "autoencoder_tiny")
