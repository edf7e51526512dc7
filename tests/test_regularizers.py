"""The image regularizers and transform parameters in the engine: the Gaussian blur against a NumPy
reference, the blur every k steps in the render loop, and Lucid's standard set rebuilt from its ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from priorviz.errors import InvalidInputError
from priorviz.models.target import TargetModel
from priorviz.regularizers import gaussian_blur, gaussian_kernel, total_variation
from priorviz.render import RenderConfig, render
from priorviz.seeding import make_generator
from priorviz.transforms import (
    LUCID_ANGLES,
    NO_TRANSFORMS,
    ScaleRotate,
    adjusted_transforms,
    evenly_spaced,
    standard_transforms,
)

SIDE = 32


def numpy_gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A direct 2-D convolution of each channel (C, H, W) with the Gaussian cut at ceil(3 sigma), edges reflected."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    padded = np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    height, width = image.shape[1:]
    out = np.zeros_like(image)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out += weights[dy, dx] * padded[:, dy : dy + height, dx : dx + width]
    return out


def test_the_gaussian_kernel_is_the_normalized_gaussian_cut_at_three_sigma() -> None:
    kernel = gaussian_kernel(1.5).numpy()
    offsets = np.arange(-5, 6)  # ceil(4.5) = 5
    expected = np.exp(-(offsets**2) / (2 * 1.5**2))
    np.testing.assert_allclose(kernel, expected / expected.sum(), rtol=1e-6)
    assert gaussian_kernel(0.1).shape == (3,)  # at least one pixel each side


@pytest.mark.parametrize("sigma", [0.5, 1.3, 3.0])
def test_the_gaussian_blur_equals_a_direct_numpy_convolution(sigma: float) -> None:
    images = torch.rand(2, 3, 20, 27, generator=make_generator(4), dtype=torch.float64).float()
    blurred = gaussian_blur(images, sigma)
    for index in range(2):
        expected = numpy_gaussian_blur(images[index].double().numpy(), sigma)
        np.testing.assert_allclose(blurred[index].numpy(), expected, atol=1e-6)
    constant = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(gaussian_blur(constant, sigma), constant)


def test_a_blur_wider_than_the_image_or_not_positive_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="reaches 24 pixels") as wide:
        gaussian_blur(torch.rand(1, 3, 24, 40), 8.0)
    assert wide.value.field == "blur_sigma"
    for sigma in (0.0, -1.0, float("nan")):
        with pytest.raises(InvalidInputError) as bad:
            gaussian_kernel(sigma)
        assert bad.value.field == "blur_sigma"


def test_the_render_loop_blurs_the_image_itself_every_k_steps(lite0: TargetModel) -> None:
    def run(blur_sigma: float) -> dict[int, torch.Tensor]:
        config = RenderConfig(
            steps=7, snapshot_steps=(3, 4, 6, 7), transforms=NO_TRANSFORMS, blur_sigma=blur_sigma, blur_every=3
        )
        return render(lite0, "blocks.5:3", "pixel", size=SIDE, config=config).snapshots

    plain, blurred = run(0.0), run(1.5)
    # A snapshot is the image a step starts from: step 3 is before the first blur, step 4 after it.
    torch.testing.assert_close(blurred[3], plain[3])
    for step in (4, 7):
        assert total_variation(blurred[step]) < 0.5 * total_variation(plain[step])
    assert total_variation(blurred[6]) > total_variation(blurred[4])  # two unblurred steps roughen it again


def test_the_blur_needs_a_prior_that_draws_any_image_exactly(lite0: TargetModel) -> None:
    config = RenderConfig(steps=2, blur_sigma=1.0)
    with pytest.raises(InvalidInputError, match="cannot be blurred") as error:
        render(lite0, "blocks.5:3", "gan_faces", size=SIDE, config=config)
    assert error.value.field == "blur_sigma"
    with pytest.raises(InvalidInputError) as bad_every:
        RenderConfig(blur_sigma=1.0, blur_every=0)
    assert bad_every.value.field == "blur_every"


def test_lucids_standard_set_is_rebuilt_from_its_ranges() -> None:
    assert adjusted_transforms() == standard_transforms()
    assert evenly_spaced(-10, 10, 21) == LUCID_ANGLES
    assert evenly_spaced(1.0, 1.0, 11) == (1.0,)
    changed = adjusted_transforms(pad=0, scale_range=(0.8, 1.2), rotation=45.0)
    assert changed.transforms[0] == standard_transforms(pad=0).transforms[0]
    scale_rotate = changed.transforms[2]
    assert isinstance(scale_rotate, ScaleRotate)
    assert scale_rotate.scales[0] == 0.8 and scale_rotate.scales[-1] == 1.2 and len(scale_rotate.scales) == 11
    assert scale_rotate.angles[0] == -45.0 and scale_rotate.angles[10] == 0.0 and len(scale_rotate.angles) == 21
    images = torch.rand(1, 3, 16, 16)
    identity = adjusted_transforms(pad=0, jitter=0, scale_range=(1.0, 1.0), rotation=0.0, final_jitter=0)
    torch.testing.assert_close(identity(images, make_generator(0)), images)
    assert NO_TRANSFORMS(images, make_generator(0)) is images
