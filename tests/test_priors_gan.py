"""The embedded face GAN as a prior: its weights, its listing, its latent range, and sunglasses on Lite0."""

from __future__ import annotations

import math
import sys

import pytest
import torch

import priors.gan
from priors import PriorKind, PriorNotFoundError, get_prior, list_priors
from priors.gan import FACES_LICENCE, GanLatentImage, face_gan_weights_path, load_face_generator
from priorviz.models import TargetModel
from priorviz.objectives import ClassLogit
from priorviz.render import RenderConfig, make_generator, render

SUNGLASSES = 836


def test_weights_load_into_the_rebuilt_generator_without_importing_the_package() -> None:
    path = face_gan_weights_path()
    assert path is not None and path.name == "weights.tar"
    generator = load_face_generator()
    latent = torch.randn((2, 100, 1, 1), generator=make_generator(0))
    with torch.no_grad():
        faces = generator(latent)
    assert faces.shape == (2, 3, 64, 64)
    assert float(faces.min()) >= -1.0 and float(faces.max()) <= 1.0
    assert float(faces.std()) > 0.1  # a trained generator draws structure, not a flat image
    assert "gan_face_generate.inference" not in sys.modules  # that module pulls matplotlib


def test_listed_as_learned_with_its_licence() -> None:
    (info,) = [info for info in list_priors() if info.name == "gan_faces"]
    assert info.kind is PriorKind.LEARNED
    assert (info.output_size, info.latent_shape, info.licence) == (64, (100, 1, 1), FACES_LICENCE)
    assert "non-commercial" in info.licence and "faces only" in info.licence


def test_unavailable_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(priors.gan, "face_gan_weights_path", lambda: None)
    assert "gan_faces" not in {info.name for info in list_priors()}
    assert "gan_faces" in {info.name for info in list_priors(only_available=False)}
    with pytest.raises(PriorNotFoundError, match="gan_faces"):
        get_prior("gan_faces", 1, 64, 64, generator=make_generator(0))


def test_latent_is_kept_in_the_trained_region() -> None:
    prior = get_prior("gan_faces", 3, 96, 80, generator=make_generator(1), clip=2.0, norm_penalty=0.5)
    assert isinstance(prior, GanLatentImage)
    assert prior().shape == (3, 3, 96, 80)
    assert float(prior.latent.detach().abs().max()) <= 2.0  # clipped from the start
    with torch.no_grad():
        prior.latent.copy_(prior.latent / prior.latent.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * 9.0)
    assert float(prior.regularization().detach()) == 0.0  # inside the Gaussian shell: no penalty
    with torch.no_grad():
        prior.latent.mul_(3.0)
    excess = prior.latent.detach().flatten(1).norm(dim=1) - math.sqrt(100)
    assert float(prior.regularization().detach()) == pytest.approx(0.5 * float((excess**2).sum()), rel=1e-5)
    prior.after_step()
    assert float(prior.latent.detach().abs().max()) <= 2.0


@pytest.mark.slow
def test_sunglasses_reach_ninety_percent_on_lite0_within_200_steps(lite0: TargetModel) -> None:
    prior = get_prior("gan_faces", 1, 224, 224, generator=make_generator(0))
    result = render(lite0, ClassLogit(SUNGLASSES), prior, config=RenderConfig(steps=200, seed=0))
    probability = float(lite0.predict(result.images)[0, SUNGLASSES])
    assert probability >= 0.9
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0
    assert float(prior.latent.detach().abs().max()) <= priors.gan.DEFAULT_CLIP
    assert float(prior.latent.detach().norm()) < 1.2 * math.sqrt(100)  # the norm penalty holds it near the shell
    assert lite0.hook_count() == 0
