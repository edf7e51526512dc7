"""MACO against NumPy: the shipped spectrum, its resampling, the image from phase and magnitude, the transparency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from priors import PriorKind, get_prior, list_priors
from priors.color import COLOR_CORRELATION_NORMALIZED
from priors.maco import (
    SPECTRUM_PATH,
    TRANSPARENCY_PERCENTILE,
    MacoImage,
    resample_spectrum,
    template_spectrum,
    transparency_map,
)
from priors.make_maco_spectrum import SIZE, embedded_photographs, mean_amplitude_spectrum, square
from priorviz.models import TargetModel
from priorviz.render import RenderConfig, render
from priorviz.seeding import make_generator


def test_shipped_spectrum_is_the_photographs_mean_and_falls_as_one_over_f() -> None:
    photographs = embedded_photographs()
    assert len(photographs) == 24
    recomputed = mean_amplitude_spectrum([square(photograph, SIZE) for photograph in photographs])
    shipped = template_spectrum().numpy()
    assert SPECTRUM_PATH.stat().st_size < 1_000_000 and shipped.shape == (3, SIZE, SIZE // 2 + 1)
    np.testing.assert_allclose(shipped, recomputed, rtol=1e-5, atol=1e-6)
    # A photograph's amplitude falls about as 1/f (power as 1/f^2, steeper after JPEG and resizing):
    # the luminance channel's log-log slope between 4 cycles per image and 0.25 cycles per pixel.
    frequency = np.hypot(np.fft.fftshift(np.fft.fftfreq(SIZE))[:, None], np.fft.rfftfreq(SIZE)[None, :])
    band = (frequency >= 4 / SIZE) & (frequency < 0.25)
    slope = np.polyfit(np.log(frequency[band]), np.log(shipped[0][band]), 1)[0]
    assert -1.5 < slope < -1.0, slope


def test_resampling_reads_the_template_at_each_images_frequencies() -> None:
    template = template_spectrum()
    unshifted = np.fft.ifftshift(template.numpy(), axes=-2)
    np.testing.assert_allclose(resample_spectrum(template, SIZE, SIZE).numpy(), unshifted, rtol=1e-4)
    # Half the size: every frequency of a 112-pixel image is a sample of the 224-pixel template.
    half = resample_spectrum(template, SIZE // 2, SIZE // 2).numpy()
    rows = np.rint(np.fft.fftfreq(SIZE // 2) * SIZE).astype(int) % SIZE
    np.testing.assert_allclose(half, unshifted[:, rows][:, :, ::2], rtol=1e-4)
    assert resample_spectrum(template, 80, 50).shape == (3, 80, 26)


@pytest.mark.parametrize(("height", "width"), [(24, 30), (17, 22)])
def test_image_from_phase_and_magnitude_matches_numpy(height: int, width: int) -> None:
    rng = np.random.default_rng(0)
    magnitude = rng.uniform(0.1, 2.0, (3, height, width // 2 + 1))
    phase = rng.uniform(-math.pi, math.pi, (2, 3, height, width // 2 + 1))
    param = MacoImage(2, height, width, generator=make_generator(0), magnitude=torch.from_numpy(magnitude))
    with torch.no_grad():
        param.phase.copy_(torch.from_numpy(phase))
        images = param().double().numpy()
    channels = np.fft.irfft2(magnitude * np.exp(1j * phase), s=(height, width))
    flat = channels.reshape(2, -1)
    channels = (channels - flat.mean(1)[:, None, None, None]) / (flat.std(1, ddof=1)[:, None, None, None] + 1e-4)
    rgb = np.einsum("ck,bkhw->bchw", COLOR_CORRELATION_NORMALIZED.double().numpy(), channels)
    np.testing.assert_allclose(images, 1 / (1 + np.exp(-rgb)), atol=2e-6)


def test_render_raises_a_mid_layer_channel_and_only_the_phase_moves(lite0: TargetModel) -> None:
    param = get_prior("maco", 1, 64, 64, generator=make_generator(0))
    assert isinstance(param, MacoImage)
    magnitude = param.magnitude.clone()
    result = render(lite0, "blocks.8:17", param, config=RenderConfig(steps=24, seed=0))
    first, final = result.trace[0].item(), result.values.item()
    assert final > 3 * max(first, 0.5), f"{first:.3f} -> {final:.3f}"
    # The image's amplitude spectrum is still the template's (up to the standardization's scale).
    # Columns 0 and 32 hold self-conjugate frequencies whose imaginary part irfft2 drops: leave them out.
    with torch.no_grad():
        amplitude = torch.fft.rfft2(param.channels()).abs()[0, :, :, 1:-1]
    ratio = amplitude / magnitude[:, :, 1:-1]
    assert float(ratio.std() / ratio.mean()) < 1e-3
    transparency = result.extra_images["transparency"]
    assert transparency.shape == (1, 3, 64, 64) and float(transparency.min()) >= 0
    assert float(transparency.max()) == pytest.approx(1.0) and float(transparency.std()) > 0.05


def test_transparency_accumulates_the_gradient_magnitude_on_the_image() -> None:
    param = MacoImage(2, 16, 16, generator=make_generator(1))
    weights = torch.randn((2, 3, 16, 16), generator=make_generator(2))
    (param() * weights).sum().backward()
    (param() * -2 * weights).sum().backward()
    with torch.no_grad():
        param()  # no gradient, nothing accumulated
    torch.testing.assert_close(param.gradient_magnitude, 3 * weights.abs())
    grey = (3 * weights.abs()).mean(dim=1).numpy()
    ceiling = np.quantile(grey.reshape(2, -1), TRANSPARENCY_PERCENTILE, axis=1)[:, None, None]
    expected = np.minimum(grey, ceiling) / ceiling
    np.testing.assert_allclose(param.extra_images()["transparency"].numpy(), expected[:, None].repeat(3, 1), rtol=1e-5)
    assert float(transparency_map(torch.zeros(1, 3, 4, 4)).abs().max()) == 0.0  # before any step: all clear


def test_listed_as_unconstrained_without_options() -> None:
    (info,) = [info for info in list_priors() if info.name == "maco"]
    assert info.kind is PriorKind.UNCONSTRAINED and info.options == () and "phase" in info.description
