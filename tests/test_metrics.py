"""The metric panel on cases with a known answer: photographs, white noise, power-law noise,
an adversarial pixel pattern, identical batches, and a NumPy reference for the spectrum."""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from priorviz.metrics import (
    METRIC_DESCRIPTIONS,
    MetricPanel,
    batch_diversity,
    diversity_layer,
    measure,
    target_classes,
)
from priorviz.models import TargetModel
from priorviz.models.target import Normalization
from priorviz.objectives import Channel, ClassLogit, ClassProbability, per_batch
from priorviz.render import RenderConfig, render
from priorviz.spectrum import (
    HIGH_FREQUENCY_CUTOFF,
    SLOPE_BAND_HIGH,
    SLOPE_BAND_LOW_BINS,
    SLOPE_BINS,
    ImageTooSmallError,
    high_frequency_energy,
    spectral_slope,
)
from priorviz.transforms import NO_TRANSFORMS

SIZE = 128
"""Small images keep the model-based tests within budget on two cores; the network is fully convolutional."""

TABBY = 281
EGYPTIAN_CAT = 285


def foolbox_photographs() -> torch.Tensor:
    """Foolbox's 20 ImageNet photographs (224x224 JPEGs) as one batch in [0, 1]."""
    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, "foolbox's data is installed by make setup"
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    paths = sorted(folder.glob("imagenet_*.jpg"))
    assert len(paths) == 20
    arrays = [np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR)) for path in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def skimage_photograph(name: str, size: int | None = None) -> torch.Tensor:
    import skimage.data

    image = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1)[None].float() / 255.0
    if size is not None:
        image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return image


def white_noise(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def power_law_noise(exponent: float, batch: int = 3, size: int = 224, seed: int = 0) -> torch.Tensor:
    """Grey images whose expected power spectrum is exactly 1/f^exponent, scaled into [0, 1]."""
    rng = np.random.default_rng(seed)
    frequency = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    frequency[0, 0] = 1.0
    images = []
    for _ in range(batch):
        spectrum = np.fft.fft2(rng.standard_normal((size, size))) * frequency ** (-exponent / 2)
        spectrum[0, 0] = 0.0
        grey = np.fft.ifft2(spectrum).real
        grey = (grey - grey.min()) / (grey.max() - grey.min())
        images.append(np.repeat(grey[None], 3, axis=0))
    return torch.from_numpy(np.stack(images)).float()


def numpy_spectral_slope(image: np.ndarray) -> float:
    """Independent reference: (3, H, W) -> slope, written with NumPy only."""
    grey = np.tensordot(np.array([0.299, 0.587, 0.114]), image.astype(np.float64), axes=1)
    grey = grey - grey.mean()
    height, width = grey.shape
    power = np.abs(np.fft.fft2(grey * np.outer(np.hanning(height), np.hanning(width)))) ** 2
    radius = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :])
    edges = np.geomspace(SLOPE_BAND_LOW_BINS / min(height, width), SLOPE_BAND_HIGH, SLOPE_BINS + 1)
    centres, means = [], []
    for lower, upper in itertools.pairwise(edges):
        inside = (radius >= lower) & (radius < upper)
        if inside.any():
            centres.append(np.sqrt(lower * upper))
            means.append(power[inside].mean())
    return float(np.polyfit(np.log(centres), np.log(means), 1)[0])


# --- spectrum -------------------------------------------------------------------------------------


def test_spectral_slope_matches_numpy_reference() -> None:
    coffee = skimage_photograph("coffee")[..., :200, :320]  # not square on purpose
    for images in (coffee, white_noise(2, 160), power_law_noise(1.5, 1, 96)):
        measured = spectral_slope(images)
        for index in range(images.shape[0]):
            assert measured[index].item() == pytest.approx(numpy_spectral_slope(images[index].numpy()), abs=1e-4)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0, 3.0])
def test_spectral_slope_recovers_power_law_exponent(exponent: float) -> None:
    slopes = spectral_slope(power_law_noise(exponent))
    assert torch.all((slopes + exponent).abs() < 0.3), slopes


def test_photographs_fall_near_minus_two_and_noise_is_flat() -> None:
    photos = torch.cat([foolbox_photographs(), skimage_photograph("chelsea", 224), skimage_photograph("coffee", 224)])
    slopes = spectral_slope(photos)
    # Measured: foolbox -1.2 .. -3.1 (mean -2.4), chelsea -2.9, coffee -2.9 (shallow depth of field).
    assert -2.8 < slopes.mean().item() < -1.8, slopes
    assert torch.all((slopes < -1.0) & (slopes > -3.5)), slopes
    noise_slopes = spectral_slope(white_noise(4, 224))
    assert torch.all(noise_slopes.abs() < 0.25), noise_slopes


def test_high_frequency_energy_of_noise_photograph_and_constant() -> None:
    expected_noise_share = 1.0 - math.pi * HIGH_FREQUENCY_CUTOFF**2  # area of the square outside the disc
    noise = high_frequency_energy(white_noise(3, 224))
    assert torch.allclose(noise, torch.full_like(noise, expected_noise_share), atol=0.02), noise
    photos = high_frequency_energy(foolbox_photographs())
    assert torch.all(photos < 0.15), photos
    assert photos.median().item() < 0.05
    constant = torch.full((1, 3, 64, 64), 0.3)
    assert high_frequency_energy(constant).item() == 0.0
    assert spectral_slope(constant).item() == 0.0


def test_spectral_slope_needs_a_minimum_size() -> None:
    with pytest.raises(ImageTooSmallError):
        spectral_slope(white_noise(1, 16))


# --- the panel on the target model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def adversarial_pattern(lite0: TargetModel) -> torch.Tensor:
    """A short raw-pixel render of 'Egyptian cat' without any transforms: the textbook cheat."""
    config = RenderConfig(steps=16, seed=0, transforms=NO_TRANSFORMS)
    return render(lite0, ClassLogit(EGYPTIAN_CAT), "pixel", size=SIZE, config=config).images


@pytest.fixture(scope="module")
def cat_photograph() -> torch.Tensor:
    return skimage_photograph("chelsea", SIZE)


def test_photograph_is_more_robust_than_adversarial_pattern(
    lite0: TargetModel, lite1: TargetModel, cat_photograph: torch.Tensor, adversarial_pattern: torch.Tensor
) -> None:
    objective = ClassLogit(EGYPTIAN_CAT)
    photo = measure(lite0, objective, cat_photograph, held_out=lite1, transform_samples=8).per_image[0]
    cheat = measure(lite0, objective, adversarial_pattern, held_out=lite1, transform_samples=8).per_image[0]
    assert cheat["objective"] > photo["objective"], "the pattern was optimized for exactly this logit"
    assert photo["robustness"] > 0.6
    assert cheat["robustness"] < 0.5 * photo["robustness"]
    assert photo["held_out_probability"] > cheat["held_out_probability"]
    assert cheat["high_frequency_energy"] > 5 * photo["high_frequency_energy"]
    assert cheat["spectral_slope"] > photo["spectral_slope"] + 1.0
    assert cheat["bn_statistics_distance"] > photo["bn_statistics_distance"]


def test_panel_keys_descriptions_and_values(
    lite0: TargetModel, lite1: TargetModel, cat_photograph: torch.Tensor
) -> None:
    images = torch.cat([cat_photograph, white_noise(1, SIZE)])
    panel = measure(lite0, ClassProbability(EGYPTIAN_CAT), images, held_out=lite1, transform_samples=2)
    assert isinstance(panel, MetricPanel) and len(panel.per_image) == 2
    for values in panel.per_image:
        assert set(values) <= set(METRIC_DESCRIPTIONS)
        assert {
            "objective",
            "objective_transformed",
            "spectral_slope",
            "high_frequency_energy",
            "total_variation",
            "bn_statistics_distance",
            "held_out_probability",
        } <= set(values)
        assert all(isinstance(value, float) and math.isfinite(value) for value in values.values())
    assert set(panel.batch) == {"diversity"}
    photo = panel.per_image[0]
    assert photo["objective"] == pytest.approx(lite0.predict(cat_photograph)[0, EGYPTIAN_CAT].item(), rel=1e-4)
    assert photo["robustness"] == pytest.approx(photo["objective_transformed"] / photo["objective"], rel=1e-5)


def test_statistics_distance_of_photographs_below_noise(lite0: TargetModel) -> None:
    photos = F.interpolate(foolbox_photographs()[:6], size=(SIZE, SIZE), mode="bilinear", antialias=True)
    objective = Channel("blocks.3", 0)
    photo_distances = [
        v["bn_statistics_distance"] for v in measure(lite0, objective, photos, transform_samples=1).per_image
    ]
    noise_distances = [
        v["bn_statistics_distance"]
        for v in measure(lite0, objective, white_noise(3, SIZE), transform_samples=1).per_image
    ]
    assert max(photo_distances) < min(noise_distances), (photo_distances, noise_distances)


def test_model_without_batch_norm_has_no_statistics_distance() -> None:
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 10),
    )
    tiny = TargetModel(
        "tiny",
        network,
        input_size=32,
        normalization=Normalization((0.5,) * 3, (0.5,) * 3),
        class_names=[str(i) for i in range(10)],
        layer_names=["0", "logits"],
    )
    panel = measure(tiny, ClassLogit(3), white_noise(2, 32), transform_samples=1)
    assert all("bn_statistics_distance" not in values for values in panel.per_image)
    assert "objective" in panel.per_image[0] and "diversity" in panel.batch


def test_total_variation_of_checkerboard(lite0: TargetModel) -> None:
    board = ((torch.arange(SIZE)[:, None] + torch.arange(SIZE)[None, :]) % 2).float().expand(1, 3, SIZE, SIZE)
    panel = measure(lite0, Channel("blocks.3", 0), board, transform_samples=1)
    assert panel.per_image[0]["total_variation"] == pytest.approx(2.0)  # |dx| = |dy| = 1 everywhere


def test_held_out_probability_only_for_class_objectives(lite0: TargetModel, lite1: TargetModel) -> None:
    images = white_noise(2, SIZE)
    channel = measure(lite0, Channel("blocks.8", 3), images, held_out=lite1, transform_samples=1)
    assert all("held_out_probability" not in values for values in channel.per_image)
    mixed = per_batch([ClassLogit(TABBY), Channel("blocks.8", 3)])
    panel = measure(lite0, mixed, images, held_out=lite1, transform_samples=1)
    expected = lite1.predict(F.interpolate(images, size=(240, 240), mode="bilinear", antialias=True))[0, TABBY]
    assert panel.per_image[0]["held_out_probability"] == pytest.approx(expected.item(), rel=1e-4)
    assert "held_out_probability" not in panel.per_image[1]


def test_target_classes_follow_signs_and_batch_targets() -> None:
    objective = ClassLogit(1) - ClassLogit(2) + per_batch([ClassLogit(3), -ClassProbability(4), 2 * ClassLogit(5)])
    assert target_classes(objective, 3) == [[1, 3], [1], [1, 5]]


def test_robustness_left_out_when_clean_value_is_not_positive(lite0: TargetModel, cat_photograph: torch.Tensor) -> None:
    values = measure(lite0, -ClassLogit(EGYPTIAN_CAT), cat_photograph, transform_samples=1).per_image[0]
    assert values["objective"] < 0 and "robustness" not in values


def test_identical_batch_has_lowest_diversity(lite0: TargetModel, cat_photograph: torch.Tensor) -> None:
    photos = F.interpolate(foolbox_photographs()[:4], size=(SIZE, SIZE), mode="bilinear", antialias=True)
    identical = batch_diversity(lite0, cat_photograph.expand(4, -1, -1, -1))
    varied = batch_diversity(lite0, photos)
    with_noise = batch_diversity(lite0, torch.cat([photos[:2], white_noise(2, SIZE)]))
    assert identical == pytest.approx(0.0, abs=1e-5)
    assert varied > identical + 0.05 and with_noise > identical + 0.05
    assert diversity_layer(lite0) == "blocks.8"


def test_measure_is_deterministic_for_a_seed(lite0: TargetModel, cat_photograph: torch.Tensor) -> None:
    images = torch.cat([cat_photograph, white_noise(1, SIZE)])
    objective = Channel("blocks.8", 3)
    first = measure(lite0, objective, images, seed=7, transform_samples=3)
    assert measure(lite0, objective, images, seed=7, transform_samples=3) == first
    other = measure(lite0, objective, images, seed=8, transform_samples=3)
    assert other.per_image[0]["objective_transformed"] != first.per_image[0]["objective_transformed"]
    assert other.per_image[0]["objective"] == first.per_image[0]["objective"]


def test_measure_rejects_bad_input(lite0: TargetModel) -> None:
    with pytest.raises(ValueError, match="batch, 3"):
        measure(lite0, Channel("blocks.8", 3), torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="transform_samples"):
        measure(lite0, Channel("blocks.8", 3), white_noise(1, SIZE), transform_samples=0)
