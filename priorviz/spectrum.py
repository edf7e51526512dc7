"""Spectral statistics of images: the power-law slope and the share of high-frequency energy.

Natural photographs have a radially averaged power spectrum that falls roughly as 1/f^2
(slope near -2 on log-log axes); white noise is flat (slope 0). Adversarial, "cheating"
feature visualizations carry much of their energy at high frequencies, so both numbers
separate them from natural-looking images.

Both are measured on the luminance of each image, mean removed and multiplied by a 2D
Hann window so that the image's hard border does not leak a 1/f^2 cross of energy into the
spectrum (which would pull every image, noise included, towards slope -2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from priorviz.errors import InvalidInputError

LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights: a single grey channel to measure the spectrum on."""

SLOPE_BAND_LOW_BINS = 4.0
"""The fit starts at 4 cycles per image: the Hann window smears the lowest 2-3 frequency bins."""

SLOPE_BAND_HIGH = 0.25
"""... and ends at 0.25 cycles per pixel: JPEG compression, demosaicing and resampling bend the
top octave of real photographs, which would make the slope depend on how the file was made."""

SLOPE_BINS = 16
"""Logarithmically spaced annuli in the fit band, so every octave weighs the same in the fit."""

HIGH_FREQUENCY_CUTOFF = 0.25
"""'Top frequencies': radial frequency above 0.25 cycles per pixel (wavelengths under 4 pixels)."""


class ImageTooSmallError(InvalidInputError):
    """The image is too small for the spectral fit band to hold any frequencies."""


def luminance(images: Tensor) -> Tensor:
    """(batch, 3, H, W) in [0, 1] to (batch, H, W) grey, in float64 for the FFT."""
    weights = torch.tensor(LUMINANCE_WEIGHTS, dtype=torch.float64, device=images.device)
    return torch.einsum("bchw,c->bhw", images.to(torch.float64), weights)


def hann_window_2d(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """Separable 2D Hann window (symmetric), shape (height, width)."""
    rows = torch.hann_window(height, periodic=False, dtype=torch.float64, device=device)
    cols = torch.hann_window(width, periodic=False, dtype=torch.float64, device=device)
    return rows[:, None] * cols[None, :]


def radial_frequency(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """|f| in cycles per pixel for every coefficient of an (height, width) FFT grid."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64, device=device)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64, device=device)[None, :]
    return torch.sqrt(fy * fy + fx * fx)


def power_spectrum(images: Tensor) -> Tensor:
    """Windowed power spectrum of each image's mean-free luminance, shape (batch, H, W)."""
    grey = luminance(images)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    height, width = grey.shape[-2:]
    windowed = grey * hann_window_2d(height, width, grey.device)
    return torch.fft.fft2(windowed).abs().pow(2)


def spectral_slope(images: Tensor) -> Tensor:
    """Log-log slope of the radially averaged power spectrum per image, shape (batch,).

    Power is averaged in ``SLOPE_BINS`` log-spaced annuli between 4 cycles per image and
    0.25 cycles per pixel, and a line is fitted to log(power) against log(frequency) by
    least squares. Photographs give about -2, white noise about 0; steeper than -2 is
    smoother than a photograph, flatter is grainier. A constant image gives 0.
    """
    height, width = images.shape[-2:]
    low = SLOPE_BAND_LOW_BINS / min(height, width)
    if low * 2 > SLOPE_BAND_HIGH:
        raise ImageTooSmallError(f"images of {height}x{width} are too small for a spectral slope (need 32 pixels)")
    power = power_spectrum(images).flatten(1)
    radius = radial_frequency(height, width, images.device).flatten()
    edges = torch.logspace(math.log10(low), math.log10(SLOPE_BAND_HIGH), SLOPE_BINS + 1, dtype=torch.float64)
    edges[0], edges[-1] = low, SLOPE_BAND_HIGH  # exact band ends: radii such as 4/N sit on them
    centres, means = [], []
    for lower, upper in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        inside = (radius >= lower) & (radius < upper)
        if inside.any():
            centres.append(math.sqrt(lower * upper))
            means.append(power[:, inside].mean(dim=1))
    log_f = torch.log(torch.tensor(centres, dtype=torch.float64, device=images.device))
    log_p = torch.log(torch.stack(means, dim=1).clamp(min=1e-30))
    centred_f = log_f - log_f.mean()
    slope = ((log_p - log_p.mean(dim=1, keepdim=True)) * centred_f).sum(dim=1) / centred_f.pow(2).sum()
    flat = power.sum(dim=1) <= 1e-20
    return torch.where(flat, torch.zeros_like(slope), slope).float()


def high_frequency_energy(images: Tensor) -> Tensor:
    """Share of an image's (windowed, mean-free) luminance power above 0.25 cycles/pixel, (batch,).

    White noise puts about 80% of its energy there (the area of the frequency square
    outside that radius), a photograph a few percent. A constant image gives 0.
    """
    height, width = images.shape[-2:]
    power = power_spectrum(images).flatten(1)
    high = radial_frequency(height, width, images.device).flatten() > HIGH_FREQUENCY_CUTOFF
    total = power.sum(dim=1)
    share = power[:, high].sum(dim=1) / total.clamp(min=1e-30)
    return torch.where(total <= 1e-20, torch.zeros_like(share), share).float()
