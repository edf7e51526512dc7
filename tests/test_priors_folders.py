"""Generators a user brings in a folder: registered by kind or detected, rendered, and refused with a reason."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import torch
from generator_folders import (
    save_biggan,
    save_class_conditional_ddpm,
    save_consistency_pipeline,
    save_dit_pipeline,
    save_latent_unet_pipeline,
    save_vq_ldm_pipeline,
)

from priors import PriorNotFoundError, get_prior, list_priors
from priors.biggan import BigGanLatentImage
from priors.consistency import ConsistencyImage
from priors.diffusion import GuidedDiffusionImage
from priors.folders import detect_kind, register_folder_prior
from priors.latent_diffusion import LatentDiffusionImage
from priorviz.models import TargetModel
from priorviz.objectives import Channel, ClassLogit
from priorviz.render import RenderConfig, make_generator, render
from priorviz.transforms import NO_TRANSFORMS

SIDE = 64


pytestmark = pytest.mark.usefixtures("forget_registered_priors")


def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("kind", ["auto", "biggan"])
def test_biggan_folder_renders_and_the_objective_rises(kind: str, tmp_path: Path, lite0: TargetModel) -> None:
    info = register_folder_prior(unique("biggan"), kind, save_biggan(tmp_path / "biggan"))
    assert not info.unavailable_reason and info in list_priors()
    assert (info.output_size, info.latent_shape) == (32, (8,))
    assert {option.name for option in info.options} == {"truncation", "norm_penalty"}
    config = RenderConfig(steps=8, seed=1, transforms=NO_TRANSFORMS)
    result = render(lite0, ClassLogit(1), info.name, size=SIDE, config=config, prior_options={"truncation": 0.5})
    assert result.images.shape == (1, 3, SIDE, SIDE)
    assert float(result.values[0]) > float(result.trace[0, 0])


def test_biggan_draws_the_objective_class_and_optimizes_the_class_otherwise(tmp_path: Path, lite0: TargetModel) -> None:
    info = register_folder_prior(unique("biggan"), "auto", save_biggan(tmp_path / "biggan"))
    prior = get_prior(info.name, 2, SIDE, SIDE, generator=make_generator(3), truncation=0.5)
    assert isinstance(prior, BigGanLatentImage)
    prior.start_at_classes([7, None])  # as render does for a batch whose first objective is class 7
    free_before = prior.class_vectors()[1].detach().clone()
    config = RenderConfig(steps=4, learning_rate=0.5, transforms=NO_TRANSFORMS)
    render(lite0, Channel("blocks.5", 3), prior, batch=2, config=config)
    vectors = prior.class_vectors().detach()
    torch.testing.assert_close(vectors[0], torch.nn.functional.one_hot(torch.tensor(7), 10).float())
    assert float((vectors[1] - free_before).abs().sum()) > 1e-4
    assert torch.allclose(vectors[1].sum(), torch.tensor(1.0))
    assert float(prior.latent.detach().abs().max()) <= 2 * 0.5 + 1e-6  # z stays within the truncation


def test_biggan_refuses_a_class_it_does_not_have(tmp_path: Path) -> None:
    info = register_folder_prior(unique("biggan"), "biggan", save_biggan(tmp_path / "biggan"))
    prior = get_prior(info.name, 1, SIDE, SIDE, generator=make_generator(0))
    with pytest.raises(ValueError, match="class 10 is outside"):
        prior.start_at_classes([10])


@pytest.mark.parametrize("kind", ["auto", "unet"])
def test_class_conditional_unet_samples_the_objective_class(kind: str, tmp_path: Path, lite0: TargetModel) -> None:
    info = register_folder_prior(unique("cond"), kind, save_class_conditional_ddpm(tmp_path / "ddpm"))
    assert not info.unavailable_reason and "class_label" in {option.name for option in info.options}
    prior = get_prior(info.name, 2, SIDE, SIDE, generator=make_generator(0), sampling_steps=4, class_label=5)
    assert isinstance(prior, GuidedDiffusionImage)
    render(lite0, ClassLogit(3), prior, batch=2, config=RenderConfig(steps=4, transforms=NO_TRANSFORMS))
    assert prior.labels.tolist() == [3, 3] and prior.finished  # the objective's class wins over the option
    other = get_prior(info.name, 1, SIDE, SIDE, generator=make_generator(0), sampling_steps=4, class_label=5)
    other.start_at_classes([None])
    assert other.labels.tolist() == [5]
    with pytest.raises(ValueError, match="class_label 10 is not a label"):
        get_prior(info.name, 1, SIDE, SIDE, generator=make_generator(0), class_label=10)


def test_class_conditional_unet_guidance_raises_the_objective(tmp_path: Path, lite0: TargetModel) -> None:
    info = register_folder_prior(unique("cond"), "unet", save_class_conditional_ddpm(tmp_path / "ddpm"))
    config = RenderConfig(steps=6, seed=4, transforms=NO_TRANSFORMS)
    finals = {
        scale: float(
            render(
                lite0,
                ClassLogit(3),
                info.name,
                size=SIDE,
                config=config,
                prior_options={"sampling_steps": 6, "guidance_scale": scale},
            ).values[0]
        )
        for scale in (0.0, 1.0)
    }
    assert finals[1.0] > finals[0.0]


@pytest.mark.parametrize("kind", ["auto", "consistency"])
def test_consistency_model_noise_is_optimized_and_the_class_is_the_objectives(
    kind: str, tmp_path: Path, lite0: TargetModel
) -> None:
    info = register_folder_prior(unique("cm"), kind, save_consistency_pipeline(tmp_path / "cm"))
    assert not info.unavailable_reason, info.unavailable_reason
    assert (info.output_size, info.latent_shape) == (16, (3, 16, 16))
    assert {option.name for option in info.options} == {"clip", "norm_penalty", "class_label"}
    prior = get_prior(info.name, 2, SIDE, SIDE, generator=make_generator(1), class_label=4)
    assert isinstance(prior, ConsistencyImage)
    config = RenderConfig(steps=8, learning_rate=0.1, transforms=NO_TRANSFORMS)
    result = render(lite0, ClassLogit(3), prior, batch=2, config=config)
    assert prior.labels.tolist() == [3, 3]
    assert result.images.shape == (2, 3, SIDE, SIDE)
    assert float(result.values.mean()) > float(result.trace[0].mean())
    assert float(prior.latent.detach().abs().max()) <= 3.0


def test_a_consistency_folder_is_not_sampled_as_ddim(tmp_path: Path) -> None:
    info = register_folder_prior(unique("cm"), "unet", save_consistency_pipeline(tmp_path / "cm"))
    assert "register it as kind consistency" in info.unavailable_reason


LATENT_PIPELINES = {"unet_vae": save_latent_unet_pipeline, "dit_vae": save_dit_pipeline, "ldm_vq": save_vq_ldm_pipeline}


@pytest.mark.parametrize(
    ("layout", "kind"), [(layout, "auto") for layout in sorted(LATENT_PIPELINES)] + [("unet_vae", "latent_diffusion")]
)
def test_latent_diffusion_guided_on_the_decoded_image(
    layout: str, kind: str, tmp_path: Path, lite0: TargetModel
) -> None:
    info = register_folder_prior(unique(layout), kind, LATENT_PIPELINES[layout](tmp_path / layout))
    assert not info.unavailable_reason, info.unavailable_reason
    conditional = layout != "ldm_vq"
    assert ("class_label" in {option.name for option in info.options}) == conditional
    prior = get_prior(info.name, 2, SIDE, SIDE, generator=make_generator(0), sampling_steps=6)
    assert isinstance(prior, LatentDiffusionImage)
    result = render(lite0, ClassLogit(3), prior, batch=2, config=RenderConfig(steps=6, transforms=NO_TRANSFORMS))
    assert prior.finished and result.images.shape == (2, 3, SIDE, SIDE)
    assert not conditional or prior.labels.tolist() == [3, 3]
    unguided = get_prior(info.name, 2, SIDE, SIDE, generator=make_generator(0), sampling_steps=6, guidance_scale=0.0)
    baseline = render(lite0, ClassLogit(3), unguided, batch=2, config=RenderConfig(steps=6, transforms=NO_TRANSFORMS))
    assert float(result.values.mean()) > float(baseline.values.mean())


def test_latent_diffusion_with_fewer_render_steps_ends_on_the_predicted_clean_latent(
    tmp_path: Path, lite0: TargetModel
) -> None:
    info = register_folder_prior(unique("ldm"), "auto", save_latent_unet_pipeline(tmp_path / "ldm"))
    prior = get_prior(info.name, 1, SIDE, SIDE, generator=make_generator(0), sampling_steps=10)
    result = render(lite0, ClassLogit(3), prior, config=RenderConfig(steps=3, transforms=NO_TRANSFORMS))
    assert prior.position == 3 and not prior.finished
    assert torch.isfinite(result.images).all()


def test_a_denoiser_that_does_not_fit_the_latent_is_a_reason(tmp_path: Path) -> None:
    folder = save_latent_unet_pipeline(tmp_path / "ldm")
    config = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**config, "in_channels": 3}))
    info = register_folder_prior(unique("ldm"), "latent_diffusion", folder)
    assert "takes 3 channels but vae/'s latent has 4" in info.unavailable_reason


def test_kinds_are_detected_from_the_folders_files(tmp_path: Path) -> None:
    for layout, save in LATENT_PIPELINES.items():
        assert detect_kind(save(tmp_path / layout)) == "latent_diffusion"
    assert detect_kind(save_biggan(tmp_path / "biggan")) == "biggan"
    assert detect_kind(save_consistency_pipeline(tmp_path / "cm")) == "consistency"
    assert detect_kind(save_class_conditional_ddpm(tmp_path / "ddpm")) == "unet"
    assert detect_kind(save_class_conditional_ddpm(tmp_path / "ddpm") / "unet") == "unet"


def _broken_folders(tmp_path: Path) -> dict[str, tuple[str, Path, str]]:
    """name -> (kind, folder, what the reason must say)."""
    missing_weights = save_biggan(tmp_path / "no_weights")
    (missing_weights / "pytorch_model.bin").unlink()
    mismatched = save_biggan(tmp_path / "mismatched")
    state = torch.load(mismatched / "pytorch_model.bin", weights_only=True)
    state["generator.extra.weight"] = state.pop("embeddings.weight")
    torch.save(state, mismatched / "pytorch_model.bin")
    unet_no_weights = save_class_conditional_ddpm(tmp_path / "unet_no_weights")
    for weights in (unet_no_weights / "unet").glob("*.safetensors"):
        weights.unlink()
    wrong_class = save_biggan(tmp_path / "wrong_class")
    return {
        "biggan_no_weights": ("auto", missing_weights, "no pytorch_model.bin"),
        "biggan_mismatched": ("biggan", mismatched, r"does not match config.json.*embeddings.weight"),
        "unet_no_weights": ("unet", unet_no_weights, "cannot be loaded as UNet2DModel"),
        "biggan_as_unet": ("unet", wrong_class, "holds no UNet2DModel"),
        "empty": ("auto", tmp_path, "no BigGAN config.json"),
        "nowhere": ("biggan", tmp_path / "nowhere", "no config.json"),
        "bad_kind": ("gan", tmp_path, "unknown kind 'gan'"),
    }


def test_broken_folders_are_listed_unavailable_with_the_reason(tmp_path: Path, lite0: TargetModel) -> None:
    good = register_folder_prior(unique("biggan"), "auto", save_biggan(tmp_path / "good"))
    for label, (kind, folder, reason) in _broken_folders(tmp_path).items():
        info = register_folder_prior(unique(label), kind, folder)
        assert info.unavailable_reason, label
        assert re.search(reason, info.unavailable_reason), (label, info.unavailable_reason)
        assert info.name in {listed.name for listed in list_priors(only_available=False)}
        assert info.name not in {listed.name for listed in list_priors()}
        with pytest.raises(PriorNotFoundError, match="unavailable"):
            get_prior(info.name, 1, SIDE, SIDE, generator=make_generator(0))
    result = render(lite0, ClassLogit(1), good.name, size=SIDE, config=RenderConfig(steps=2, transforms=NO_TRANSFORMS))
    assert result.images.shape == (1, 3, SIDE, SIDE)


def test_a_taken_name_is_refused(tmp_path: Path) -> None:
    name = unique("biggan")
    register_folder_prior(name, "auto", save_biggan(tmp_path / "biggan"))
    with pytest.raises(ValueError, match="already registered"):
        register_folder_prior(name, "auto", tmp_path / "biggan")
    with pytest.raises(ValueError, match="already registered"):
        register_folder_prior("fourier", "auto", tmp_path / "biggan")


def test_config_json_that_is_not_an_object_is_a_reason(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps([1, 2]))
    info = register_folder_prior(unique("list"), "auto", tmp_path)
    assert "not a JSON object" in info.unavailable_reason
