"""The deep image prior: fixed noise, weights optimized, one independent network per image; it renders."""

from __future__ import annotations

import pytest
import torch

from priors import PriorKind, get_prior, list_priors
from priors.deep_image_prior import NOISE_CHANNELS, NOISE_SCALE, DeepImagePrior, level_widths
from priorviz.errors import InvalidInputError
from priorviz.models import TargetModel
from priorviz.render import RenderConfig, render
from priorviz.seeding import make_generator


def test_a_batch_is_independent_networks_side_by_side() -> None:
    """Image 1 of a batch of two is what a one-image prior with image 1's weights and noise draws."""
    pair = DeepImagePrior(2, 40, 48, generator=make_generator(0), depth=3, channels=4)
    single = DeepImagePrior(1, 40, 48, generator=make_generator(1), depth=3, channels=4)
    with torch.no_grad():
        for mine, theirs in zip(single.parameters(), pair.parameters(), strict=True):
            mine.copy_(theirs.reshape(2, -1)[1].view_as(mine))
        single.noise.copy_(pair.noise.reshape(2, -1)[1].view_as(single.noise))
        torch.testing.assert_close(single()[0], pair()[1], rtol=1e-5, atol=1e-6)
    pair()[0].sum().backward()
    assert all(float(p.grad.reshape(2, -1)[1].abs().max()) == 0.0 for p in pair.parameters())
    assert all(float(p.grad.reshape(2, -1)[0].abs().max()) > 0.0 for p in pair.parameters())


def test_noise_is_fixed_and_the_weights_move(lite0: TargetModel) -> None:
    param = get_prior("deep_image_prior", 1, 64, 64, generator=make_generator(0))
    assert isinstance(param, DeepImagePrior)
    noise, weights = param.noise.clone(), [p.detach().clone() for p in param.parameters()]
    assert noise.shape == (1, NOISE_CHANNELS, 64, 64) and 0 <= float(noise.min()) < float(noise.max()) <= NOISE_SCALE
    assert all(buffer is not param.noise for buffer in param.parameters())
    result = render(lite0, "blocks.8:17", param, config=RenderConfig(steps=24, seed=0))
    first, final = result.trace[0].item(), result.values.item()
    assert final > 3 * max(first, 0.5), f"{first:.3f} -> {final:.3f}"
    assert torch.equal(param.noise, noise)
    assert all(not torch.equal(before, after) for before, after in zip(weights, param.parameters(), strict=True))


def test_levels_and_size_limit() -> None:
    assert level_widths(16, 5) == [16, 32, 64, 64, 64]
    assert get_prior("deep_image_prior", 1, 16, 20, generator=make_generator(0), depth=3, channels=4)().shape == (
        1,
        3,
        16,
        20,
    )
    with pytest.raises(ValueError, match="at least 32 pixels"):
        get_prior("deep_image_prior", 1, 16, 16, generator=make_generator(0), depth=4)


def test_too_small_an_image_is_an_invalid_option_in_the_render_loop(lite0: TargetModel) -> None:
    with pytest.raises(InvalidInputError, match="at least 128 pixels") as info:
        render(lite0, "blocks.3:0", "deep_image_prior", size=64, steps=1, prior_options={"depth": 6})
    assert info.value.field == "prior_options"


def test_listed_as_unconstrained() -> None:
    (info,) = [info for info in list_priors() if info.name == "deep_image_prior"]
    assert info.kind is PriorKind.UNCONSTRAINED and info.parse_options({}) == {"depth": 5, "channels": 16}
