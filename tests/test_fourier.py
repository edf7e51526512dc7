"""NumPy reference tests for the Fourier parameterization and the colour decorrelation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from priors.color import COLOR_CORRELATION_SQRT, decorrelate_colors
from priors.fourier import OUTPUT_SCALE, FourierImage, frequency_scale
from priors.pixel import PixelImage
from priorviz.render import make_generator


def numpy_frequency_scale(height: int, width: int, decay_power: float) -> np.ndarray:
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    magnitude = np.sqrt(fx**2 + fy**2)
    return 1.0 / np.maximum(magnitude, 1.0 / max(height, width)) ** decay_power


def numpy_decorrelate(channels: np.ndarray) -> np.ndarray:
    matrix = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    matrix = matrix / np.linalg.norm(matrix, axis=0).max()
    return np.einsum("ck,bkhw->bchw", matrix, channels)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("height,width,decay", [(8, 8, 1.0), (7, 10, 1.0), (16, 12, 1.5), (5, 5, 0.0)])
def test_frequency_scale_matches_numpy(height: int, width: int, decay: float) -> None:
    expected = numpy_frequency_scale(height, width, decay)
    np.testing.assert_allclose(frequency_scale(height, width, decay).numpy(), expected, rtol=1e-6)


def test_frequency_scale_is_one_over_frequency() -> None:
    scale = frequency_scale(32, 32).numpy()
    assert scale[0, 1] == pytest.approx(32.0)  # lowest non-zero frequency 1/32
    assert scale[0, 0] == pytest.approx(32.0)  # the DC term is floored at 1/max(h, w)
    assert scale[16, 16] == pytest.approx(1 / np.sqrt(0.5**2 + 0.5**2))


def test_colour_matrix_columns_normalized() -> None:
    from priors.color import COLOR_CORRELATION_NORMALIZED

    assert COLOR_CORRELATION_NORMALIZED.norm(dim=0).max().item() == pytest.approx(1.0)
    raw = COLOR_CORRELATION_SQRT.numpy()
    np.testing.assert_allclose(COLOR_CORRELATION_NORMALIZED.numpy(), raw / np.linalg.norm(raw, axis=0).max(), rtol=1e-6)


def test_decorrelate_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    channels = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
    out = decorrelate_colors(torch.from_numpy(channels)).numpy()
    np.testing.assert_allclose(out, numpy_decorrelate(channels.astype(np.float64)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decorrelate", [True, False])
@pytest.mark.parametrize("height,width", [(16, 16), (9, 14)])
def test_fourier_image_matches_numpy(height: int, width: int, decorrelate: bool) -> None:
    image = FourierImage(2, height, width, generator=make_generator(3), decorrelate=decorrelate, init_std=0.5)
    spectrum = image.spectrum.detach().double().numpy()
    coefficients = (spectrum[..., 0] + 1j * spectrum[..., 1]) * numpy_frequency_scale(height, width, 1.0)
    channels = np.fft.irfft2(coefficients, s=(height, width), norm="ortho") / OUTPUT_SCALE
    if decorrelate:
        channels = numpy_decorrelate(channels)
    np.testing.assert_allclose(image().detach().numpy(), sigmoid(channels), rtol=1e-5, atol=1e-6)


def test_fourier_image_shape_range_and_gradient() -> None:
    image = FourierImage(3, 32, 24, generator=make_generator(0), init_std=1.0)
    out = image()
    assert out.shape == (3, 3, 32, 24)
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0
    out[:, 0].mean().backward()
    assert image.spectrum.grad is not None and image.spectrum.grad.abs().sum() > 0


def test_fourier_starts_with_equal_energy_per_frequency_band() -> None:
    """The 1/f scaling gives a white spectrum in the parameters a 1/f^2 power spectrum in pixels."""
    image = FourierImage(64, 64, 64, generator=make_generator(1), decorrelate=False, init_std=1.0)
    with torch.no_grad():
        coefficients = torch.view_as_complex(image.spectrum) * image.scale
        channels = torch.fft.irfft2(coefficients, s=(64, 64), norm="ortho")
    power = np.abs(np.fft.rfft2(channels.numpy())) ** 2
    freq = numpy_frequency_scale(64, 64, -1.0)  # |f| itself
    low = power[..., (freq > 0.05) & (freq < 0.1)].mean()
    high = power[..., (freq > 0.2) & (freq < 0.4)].mean()
    # power ~ 1/f^2: a band four times higher in frequency carries ~16x less power per coefficient
    assert 8 < low / high < 32


def test_same_generator_same_parameters() -> None:
    first = FourierImage(1, 16, 16, generator=make_generator(7))
    second = FourierImage(1, 16, 16, generator=make_generator(7))
    third = FourierImage(1, 16, 16, generator=make_generator(8))
    assert torch.equal(first.spectrum, second.spectrum)
    assert not torch.equal(first.spectrum, third.spectrum)


def test_pixel_image_matches_numpy() -> None:
    image = PixelImage(1, 6, 5, generator=make_generator(0), init_std=1.0)
    pixels = image.pixels.detach().double().numpy()
    np.testing.assert_allclose(image().detach().numpy(), sigmoid(numpy_decorrelate(pixels)), rtol=1e-5, atol=1e-6)


def test_parameterization_rejects_empty_images() -> None:
    with pytest.raises(ValueError, match="positive"):
        FourierImage(0, 8, 8, generator=make_generator(0))
